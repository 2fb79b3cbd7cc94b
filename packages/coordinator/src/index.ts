export { BadVersionError, CompactedError, MetadataUnavailableError, SessionLostError } from './errors.js';
export type {
  CallOptions, CampaignOptions, DeleteOptions, KeyValue, Leadership, ListOptions, ListPage, MetadataStore, PutOptions,
  PutResult, Session, SessionOptions, WatchEvent, Watcher, WatchOptions,
} from './metadata/store.js';
export { createMetadataStore, DEFAULT_CLUSTER, listAll, type CreateMetadataStoreOptions } from './metadata/factory.js';
export { EtcdMetadataStore, type EtcdMetadataStoreOptions } from './metadata/etcd.js';
export { EmbeddedMetadataStore, type EmbeddedMetadataStoreOptions } from './metadata/embedded.js';
export { electionKey } from './metadata/election.js';
export {
  bundleAssignerDuty, COORDINATOR_ELECTION, coordinatorConfigSpec, resolveMetadataUrl, splitOptionsOf, startCoordinator,
  type CoordinatorConfig, type CoordinatorDeps, type RunningCoordinator,
} from './main.js';
export { dutyCounter, LeaderElector, type LeaderContext, type LeaderDuty, type LeaderElectorOptions } from './leader.js';
export {
  ASSIGNMENTS_PREFIX, assignmentKey, BROKERS_PREFIX, brokerKey, BundleAssigner, bundleForHash, chooseBroker, formatBundleRange, loadScore,
  namespaceBundles, namespaceOfPolicyKey, OWNERSHIP_PREFIX, ownershipKey, parseBundleId, parseJson, planAssignments, POLICIES_PREFIX, PrefixCache,
  splitBoundaries, LoadShedder, DEFAULT_SPLIT_OPTIONS, hotReasons, MAX_REPORTED_BUNDLES, planSplits, splitBundlePolicy,
  type AssignmentReason, type AssignmentRecord, type BrokerRegistration, type BrokerView, type BundleAssignerOptions, type BundlePolicy,
  type BundleSpec, type CachedEntry, type ClusterSnapshot, type LoadReport, type OwnershipRecord, type PlacementAction,
  type PlacementOptions, type ShedOptions, type BundleLoad, type SplitAction, type SplitOptions,
} from './assignment/index.js';
