export {
  comparePositions, maxPosition, minPosition, position, positionEquals, positionToString,
  type AckedRange, type Cursor, type CursorStats, type Entry, type InitialPosition, type ManagedLedger, type ManagedLedgerConfig,
  type ManagedLedgerFactory, type ManagedLedgerFactoryConfig, type ManagedLedgerStats, type Position, type ReadOptions,
} from './api.js';
export {
  InvalidStorageArgumentError, ManagedLedgerClosedError, ManagedLedgerFencedError, ManagedLedgerNotFoundError,
  ManagedLedgerTerminatedError, StorageUnavailableError, TooManyPendingAppendsError,
} from './errors.js';
export { MANAGED_LEDGER_DEFAULTS, FACTORY_DEFAULTS, compileManagedLedgerConfig } from './config.js';
export { createManagedLedgerFactory, validateManagedLedgerName, type ManagedLedgerFactoryDeps } from './factory.js';
