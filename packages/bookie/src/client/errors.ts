import { ErrorCode, StrataError } from '@strata/runtime';

/**
 * Errors of the ledger client. Callers branch on `code` (stable, crosses the wire), never on the
 * class or the message.
 */

/** The ledger was fenced by a recovery: this writer can add nothing more, ever. Not retriable. */
export class LedgerFencedError extends StrataError {
  constructor(readonly ledgerId: number, cause?: unknown) {
    super(ErrorCode.FENCED, `ledger ${ledgerId} is fenced: another client recovered it`, { cause, retriable: false });
    this.name = 'LedgerFencedError';
  }
}

/** The ledger is closed (or this writer was closed): no more appends. */
export class LedgerClosedError extends StrataError {
  constructor(readonly ledgerId: number, message?: string) {
    super(ErrorCode.LEDGER_CLOSED, message ?? `ledger ${ledgerId} is closed`, { retriable: false });
    this.name = 'LedgerClosedError';
  }
}

export class NoSuchLedgerError extends StrataError {
  constructor(readonly ledgerId: number) {
    super(ErrorCode.NOT_FOUND, `ledger ${ledgerId} does not exist`, { retriable: false });
    this.name = 'NoSuchLedgerError';
  }
}

/** Fewer writable bookies are available than the ensemble (or a replacement) needs. Retriable. */
export class NotEnoughBookiesError extends StrataError {
  constructor(readonly needed: number, readonly available: number) {
    super(ErrorCode.NOT_ENOUGH_BOOKIES, `need ${needed} writable bookies, ${available} available`);
    this.name = 'NotEnoughBookiesError';
  }
}

/** No replica could serve an entry (all down, or all copies failed their checksum). */
export class EntryUnavailableError extends StrataError {
  constructor(readonly ledgerId: number, readonly entryId: number, cause?: unknown) {
    super(ErrorCode.UNAVAILABLE, `no replica could serve entry ${entryId} of ledger ${ledgerId}`, { cause });
    this.name = 'EntryUnavailableError';
  }
}

export class LedgerChecksumError extends StrataError {
  constructor(readonly ledgerId: number, readonly entryId: number, readonly bookieId: string) {
    super(ErrorCode.CHECKSUM_MISMATCH, `entry ${entryId} of ledger ${ledgerId} from bookie ${bookieId} fails its CRC32C`, { retriable: true });
    this.name = 'LedgerChecksumError';
  }
}

export class InvalidLedgerArgumentError extends StrataError {
  constructor(message: string) {
    super(ErrorCode.INVALID_ARGUMENT, message, { retriable: false });
    this.name = 'InvalidLedgerArgumentError';
  }
}

/** The client (or the handle) was closed while the call was in flight. */
export class LedgerClientClosedError extends StrataError {
  constructor(what = 'ledger client') {
    super(ErrorCode.UNAVAILABLE, `${what} is closed`, { retriable: false });
    this.name = 'LedgerClientClosedError';
  }
}
