export { brokerConfigSpec, startBroker, type BrokerConfig, type BrokerDeps, type RunningBroker } from './main.js';
export {
  algorithmsFor, authenticationConfigSpec, createAuthenticationGate, createTokenVerifier, parsePublicKey, parseSecretKey, readKeyBytes, tokenGate,
  type AuthenticationConfig, type TokenVerifier, type TokenVerifierOptions, type VerifiedToken,
} from './security/authentication.js';
export { orphanLedgerConfigSpec, orphanSweeperDuty, sweepOrphanLedgers } from './storage/orphan-ledgers.js';
export { BrokerService, type BrokerServiceOptions } from './topics/broker-service.js';
export {
  bundleOf, computeBundles, formatRange, SingleBrokerOwnership, type BundleOwner, type BundleRange, type OwnershipView,
} from './ownership/bundles.js';
export { BundleEndedError, OwnershipManager, type OwnershipManagerOptions } from './ownership/index.js';
export { DEFAULT_NAMESPACE, DEFAULT_TENANT, parseNamespace, topicHash, TopicName, type TopicDomain } from './names.js';
export { KEY_HASH_SLOTS, keyHashOf } from './topics/subscription.js';
export { NON_PERSISTENT_LEDGER_ID } from './topics/non-persistent-topic.js';
export { NamespaceResources, type NamespacePolicies, type TenantInfo } from './resources/namespace-resources.js';
export { decodeEnvelope, encodeEnvelope } from './topics/codec.js';
export {
  AlreadyExistsError, ConsumerBusyError, InvalidRequestError, InvalidTopicNameError, MessageTooLargeError, NotFoundError, NotOwnerError,
  NotAllowedError, ProducerBusyError, ProducerFencedError, ServiceNotReadyError, TooManyRequestsError, UnimplementedError,
} from './errors.js';
