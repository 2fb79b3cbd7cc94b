export { BundleAssigner, type BundleAssignerOptions } from './assigner.js';
export {
  bundleCounts, chooseBroker, DEFAULT_PLACEMENT_OPTIONS, DEFAULT_SHED_OPTIONS, LoadShedder, planAssignments,
  type AssignmentView, type BrokerView, type ClusterSnapshot, type PlacementAction, type PlacementOptions, type ShedOptions,
} from './placement.js';
export { PrefixCache, type CachedEntry, type PrefixCacheOptions } from './prefix-cache.js';
export {
  ASSIGNMENTS_PREFIX, assignmentKey, BROKERS_PREFIX, brokerKey, BUNDLE_HASH_MAX, bundleForHash, equalBoundaries, formatBundleRange,
  InvalidBundlePolicyError, loadScore, MAX_NAMESPACE_BUNDLES, namespaceBundles, namespaceOfPolicyKey, OWNERSHIP_PREFIX, ownershipKey,
  parseJson, POLICIES_PREFIX, splitBoundaries,
  type AssignmentReason, type AssignmentRecord, type BrokerRegistration, type BundlePolicy, type BundleSpec, type LoadReport, type OwnershipRecord,
} from './protocol.js';
