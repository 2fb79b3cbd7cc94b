import { ErrorCode, StrataError } from '@strata/runtime';

/** A compare-and-swap lost: the key's version was not the one expected. */
export class BadVersionError extends StrataError {
  constructor(readonly key: string, readonly expectedVersion: number, readonly actualVersion: number) {
    super(ErrorCode.BAD_VERSION, `version of ${key} is ${actualVersion}, expected ${expectedVersion}`);
    this.name = 'BadVersionError';
  }
}

/** A watch asked for a revision the store no longer has: re-list, then watch from the list's revision. */
export class CompactedError extends StrataError {
  constructor(readonly revision: number, readonly compactRevision: number) {
    super(ErrorCode.NOT_FOUND, `revision ${revision} is compacted (oldest kept: ${compactRevision})`, { retriable: false });
    this.name = 'CompactedError';
  }
}

/** The session's lease is, or may already be, gone on the server: drop everything bound to it. */
export class SessionLostError extends StrataError {
  constructor(readonly sessionId: string, reason: string) {
    super(ErrorCode.SESSION_LOST, `session ${sessionId} lost: ${reason}`);
    this.name = 'SessionLostError';
  }
}

export class MetadataUnavailableError extends StrataError {
  constructor(message: string, cause?: unknown) {
    super(ErrorCode.METADATA_UNAVAILABLE, message, { cause });
    this.name = 'MetadataUnavailableError';
  }
}
