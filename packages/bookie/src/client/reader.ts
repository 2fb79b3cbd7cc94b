import { crc32c } from '@node-rs/crc32';
import { ErrorCode, isStrataError, type Logger, type Random } from '@strata/runtime';
import type { LedgerEntry, LedgerMetadata, LedgerReader } from './api.js';
import { EntryUnavailableError, InvalidLedgerArgumentError } from './errors.js';
import { cloneMetadata, writeSet } from './metadata.js';
import type { BookieTransport, StoredEntryData } from './transport.js';

/** The run of entries first, first + 1, ... (up to last) at the head of `got` whose CRC32C holds. */
function contiguousValid(got: StoredEntryData[], first: number, last: number): StoredEntryData[] {
  const valid: StoredEntryData[] = [];
  for (const e of got) {
    if (e.entryId !== first + valid.length || e.entryId > last || crc32c(e.payload) !== e.crc32c) break;
    valid.push(e);
  }
  return valid;
}

export interface CompiledLedgerClientOptions {
  maxPendingAdds: number;
  maxEntryBytes: number;
  addTimeoutMs: number;
  requestTimeoutMs: number;
  metadataRetries: number;
  ensembleChangeRetries: number;
  readChunkBytes: number;
  maxAddsPerMessage: number;
  maxBytesPerMessage: number;
  maxMessageBytes: number;
  retryInitialMs: number;
  retryMaxMs: number;
}

/** What ledger handles need from their client (one per BookieLedgerClient). */
export interface ClientContext {
  readonly transport: BookieTransport;
  readonly logger: Logger;
  readonly options: CompiledLedgerClientOptions;
  readonly random: Random;
  readMetadata(ledgerId: number, signal?: AbortSignal): Promise<{ metadata: LedgerMetadata; version: number }>;
  /** Compare-and-swap of the ledger's metadata; returns the new version, throws BadVersionError. */
  casMetadata(metadata: LedgerMetadata, expectedVersion: number): Promise<number>;
  /** `count` distinct writable bookies not in `exclude`, chosen at random; NotEnoughBookiesError if too few. */
  pickBookies(count: number, exclude: ReadonlySet<string>, signal?: AbortSignal): Promise<string[]>;
  backoff(attempt: number, signal?: AbortSignal): Promise<void>;
}

/**
 * Reads of one ledger. Each entry is read from one replica of its write set and, if that replica
 * fails (down, missing the entry, CRC mismatch), from the next; reads fail only when no replica
 * can serve the entry, even after re-reading the metadata (the ensemble may have changed).
 */
export class LedgerReaderImpl implements LedgerReader {
  protected meta: LedgerMetadata;
  protected version: number;
  private knownLac: number;

  constructor(protected readonly ctx: ClientContext, metadata: LedgerMetadata, version: number) {
    this.meta = metadata;
    this.version = version;
    this.knownLac = metadata.state === 'CLOSED' ? metadata.lastEntryId : -1;
  }

  get ledgerId(): number {
    return this.meta.ledgerId;
  }

  get metadata(): LedgerMetadata {
    return cloneMetadata(this.meta);
  }

  /** The metadata version this handle last saw (for CAS by its owner). */
  get metadataVersion(): number {
    return this.version;
  }

  protected readableLast(): number {
    return this.meta.state === 'CLOSED' ? this.meta.lastEntryId : this.knownLac;
  }

  async read(firstEntryId: number, lastEntryId: number, options: { maxBytes?: number; signal?: AbortSignal } = {}): Promise<LedgerEntry[]> {
    const { signal } = options;
    signal?.throwIfAborted();
    if (!Number.isInteger(firstEntryId) || !Number.isInteger(lastEntryId) || firstEntryId < 0 || lastEntryId < firstEntryId) {
      throw new InvalidLedgerArgumentError(`bad entry range ${firstEntryId}..${lastEntryId} of ledger ${this.ledgerId}`);
    }
    if (lastEntryId > this.readableLast() && this.meta.state !== 'CLOSED') await this.readLastAddConfirmed({ signal });
    if (lastEntryId > this.readableLast()) {
      throw new InvalidLedgerArgumentError(`entry ${lastEntryId} is past the last readable entry ${this.readableLast()} of ledger ${this.ledgerId}`);
    }
    const maxBytes = options.maxBytes ?? Number.POSITIVE_INFINITY;
    const out: LedgerEntry[] = [];
    let bytes = 0;
    let next = firstEntryId;
    while (next <= lastEntryId && (out.length === 0 || bytes < maxBytes)) {
      const budget = Math.max(1, Math.min(this.ctx.options.readChunkBytes, maxBytes - bytes));
      const chunk = await this.readChunk(next, lastEntryId, budget, signal);
      for (const e of chunk) {
        if (out.length > 0 && bytes + e.payload.length > maxBytes) return out;
        out.push({ ledgerId: this.ledgerId, entryId: e.entryId, payload: e.payload });
        bytes += e.payload.length;
      }
      next = chunk[chunk.length - 1]!.entryId + 1;
    }
    return out;
  }

  /** At least one entry starting at `first`, all within one ensemble and CRC-checked. */
  private async readChunk(first: number, last: number, maxBytes: number, signal?: AbortSignal): Promise<StoredEntryData[]> {
    let lastError: unknown;
    for (let round = 0; round < 2; round++) {
      const { bookies, end } = this.segment(first, last);
      const E = this.meta.ensembleSize;
      const W = this.meta.writeQuorum;
      if (E > W && end > first) {
        const striped = await this.readStriped(bookies, first, end, maxBytes, signal);
        if (striped.length > 0) return striped;
      }
      // With E == W every bookie of the ensemble holds every entry: read a range from one replica.
      // Otherwise (or when the striped read found nothing), one entry from one replica at a time.
      const rangeEnd = E === W ? end : first;
      const replicas = writeSet(first, E, W).map((i) => bookies[i]!);
      const start = this.ctx.random.int(0, replicas.length);
      for (let k = 0; k < replicas.length; k++) {
        const bookieId = replicas[(start + k) % replicas.length]!;
        try {
          const got = await this.ctx.transport.read(bookieId, { ledgerId: this.ledgerId, firstEntryId: first, lastEntryId: rangeEnd, maxBytes }, signal);
          const valid = contiguousValid(got, first, rangeEnd);
          if (valid.length > 0) return valid;
          lastError = new EntryUnavailableError(this.ledgerId, first, new Error(`bookie ${bookieId} returned no valid entry`));
        } catch (err) {
          signal?.throwIfAborted();
          lastError = err;
          this.ctx.logger.debug({ ledgerId: this.ledgerId, entryId: first, bookieId, err }, 'replica read failed; trying the next');
        }
      }
      if (round === 0) await this.refreshMetadata(signal).catch(() => undefined);
    }
    throw new EntryUnavailableError(this.ledgerId, first, lastError);
  }

  /**
   * Striped ensembles (E > W): every bookie holds a subset of [first, end], and a bookie answers a range
   * only if it holds its first entry. Ask each bookie, in parallel, from the first entry it holds, and
   * merge; returns the contiguous CRC-valid run from `first` (empty if `first` came back from nobody).
   */
  private async readStriped(bookies: string[], first: number, end: number, maxBytes: number, signal?: AbortSignal): Promise<StoredEntryData[]> {
    const E = this.meta.ensembleSize;
    const W = this.meta.writeQuorum;
    const perBookie = Math.max(1, Math.ceil((maxBytes * W) / E));
    const answers = await Promise.allSettled(bookies.map((bookieId, index) => {
      let from = first;
      while (from <= end && !writeSet(from, E, W).includes(index)) from++;
      if (from > end) return Promise.resolve([] as StoredEntryData[]);
      return this.ctx.transport.read(bookieId, { ledgerId: this.ledgerId, firstEntryId: from, lastEntryId: end, maxBytes: perBookie }, signal);
    }));
    signal?.throwIfAborted();
    const byId = new Map<number, StoredEntryData>();
    for (const a of answers) {
      if (a.status !== 'fulfilled') continue;
      for (const e of a.value) {
        if (e.entryId >= first && e.entryId <= end && !byId.has(e.entryId) && crc32c(e.payload) === e.crc32c) byId.set(e.entryId, e);
      }
    }
    const out: StoredEntryData[] = [];
    for (let n = first; byId.has(n); n++) out.push(byId.get(n)!);
    return out;
  }

  private segment(first: number, last: number): { bookies: string[]; end: number } {
    const ens = this.meta.ensembles;
    let i = 0;
    while (i + 1 < ens.length && ens[i + 1]!.firstEntryId <= first) i++;
    const end = i + 1 < ens.length ? Math.min(last, ens[i + 1]!.firstEntryId - 1) : last;
    return { bookies: ens[i]!.bookies, end };
  }

  protected async refreshMetadata(signal?: AbortSignal): Promise<void> {
    const fresh = await this.ctx.readMetadata(this.ledgerId, signal);
    this.applyMetadata(fresh.metadata, fresh.version);
  }

  /** A reader adopts newer metadata (ensembles replaced by auto-recovery, the ledger closed). */
  protected applyMetadata(metadata: LedgerMetadata, version: number): void {
    if (version <= this.version) return;
    this.meta = metadata;
    this.version = version;
    if (metadata.state === 'CLOSED') this.knownLac = metadata.lastEntryId;
  }

  async readLastAddConfirmed(options: { signal?: AbortSignal } = {}): Promise<number> {
    const { signal } = options;
    await this.refreshMetadata(signal);
    if (this.meta.state === 'CLOSED') return this.meta.lastEntryId;
    const last = this.meta.ensembles[this.meta.ensembles.length - 1]!;
    // Entries before the last ensemble's first entry were all acknowledged when it was recorded.
    let lac = Math.max(this.knownLac, last.firstEntryId - 1);
    const answers = await Promise.allSettled(last.bookies.map((b) => this.ctx.transport.readLastAddConfirmed(b, this.ledgerId, signal)));
    let responses = 0;
    for (const a of answers) {
      if (a.status === 'fulfilled') {
        responses++;
        lac = Math.max(lac, a.value);
      } else if (isStrataError(a.reason) && a.reason.code === ErrorCode.NOT_FOUND) {
        responses++;
      }
    }
    signal?.throwIfAborted();
    if (responses === 0) this.ctx.logger.warn({ ledgerId: this.ledgerId }, 'no bookie of the ensemble answered the last-add-confirmed');
    this.knownLac = lac;
    return lac;
  }

  async close(): Promise<void> {}
}
