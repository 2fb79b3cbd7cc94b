import { ErrorCode, StrataError } from '@strata/runtime';
import type { ListOptions, Session } from './store.js';

/** Page size limits of `list` (store.ts: default 1000, at most 10000). */
export const LIST_DEFAULT_LIMIT = 1000;
export const LIST_MAX_LIMIT = 10_000;

export function pageLimit(options?: ListOptions): number {
  const limit = options?.limit ?? LIST_DEFAULT_LIMIT;
  if (!Number.isInteger(limit) || limit < 1 || limit > LIST_MAX_LIMIT) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `list limit must be an integer in [1, ${LIST_MAX_LIMIT}], got ${limit}`, { retriable: false });
  }
  return limit;
}

export function checkKey(key: string): void {
  if (typeof key !== 'string' || key.length === 0) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'metadata key must be a non-empty string', { retriable: false });
  }
}

export function checkExpectedVersion(v: number | undefined): void {
  if (v !== undefined && (!Number.isInteger(v) || v < 0)) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `expectedVersion must be an integer >= 0, got ${v}`, { retriable: false });
  }
}

export function toBuffer(value: Uint8Array | string): Buffer {
  return typeof value === 'string' ? Buffer.from(value, 'utf8') : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

export function foreignSession(session: Session): StrataError {
  return new StrataError(ErrorCode.INVALID_ARGUMENT, `session ${session.id} was not created by this store`, { retriable: false });
}

/** Rejects with the signal's reason as soon as it aborts; the underlying operation may still complete. */
export function raceSignal<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
