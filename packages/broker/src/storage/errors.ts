import { ErrorCode, StrataError } from '@strata/runtime';

/**
 * Errors raised by the broker's storage layer (managed ledgers and cursors). Branch on `code`:
 * FENCED (this broker lost the topic), SERVICE_NOT_READY (closed: reconnect), LEDGER_CLOSED
 * (terminated), TOO_MANY_REQUESTS (pending appends full), INVALID_ARGUMENT, NOT_FOUND.
 */

/** Another broker took this managed ledger over; this instance must be closed and the topic unloaded. */
export class ManagedLedgerFencedError extends StrataError {
  constructor(readonly managedLedger: string, reason: string, options?: { cause?: unknown }) {
    super(ErrorCode.FENCED, `managed ledger ${managedLedger} is fenced: ${reason}`, { ...options, retriable: false });
    this.name = 'ManagedLedgerFencedError';
  }
}

/** The managed ledger (or cursor) is closed, e.g. the topic is unloading. Reconnect and retry. */
export class ManagedLedgerClosedError extends StrataError {
  constructor(readonly managedLedger: string, what = 'managed ledger') {
    super(ErrorCode.SERVICE_NOT_READY, `${what} ${managedLedger} is closed`, { retriable: true });
    this.name = 'ManagedLedgerClosedError';
  }
}

/** terminate() was called: no more appends, ever. */
export class ManagedLedgerTerminatedError extends StrataError {
  constructor(readonly managedLedger: string) {
    super(ErrorCode.LEDGER_CLOSED, `managed ledger ${managedLedger} is terminated`, { retriable: false });
    this.name = 'ManagedLedgerTerminatedError';
  }
}

/** maxPendingAppends / maxPendingAppendBytes reached: retry once earlier appends resolve. */
export class TooManyPendingAppendsError extends StrataError {
  constructor(readonly managedLedger: string, detail: string) {
    super(ErrorCode.TOO_MANY_REQUESTS, `managed ledger ${managedLedger}: too many pending appends (${detail})`, { retriable: true });
    this.name = 'TooManyPendingAppendsError';
  }
}

export class InvalidStorageArgumentError extends StrataError {
  constructor(message: string) {
    super(ErrorCode.INVALID_ARGUMENT, message, { retriable: false });
    this.name = 'InvalidStorageArgumentError';
  }
}

export class ManagedLedgerNotFoundError extends StrataError {
  constructor(readonly managedLedger: string, what = 'managed ledger') {
    super(ErrorCode.NOT_FOUND, `${what} ${managedLedger} not found`, { retriable: false });
    this.name = 'ManagedLedgerNotFoundError';
  }
}

/** A ledger operation failed in a way that is not fencing (bookies unavailable, metadata down). */
export class StorageUnavailableError extends StrataError {
  constructor(message: string, options?: { cause?: unknown; code?: string }) {
    super(options?.code ?? ErrorCode.UNAVAILABLE, message, { cause: options?.cause, retriable: true });
    this.name = 'StorageUnavailableError';
  }
}
