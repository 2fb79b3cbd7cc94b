import type { Logger } from '@strata/runtime';
import { ErrorCode, isStrataError } from '@strata/runtime';
import type { MetadataStore } from '@strata/coordinator';
import { AckedSet } from './acked-set.js';
import type { AckedRange, Cursor, CursorStats, Entry, InitialPosition, Position, ReadOptions } from './api.js';
import { comparePositions, positionEquals } from './api.js';
import { InvalidStorageArgumentError, ManagedLedgerClosedError } from './errors.js';
import { cursorKey, encodeCursor, type CursorRecord } from './formats.js';

const DEFAULT_READ_MAX_BYTES = 5 * 1024 * 1024;

/** What a cursor needs from its managed ledger (implemented by ManagedLedgerImpl). */
export interface CursorHost {
  readonly name: string;
  readonly lastConfirmed: Position;
  readonly firstPosition: Position;
  readonly metadata: MetadataStore;
  readonly maxAckedRangesPersisted: number;
  now(): number;
  read(from: Position, options: ReadOptions): Promise<Entry[]>;
  normalize(p: Position): Position;
  nextPosition(p: Position): Position;
  prevPosition(p: Position): Position;
  countEntriesAfter(from: Position): number;
  waitForEntryAt(p: Position, signal?: AbortSignal): Promise<void>;
  /** Throws the fencing error if the managed ledger is fenced. */
  checkNotFenced(): void;
  fence(reason: string, cause?: unknown): Error;
  onCursorRead(): void;
  detach(cursor: CursorImpl): void;
}

export class CursorImpl implements Cursor {
  private md: Position;
  private readPos: Position;
  private props: Record<string, string>;
  private readonly acked = new AckedSet();
  /** Becomes true on the first read(), so cursors that never read do not pin the entry cache. */
  private active = false;
  private closed = false;
  private reading = false;
  private activated = false;
  private seekEpoch = 0;
  private dirty = false;
  private flushing: Promise<void> | undefined;
  private lastPersistedAtMs = 0;
  private rangesNotPersisted = 0;

  constructor(
    private readonly host: CursorHost,
    readonly name: string,
    readonly durable: boolean,
    record: CursorRecord,
    /** Metadata version of the cursor key (durable only; 0 = not persisted yet). */
    private version: number,
    private readonly logger: Logger,
  ) {
    this.md = record.markDelete;
    this.props = { ...record.properties };
    for (const r of record.ranges) this.acked.addRange(r.from.ledgerId, r.from.entryId, r.to.entryId);
    this.acked.removeUpTo(this.md);
    this.readPos = host.nextPosition(this.md);
    this.advanceMarkDelete();
  }

  get markDeletePosition(): Position {
    return this.md;
  }

  get readPosition(): Position {
    return this.readPos;
  }

  get properties(): Readonly<Record<string, string>> {
    return this.props;
  }

  get isActive(): boolean {
    return this.active && !this.closed;
  }

  /** Starting point of a non-durable cursor: the first read returns `start` when inclusive. */
  setStart(start: Position): void {
    this.md = this.host.prevPosition(start);
    this.readPos = this.host.normalize(start);
  }

  async read(options: ReadOptions & { wait?: boolean }): Promise<Entry[]> {
    this.checkOpen();
    if (!Number.isInteger(options.maxEntries) || options.maxEntries < 1) {
      throw new InvalidStorageArgumentError(`maxEntries must be an integer >= 1, got ${options.maxEntries}`);
    }
    if (this.reading) throw new InvalidStorageArgumentError(`cursor ${this.name} already has a read in flight`);
    this.reading = true;
    if (!this.activated) {
      this.activated = true;
      this.active = true;
    }
    try {
      for (;;) {
        const out: Entry[] = [];
        const maxBytes = options.maxBytes ?? DEFAULT_READ_MAX_BYTES;
        let bytes = 0;
        // Bounded rounds: each one returns entries or moves readPosition forward over acked ones.
        for (let round = 0; round < 64 && out.length < options.maxEntries && bytes < maxBytes; round++) {
          this.readPos = this.host.normalize(this.readPos);
          if (comparePositions(this.readPos, this.host.lastConfirmed) > 0) break;
          const epoch = this.seekEpoch;
          const entries = await this.host.read(this.readPos, { maxEntries: options.maxEntries - out.length, maxBytes: maxBytes - bytes, signal: options.signal });
          this.checkOpen();
          if (epoch !== this.seekEpoch) {
            out.length = 0;
            bytes = 0;
            continue;
          }
          const last = entries.at(-1);
          if (!last) break;
          for (const e of entries) {
            if (this.isAcked(e.position)) continue;
            out.push(e);
            bytes += e.payload.length;
          }
          this.readPos = this.host.nextPosition(last.position);
        }
        this.host.onCursorRead();
        if (out.length > 0 || !options.wait) return out;
        await this.host.waitForEntryAt(this.readPos, options.signal);
        this.checkOpen();
      }
    } finally {
      this.reading = false;
    }
  }

  waitForEntries(options: { signal?: AbortSignal } = {}): Promise<void> {
    try {
      this.checkOpen();
    } catch (err) {
      return Promise.reject(err);
    }
    return this.host.waitForEntryAt(this.readPos, options.signal);
  }

  hasMoreEntries(): boolean {
    const p = this.host.normalize(this.readPos);
    if (comparePositions(p, this.host.lastConfirmed) > 0) return false;
    // Everything from readPosition on might be individually acked.
    const readable = this.host.countEntriesAfter(this.host.prevPosition(p));
    let ackedAhead = 0;
    for (const r of this.acked.list()) {
      if (comparePositions(r.to, p) < 0) continue;
      const from = comparePositions(r.from, p) < 0 ? p.entryId : r.from.entryId;
      ackedAhead += r.to.entryId - from + 1;
    }
    return readable > ackedAhead;
  }

  async ackIndividual(positions: readonly Position[]): Promise<void> {
    this.checkOpen();
    const last = this.host.lastConfirmed;
    for (const p of positions) {
      if (comparePositions(p, this.md) <= 0 || comparePositions(p, last) > 0 || p.entryId < 0) continue;
      // Only positions that hold an entry (not "after the end of a closed ledger").
      if (!positionEquals(this.host.normalize(p), p)) continue;
      if (this.acked.add(p)) this.dirty = true;
    }
    this.advanceMarkDelete();
  }

  async ackCumulative(p: Position, options: { properties?: Record<string, string> } = {}): Promise<void> {
    this.checkOpen();
    if (options.properties) {
      this.props = { ...options.properties };
      this.dirty = true;
    }
    let target = p;
    const last = this.host.lastConfirmed;
    if (comparePositions(target, last) > 0) target = last;
    const normalized = this.host.normalize(target);
    if (!positionEquals(normalized, target)) target = this.host.prevPosition(normalized);
    if (comparePositions(target, this.md) <= 0) return;
    this.md = target;
    this.acked.removeUpTo(target);
    this.dirty = true;
    this.advanceMarkDelete();
  }

  isAcked(p: Position): boolean {
    return comparePositions(p, this.md) <= 0 || this.acked.contains(p);
  }

  seekRead(p: Position): void {
    this.checkOpen();
    let q = this.host.normalize(p);
    if (comparePositions(q, this.md) <= 0) q = this.host.nextPosition(this.md);
    this.readPos = q;
    this.seekEpoch++;
  }

  rewind(): void {
    this.checkOpen();
    this.readPos = this.host.nextPosition(this.md);
    this.seekEpoch++;
  }

  async resetTo(p: Position | InitialPosition, options: { signal?: AbortSignal } = {}): Promise<void> {
    this.checkOpen();
    const target =
      p === 'earliest' ? this.host.firstPosition : p === 'latest' ? this.host.nextPosition(this.host.lastConfirmed) : this.host.normalize(p);
    this.md = this.host.prevPosition(target);
    this.acked.clear();
    this.readPos = target;
    this.seekEpoch++;
    this.dirty = true;
    if (this.durable) await this.flush(options);
  }

  async setProperties(properties: Record<string, string>): Promise<void> {
    this.checkOpen();
    this.props = { ...properties };
    this.dirty = true;
  }

  backlog(): number {
    return Math.max(0, this.host.countEntriesAfter(this.md) - this.acked.entryCount);
  }

  ackedRanges(): AckedRange[] {
    return this.acked.list();
  }

  setActive(active: boolean): void {
    this.activated = true;
    this.active = active;
    this.host.onCursorRead();
  }

  stats(): CursorStats {
    return {
      name: this.name,
      durable: this.durable,
      markDeletePosition: this.md,
      readPosition: this.readPos,
      backlogEntries: this.backlog(),
      individuallyAckedRanges: this.acked.rangeCount,
      lastPersistedAtMs: this.lastPersistedAtMs,
      ackedRangesNotPersisted: this.rangesNotPersisted,
    };
  }

  /** Metadata version of the cursor's key (CAS for delete). */
  get persistedVersion(): number {
    return this.version;
  }

  get needsFlush(): boolean {
    return this.durable && this.dirty && !this.closed;
  }

  /** Marks the cursor as needing a persist (a new cursor, or one loaded from an older format). */
  markDirty(): void {
    this.dirty = true;
  }

  async flush(options: { signal?: AbortSignal } = {}): Promise<void> {
    if (!this.durable) return;
    // One persist at a time; acks that arrive during it are caught by the loop.
    while (this.flushing) await this.flushing.catch(() => undefined);
    if (!this.dirty) return;
    this.flushing = this.persist(options.signal);
    try {
      await this.flushing;
    } finally {
      this.flushing = undefined;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    try {
      await this.flush();
    } catch (err) {
      this.logger.warn({ err, cursor: this.name }, 'cursor flush on close failed; acks since the last flush will be redelivered');
    }
    this.closed = true;
    this.host.detach(this);
  }

  /** Detach without flushing (managed ledger deleted or fenced, cursor being deleted). */
  markClosed(): void {
    this.closed = true;
  }

  /** Undo markClosed() when deleting the cursor failed. */
  markOpen(): void {
    this.closed = false;
  }

  private async persist(signal?: AbortSignal): Promise<void> {
    this.host.checkNotFenced();
    const limit = this.host.maxAckedRangesPersisted;
    const ranges = this.acked.list(limit);
    const record: CursorRecord = { markDelete: this.md, ranges, properties: this.props, updatedAtMs: this.host.now() };
    this.dirty = false;
    const key = cursorKey(this.host.name, this.name);
    const encoded = encodeCursor(record);
    const persisted = (version: number) => {
      this.version = version;
      this.lastPersistedAtMs = record.updatedAtMs;
      this.rangesNotPersisted = Math.max(0, this.acked.rangeCount - ranges.length);
    };
    try {
      persisted((await this.host.metadata.put(key, encoded, { expectedVersion: this.version, signal })).version);
    } catch (err) {
      this.dirty = true;
      if (isStrataError(err) && err.code === ErrorCode.BAD_VERSION) {
        throw this.host.fence(`cursor ${this.name} was changed by another broker`, err);
      }
      // Outcome unknown: if our write landed, adopt its version (else the next CAS would fence us).
      const kv = await this.host.metadata.get(key).catch(() => undefined);
      if (kv && kv.version > this.version && kv.value.toString('utf8') === encoded) {
        persisted(kv.version);
        return;
      }
      throw err;
    }
  }

  private advanceMarkDelete(): void {
    const last = this.host.lastConfirmed;
    for (;;) {
      const next = this.host.nextPosition(this.md);
      if (comparePositions(next, last) > 0) break;
      const r = this.acked.rangeAt(next);
      if (!r) break;
      this.md = { ledgerId: next.ledgerId, entryId: r[1] };
      this.acked.removeUpTo(this.md);
      this.dirty = true;
    }
    if (comparePositions(this.readPos, this.md) <= 0) this.readPos = this.host.nextPosition(this.md);
  }

  private checkOpen(): void {
    if (this.closed) throw new ManagedLedgerClosedError(`${this.host.name}/${this.name}`, 'cursor');
  }
}
