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
  COORDINATOR_ELECTION, coordinatorConfigSpec, resolveMetadataUrl, startCoordinator,
  type CoordinatorConfig, type CoordinatorDeps, type RunningCoordinator,
} from './main.js';
export { LeaderElector, type LeaderContext, type LeaderDuty, type LeaderElectorOptions } from './leader.js';
