export type {
  CreateLedgerOptions, LedgerClient, LedgerEntry, LedgerMetadata, LedgerReader, LedgerState, LedgerWriter, OpenLedgerOptions,
} from './client/api.js';
export { BookieLedgerClient, compileLedgerClientOptions, type BookieLedgerClientDeps, type LedgerClientOptions } from './client/client.js';
export {
  EntryUnavailableError, InvalidLedgerArgumentError, LedgerChecksumError, LedgerClientClosedError, LedgerClosedError,
  LedgerFencedError, NoSuchLedgerError, NotEnoughBookiesError,
} from './client/errors.js';
export { RecoveryIncompleteError } from './client/ledger-recovery.js';
export { AVAILABLE_BOOKIES_PREFIX, READONLY_BOOKIES_PREFIX } from './client/bookie-registry.js';
export { decodeMetadata, encodeMetadata, LEDGER_ID_COUNTER_KEY, LEDGERS_PREFIX, ledgerKey } from './client/metadata.js';
export type { AddRequest, BookieLedgerState, BookieTransport, ReadRequest, StoredEntryData } from './client/transport.js';
// Bookie server (packages/bookie/src/server, storage, main.ts).
export { bookieConfigSpec, startBookie, type BookieConfig, type BookieDeps, type RunningBookie } from './main.js';
export {
  BookieArgumentError, BookieFencedError, BookieIdentityError, BookieNotFoundError, BookieReadOnlyError, BookieUnavailableError, EntryChecksumError,
  EntryConflictError, EntryTooLargeError, StorageCorruptError,
} from './errors.js';
export type { RegistrationValue } from './server/registration.js';
// Auto-recovery (run by the coordinator's leader).
export {
  AutoRecovery, UNDERREPLICATED_PREFIX, type AutoRecoveryDeps, type AutoRecoveryOptions, type PassResult, type UnderreplicatedMarker,
} from './recovery/auto-recovery.js';
export { autoRecoveryConfigSpec, autoRecoveryDuty } from './recovery/duty.js';
