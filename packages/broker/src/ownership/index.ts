export { BundleEndedError, OwnershipManager, type OwnershipManagerOptions } from './manager.js';
