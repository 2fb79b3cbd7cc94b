export { BundleAssigner, type BundleAssignerOptions } from './assigner.js';
export {
  bundleCounts, chooseBroker, DEFAULT_PLACEMENT_OPTIONS, DEFAULT_SHED_OPTIONS, LoadShedder, planAssignments,
  type AssignmentView, type BrokerView, type ClusterSnapshot, type PlacementAction, type PlacementOptions, type ShedOptions,
} from './placement.js';
export { PrefixCache, type CachedEntry, type PrefixCacheOptions } from './prefix-cache.js';
export {
  DEFAULT_SPLIT_OPTIONS, heldBySplit, hotReasons, planSplits, type NamespaceView, type SplitAction, type SplitOptions, type SplitSnapshot,
} from './splitting.js';
export {
  ASSIGNMENTS_PREFIX, assignmentKey, BROKERS_PREFIX, brokerKey, BUNDLE_HASH_MAX, bundleForHash, equalBoundaries, formatBundleRange,
  InvalidBundlePolicyError, loadScore, MAX_NAMESPACE_BUNDLES, namespaceBundles, namespaceOfPolicyKey, OWNERSHIP_PREFIX, ownershipKey, parseBundleId,
  MAX_REPORTED_BUNDLES, parseJson, POLICIES_PREFIX, splitBoundaries, splitBundlePolicy,
  type AssignmentReason, type BundleLoad, type AssignmentRecord, type BrokerRegistration, type BundlePolicy, type BundleSpec, type LoadReport, type OwnershipRecord,
} from './protocol.js';
export {
  BrokerLiveness, DEFAULT_LIVENESS_OPTIONS, tcpProbe,
  type BrokerLivenessOptions, type BrokerProbe, type LivenessOptions, type ProbeOutcome,
} from './liveness.js';
