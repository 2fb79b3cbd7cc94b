import { ErrorCode, StrataError } from '@strata/runtime';

/**
 * Errors of the bookie server and its storage. Each carries a stable `code` (runtime's ErrorCode) that
 * crosses the wire: as the `error_code` of a stream item or in the trailing metadata of a unary call.
 * Ledger-client errors live in client/errors.ts.
 */

/** The ledger is fenced on this bookie: plain adds are refused for ever. Not retriable. */
export class BookieFencedError extends StrataError {
  constructor(readonly ledgerId: number) {
    super(ErrorCode.FENCED, `ledger ${ledgerId} is fenced on this bookie`, { retriable: false });
    this.name = 'BookieFencedError';
  }
}

/** The bookie's disk passed its usage threshold: it serves reads but takes no adds. */
export class BookieReadOnlyError extends StrataError {
  constructor(readonly bookieId: string) {
    super(ErrorCode.READ_ONLY, `bookie ${bookieId} is read-only`, { retriable: false });
    this.name = 'BookieReadOnlyError';
  }
}

/** The payload does not match the CRC32C the writer sent (or the stored entry fails its CRC). */
export class EntryChecksumError extends StrataError {
  constructor(readonly ledgerId: number, readonly entryId: number, where: 'request' | 'disk') {
    super(ErrorCode.CHECKSUM_MISMATCH, `entry ${entryId} of ledger ${ledgerId}: CRC32C mismatch (${where})`, { retriable: where === 'disk' });
    this.name = 'EntryChecksumError';
  }
}

export class EntryTooLargeError extends StrataError {
  constructor(readonly ledgerId: number, readonly entryId: number, readonly size: number, readonly limit: number) {
    super(ErrorCode.TOO_LARGE, `entry ${entryId} of ledger ${ledgerId} is ${size} bytes, limit ${limit}`, { retriable: false });
    this.name = 'EntryTooLargeError';
  }
}

/** Unknown ledger, or an entry this bookie does not hold. */
export class BookieNotFoundError extends StrataError {
  constructor(readonly ledgerId: number, readonly entryId?: number) {
    super(
      ErrorCode.NOT_FOUND,
      entryId === undefined ? `ledger ${ledgerId} is not on this bookie` : `entry ${entryId} of ledger ${ledgerId} is not on this bookie`,
      { retriable: false },
    );
    this.name = 'BookieNotFoundError';
  }
}

/** The same entry id was added again with a different payload (only two writers could do that). */
export class EntryConflictError extends StrataError {
  constructor(readonly ledgerId: number, readonly entryId: number) {
    super(ErrorCode.ALREADY_EXISTS, `entry ${entryId} of ledger ${ledgerId} exists with a different payload`, { retriable: false });
    this.name = 'EntryConflictError';
  }
}

export class BookieArgumentError extends StrataError {
  constructor(message: string) {
    super(ErrorCode.INVALID_ARGUMENT, message, { retriable: false });
    this.name = 'BookieArgumentError';
  }
}

/** The bookie is starting, stopping, or its journal failed (fsync errors are not retried in place). */
export class BookieUnavailableError extends StrataError {
  constructor(message: string, cause?: unknown) {
    super(ErrorCode.UNAVAILABLE, message, { cause });
    this.name = 'BookieUnavailableError';
  }
}

/** Stored data failed validation while loading (a bad checkpoint, a segment shorter than recorded). */
export class StorageCorruptError extends StrataError {
  constructor(message: string, cause?: unknown) {
    super(ErrorCode.INTERNAL, message, { cause, retriable: false });
    this.name = 'StorageCorruptError';
  }
}

/**
 * The data dir and the metadata disagree about who this bookie is (decision 0088): refused at start,
 * never retried. Code CONFIG, so `strata bookie` exits 2 with this one line, which says what to do.
 */
export class BookieIdentityError extends StrataError {
  constructor(message: string) {
    super(ErrorCode.CONFIG, `bookie identity: ${message}`, { retriable: false });
    this.name = 'BookieIdentityError';
  }
}
