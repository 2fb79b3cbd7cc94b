import { crc32c } from '@node-rs/crc32';
import { BadVersionError } from '@strata/coordinator';
import { ErrorCode, isStrataError, StrataError, type Logger } from '@strata/runtime';
import type { LedgerMetadata, LedgerWriter } from './api.js';
import {
  InvalidLedgerArgumentError, LedgerClosedError, LedgerFencedError, NotEnoughBookiesError,
} from './errors.js';
import { cloneMetadata, writeSet } from './metadata.js';
import { LedgerReaderImpl, type ClientContext } from './reader.js';

interface PendingEntry {
  entryId: number;
  payload: Buffer;
  crc: number;
  /** Ensemble indexes that acknowledged it (bookies at those indexes in the current ensemble). */
  acked: Set<number>;
  /** Ensemble indexes it was sent to under the current ensemble. */
  sent: Set<number>;
  resolve(entryId: number): void;
  reject(err: Error): void;
}

/** Codes that mean "this bookie is unusable now": replace it (ensemble change). Anything else but FENCED breaks the writer. */
const BOOKIE_FAILURE_CODES: ReadonlySet<string> = new Set([
  ErrorCode.UNAVAILABLE, ErrorCode.TIMEOUT, ErrorCode.READ_ONLY, ErrorCode.SERVICE_NOT_READY, ErrorCode.TOO_MANY_REQUESTS,
  ErrorCode.INTERNAL, ErrorCode.NOT_FOUND,
]);

/**
 * The single writer of a ledger (also used by recovery, with `recovery` adds, to re-write the tail).
 *
 * Invariants:
 * - `pending` holds the unacknowledged entries in entry-id order; the head is acknowledged (and its
 *   promise resolved) only once it reached ackQuorum bookies of its write set, so appends resolve in order.
 * - An acknowledgement counts only if the bookie that sent it is still at that index of the current
 *   ensemble: an ack from a replaced bookie is ignored, the entry was re-sent to its replacement.
 * - While an ensemble change is in progress nothing is sent; afterwards every pending entry is sent to
 *   the bookies of its write set it was not yet sent to.
 * - Once `failure` is set (fenced, no replacement bookie, a bookie refused the data) every pending and
 *   later append fails with it; close() still closes the ledger at the last acknowledged entry.
 */
export class LedgerWriterImpl extends LedgerReaderImpl implements LedgerWriter {
  private nextEntryId: number;
  private lac: number;
  private lengthBytes = 0;
  private readonly pending: PendingEntry[] = [];
  private readonly slotWaiters: Array<() => void> = [];
  private reserved = 0;
  private readonly failedIndexes = new Set<number>();
  private changing = false;
  private failure: StrataError | undefined;
  private closing: Promise<void> | undefined;
  private drainWaiters: Array<() => void> = [];
  private readonly wlog: Logger;

  constructor(
    ctx: ClientContext,
    metadata: LedgerMetadata,
    version: number,
    private readonly mode: { recovery: boolean; lastAddConfirmed: number; initialLength?: number },
  ) {
    super(ctx, metadata, version);
    this.lac = mode.lastAddConfirmed;
    this.nextEntryId = mode.lastAddConfirmed + 1;
    this.lengthBytes = mode.initialLength ?? 0;
    this.wlog = ctx.logger.child({ ledgerId: metadata.ledgerId, role: mode.recovery ? 'recovery-writer' : 'writer' });
  }

  get lastAddConfirmed(): number {
    return this.lac;
  }

  override async readLastAddConfirmed(options: { signal?: AbortSignal } = {}): Promise<number> {
    options.signal?.throwIfAborted();
    return this.lac;
  }

  protected override readableLast(): number {
    return this.lac;
  }

  /** Adopts newer metadata for reads only if it keeps this writer's view of the current ensemble. */
  protected override applyMetadata(metadata: LedgerMetadata, version: number): void {
    if (version <= this.version || this.changing || metadata.state !== this.meta.state) return;
    const ours = this.meta.ensembles[this.meta.ensembles.length - 1]!;
    const theirs = metadata.ensembles[metadata.ensembles.length - 1]!;
    if (ours.firstEntryId !== theirs.firstEntryId || ours.bookies.join() !== theirs.bookies.join()) return;
    this.meta = metadata;
    this.version = version;
  }

  async append(payload: Uint8Array, options: { signal?: AbortSignal } = {}): Promise<number> {
    return this.appendAt(payload, options.signal);
  }

  /** Recovery re-writes entries with their original ids: the next id must be exactly this one. */
  async appendRecovered(entryId: number, payload: Buffer): Promise<number> {
    return this.appendAt(payload, undefined, entryId);
  }

  private async appendAt(payload: Uint8Array, signal: AbortSignal | undefined, expectedEntryId?: number): Promise<number> {
    signal?.throwIfAborted();
    if (payload.length > this.ctx.options.maxEntryBytes) {
      throw new InvalidLedgerArgumentError(`entry of ${payload.length} bytes exceeds maxEntryBytes ${this.ctx.options.maxEntryBytes}`);
    }
    this.checkWritable();
    // Backpressure: at most maxPendingAdds unacknowledged; later appends wait here, first come first served
    // (so entry ids follow call order), each woken with a slot reserved for it.
    if (this.pending.length + this.reserved >= this.ctx.options.maxPendingAdds || this.slotWaiters.length > 0) {
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => {
          const at = this.slotWaiters.indexOf(wake);
          if (at < 0) return;
          this.slotWaiters.splice(at, 1);
          this.wakeWaiters();
          reject(signal!.reason);
        };
        const wake = () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        };
        this.slotWaiters.push(wake);
        signal?.addEventListener('abort', onAbort, { once: true });
      });
      this.reserved--;
      try {
        this.checkWritable();
        signal?.throwIfAborted();
      } catch (err) {
        this.wakeWaiters();
        throw err;
      }
    }
    if (expectedEntryId !== undefined && expectedEntryId !== this.nextEntryId) {
      throw new Error(`ledger ${this.ledgerId}: recovered entry ${expectedEntryId} out of order (next ${this.nextEntryId})`);
    }
    // A copy: the entry may be re-sent after an ensemble change, the caller may reuse its buffer.
    const data = Buffer.from(payload);
    return new Promise<number>((resolve, reject) => {
      const entry: PendingEntry = {
        entryId: this.nextEntryId++, payload: data, crc: crc32c(data), acked: new Set(), sent: new Set(), resolve, reject,
      };
      this.pending.push(entry);
      if (!this.changing) this.sendEntry(entry);
    });
  }

  private wakeWaiters(): void {
    while (this.slotWaiters.length > 0 && (this.failure || this.closing || this.pending.length + this.reserved < this.ctx.options.maxPendingAdds)) {
      this.reserved++;
      this.slotWaiters.shift()!();
    }
  }

  private checkWritable(): void {
    if (this.failure) throw this.failure;
    if (this.closing) throw new LedgerClosedError(this.ledgerId, `ledger ${this.ledgerId}: writer is closed`);
  }

  private currentEnsemble(): string[] {
    return this.meta.ensembles[this.meta.ensembles.length - 1]!.bookies;
  }

  private sendEntry(entry: PendingEntry): void {
    const bookies = this.currentEnsemble();
    for (const idx of writeSet(entry.entryId, this.meta.ensembleSize, this.meta.writeQuorum)) {
      if (entry.sent.has(idx) || this.failedIndexes.has(idx)) continue;
      entry.sent.add(idx);
      const bookieId = bookies[idx]!;
      this.ctx.transport.add(bookieId, {
        ledgerId: this.ledgerId, entryId: entry.entryId, lastAddConfirmed: this.lac, payload: entry.payload, crc32c: entry.crc,
        recovery: this.mode.recovery,
      }).then(
        () => this.onAck(entry, idx, bookieId),
        (err: unknown) => this.onAddError(idx, bookieId, err),
      );
    }
  }

  private onAck(entry: PendingEntry, idx: number, bookieId: string): void {
    if (this.failure || this.currentEnsemble()[idx] !== bookieId || this.failedIndexes.has(idx)) return;
    if (this.pending.length === 0 || entry.entryId < this.pending[0]!.entryId) return;
    entry.acked.add(idx);
    this.drainAcknowledged();
  }

  private drainAcknowledged(): void {
    // No acknowledgement during an ensemble change: the new ensemble starts at the first unacknowledged
    // entry, and every entry from there on must still be pending to be re-sent to the replacement.
    if (this.changing) return;
    while (this.pending.length > 0 && this.pending[0]!.acked.size >= this.meta.ackQuorum) {
      const head = this.pending.shift()!;
      if (head.entryId !== this.lac + 1) throw new Error(`ledger ${this.ledgerId}: acknowledging ${head.entryId} after ${this.lac}`);
      this.lac = head.entryId;
      this.lengthBytes += head.payload.length;
      head.resolve(head.entryId);
    }
    this.wakeWaiters();
    if (this.pending.length === 0) this.notifyDrained();
  }

  private onAddError(idx: number, bookieId: string, err: unknown): void {
    if (this.failure || this.currentEnsemble()[idx] !== bookieId) return;
    const e = isStrataError(err) ? err : new StrataError(ErrorCode.INTERNAL, String(err), { cause: err });
    if (e.code === ErrorCode.FENCED) {
      this.fail(new LedgerFencedError(this.ledgerId, e));
      return;
    }
    if (!BOOKIE_FAILURE_CODES.has(e.code)) {
      this.fail(e);
      return;
    }
    if (this.failedIndexes.has(idx)) return;
    this.wlog.warn({ bookieId, err: e, index: idx }, 'bookie failed; changing the ensemble');
    this.failedIndexes.add(idx);
    for (const p of this.pending) {
      p.acked.delete(idx);
      p.sent.delete(idx);
    }
    if (!this.changing) void this.changeEnsemble();
  }

  /**
   * Replaces every failed bookie of the current ensemble, records the new ensemble (starting at the
   * first unacknowledged entry) by CAS, then re-sends what those bookies had not acknowledged.
   */
  private async changeEnsemble(): Promise<void> {
    this.changing = true;
    try {
      for (let attempt = 0; this.failedIndexes.size > 0 && !this.failure; attempt++) {
        if (attempt >= this.ctx.options.ensembleChangeRetries) {
          throw new NotEnoughBookiesError(this.meta.ensembleSize, -1);
        }
        const failed = [...this.failedIndexes];
        const current = this.currentEnsemble();
        let replacements: string[];
        try {
          replacements = await this.ctx.pickBookies(failed.length, new Set(current));
        } catch (err) {
          if (isStrataError(err) && err.code === ErrorCode.NOT_ENOUGH_BOOKIES && attempt + 1 < this.ctx.options.ensembleChangeRetries) {
            await this.ctx.backoff(attempt);
            continue;
          }
          throw err;
        }
        const next = [...current];
        failed.forEach((idx, i) => { next[idx] = replacements[i]!; });
        await this.recordEnsemble(next);
        for (const idx of failed) this.failedIndexes.delete(idx);
        this.wlog.info({ ensemble: next, firstEntryId: this.lac + 1 }, 'ensemble changed');
      }
    } catch (err) {
      this.fail(isStrataError(err) ? err : new StrataError(ErrorCode.INTERNAL, String(err), { cause: err }));
    } finally {
      this.changing = false;
    }
    if (this.failure) return;
    // Send first: entries the surviving bookies already acknowledged must still reach the replacement.
    for (const entry of [...this.pending]) this.sendEntry(entry);
    this.drainAcknowledged();
    // A bookie of the new ensemble may have failed while nothing was being sent.
    if (this.failedIndexes.size > 0) void this.changeEnsemble();
  }

  /** CAS the new last ensemble into metadata; merges concurrent changes made by others (auto-recovery). */
  private async recordEnsemble(bookies: string[]): Promise<void> {
    for (let attempt = 0; attempt < this.ctx.options.metadataRetries; attempt++) {
      const firstEntryId = this.lac + 1;
      const updated = cloneMetadata(this.meta);
      const last = updated.ensembles[updated.ensembles.length - 1]!;
      if (last.firstEntryId === firstEntryId) last.bookies = bookies;
      else updated.ensembles.push({ firstEntryId, bookies });
      try {
        this.version = await this.ctx.casMetadata(updated, this.version);
        this.meta = updated;
        return;
      } catch (err) {
        if (!(err instanceof BadVersionError)) throw err;
        const fresh = await this.ctx.readMetadata(this.ledgerId);
        const allowed = this.mode.recovery ? fresh.metadata.state === 'IN_RECOVERY' : fresh.metadata.state === 'OPEN';
        if (!allowed) throw new LedgerFencedError(this.ledgerId, err);
        const ours = this.meta.ensembles[this.meta.ensembles.length - 1]!;
        const theirs = fresh.metadata.ensembles[fresh.metadata.ensembles.length - 1]!;
        if (ours.firstEntryId !== theirs.firstEntryId || ours.bookies.join() !== theirs.bookies.join()) {
          // Only this writer changes the last ensemble of its ledger; someone else did: treat as fenced.
          throw new LedgerFencedError(this.ledgerId, err);
        }
        this.meta = fresh.metadata;
        this.version = fresh.version;
      }
    }
    throw new StrataError(ErrorCode.BAD_VERSION, `ledger ${this.ledgerId}: metadata kept changing under the ensemble change`);
  }

  private fail(err: StrataError): void {
    if (this.failure) return;
    this.failure = err;
    this.wlog.warn({ err }, 'writer failed');
    for (const p of this.pending.splice(0)) p.reject(err);
    this.wakeWaiters();
    this.notifyDrained();
  }

  private notifyDrained(): void {
    for (const w of this.drainWaiters.splice(0)) w();
  }

  /** Waits for in-flight appends, then closes the ledger at the last acknowledged entry (CAS). */
  override close(): Promise<void> {
    this.closing ??= this.doClose().finally(() => this.onClosed?.());
    return this.closing;
  }

  /** Called once close() finished (either way); the client uses it to forget the writer. */
  onClosed: (() => void) | undefined;

  /** The client is going away: fail what is pending and whatever comes. */
  abandon(err: StrataError): void {
    this.fail(err);
  }

  private async doClose(): Promise<void> {
    await Promise.resolve();
    this.wakeWaiters();
    if (this.pending.length > 0 && !this.failure) await new Promise<void>((resolve) => this.drainWaiters.push(resolve));
    for (let attempt = 0; attempt < this.ctx.options.metadataRetries; attempt++) {
      const updated: LedgerMetadata = { ...cloneMetadata(this.meta), state: 'CLOSED', lastEntryId: this.lac, length: this.lengthBytes };
      try {
        this.version = await this.ctx.casMetadata(updated, this.version);
        this.meta = updated;
        this.wlog.info({ lastEntryId: this.lac }, 'ledger closed');
        return;
      } catch (err) {
        if (!(err instanceof BadVersionError)) throw err;
        const fresh = await this.ctx.readMetadata(this.ledgerId);
        const m = fresh.metadata;
        if (m.state === 'CLOSED') {
          this.meta = m;
          this.version = fresh.version;
          // Someone recovered it; fine only if they closed it exactly where this writer stopped.
          if (m.lastEntryId === this.lac) return;
          throw new LedgerFencedError(this.ledgerId, err);
        }
        const expected = this.mode.recovery ? 'IN_RECOVERY' : 'OPEN';
        if (m.state !== expected) throw new LedgerFencedError(this.ledgerId, err);
        this.meta = m;
        this.version = fresh.version;
      }
    }
    throw new StrataError(ErrorCode.BAD_VERSION, `ledger ${this.ledgerId}: metadata kept changing while closing`);
  }
}
