import type { LedgerClient, LedgerReader, LedgerWriter } from '@strata/bookie';
import type { MetadataStore } from '@strata/coordinator';
import type { Clock, Logger } from '@strata/runtime';
import { ErrorCode, isStrataError } from '@strata/runtime';
import type {
  Cursor, Entry, InitialPosition, ManagedLedger, ManagedLedgerConfig, ManagedLedgerStats, Position, ReadOptions,
} from './api.js';
import { comparePositions, minPosition, positionEquals } from './api.js';
import type { CompiledFactoryConfig } from './config.js';
import { CursorImpl, type CursorHost } from './cursor.js';
import type { EntryCache } from './entry-cache.js';
import {
  InvalidStorageArgumentError, ManagedLedgerClosedError, ManagedLedgerFencedError, ManagedLedgerNotFoundError,
  ManagedLedgerTerminatedError, StorageUnavailableError, TooManyPendingAppendsError,
} from './errors.js';
import {
  cursorKey, cursorsPrefix, decodeCursor, decodeLedgerList, encodeLedgerList, listKey, type LedgerInfo,
} from './formats.js';

export interface ManagedLedgerDeps {
  ledgerClient: LedgerClient;
  metadata: MetadataStore;
  logger: Logger;
  clock: Clock;
  cache: EntryCache;
  factoryConfig: CompiledFactoryConfig;
  onClosed(ml: ManagedLedgerImpl): void;
}

interface PendingAppend {
  readonly payload: Buffer;
  resolve(p: Position): void;
  reject(err: unknown): void;
}

interface Waiter {
  readonly at: Position;
  resolve(): void;
  reject(err: unknown): void;
}

const OPEN_ATTEMPTS = 3;
const TOUCH_ATTEMPTS = 5;
const MAX_WAITERS = 100_000;
const DEFAULT_READ_MAX_BYTES = 5 * 1024 * 1024;
const CURSOR_NAME_MAX_CHARS = 1024;

function isCode(err: unknown, code: string): boolean {
  return isStrataError(err) && err.code === code;
}

/**
 * The managed ledger: see ManagedLedger in api.ts for the contract. One instance per open topic, made
 * by ManagedLedgerFactoryImpl.open(). docs/broker-storage.md describes the state machine.
 */
export class ManagedLedgerImpl implements ManagedLedger, CursorHost {
  readonly config: Readonly<ManagedLedgerConfig>;
  readonly metadata: MetadataStore;
  readonly maxAckedRangesPersisted: number;
  private readonly log: Logger;
  private readonly lostController = new AbortController();

  private ledgers: LedgerInfo[] = [];
  private listVersion = 0;
  private writer: LedgerWriter | undefined;
  private writerGeneration = 0;
  /** Entries and bytes sent to the current writer (confirmed or not): rollover is decided on these. */
  private sentEntries = 0;
  private sentBytes = 0;
  private brokenGeneration = -1;
  private rolling: Promise<void> | undefined;
  private readonly queue: PendingAppend[] = [];
  private pendingCount = 0;
  private pendingBytes = 0;
  private readonly idleWaiters: Array<() => void> = [];
  private last: Position = { ledgerId: 0, entryId: -1 };
  private isTerminated = false;
  private lifecycle: 'open' | 'closing' | 'closed' = 'open';
  private closing: Promise<void> | undefined;
  private fencedError: ManagedLedgerFencedError | undefined;
  private listLock: Promise<unknown> = Promise.resolve();
  private readonly readers = new Map<number, Promise<LedgerReader>>();
  private readonly waiters = new Set<Waiter>();
  private readonly durableCursors = new Map<string, CursorImpl>();
  private readonly creatingCursors = new Map<string, Promise<CursorImpl>>();
  private readonly deletingCursors = new Map<string, Promise<void>>();
  private readonly readersCursors = new Set<CursorImpl>();
  private counters = { appendedEntries: 0, appendedBytes: 0, trimmedLedgers: 0, cacheHits: 0, cacheMisses: 0 };
  private nonDurableSeq = 0;

  private constructor(readonly name: string, config: ManagedLedgerConfig, private readonly deps: ManagedLedgerDeps) {
    this.config = Object.freeze({ ...config });
    this.metadata = deps.metadata;
    this.maxAckedRangesPersisted = deps.factoryConfig.maxAckedRangesPersisted;
    this.log = deps.logger.child({ component: 'managed-ledger', managedLedger: name });
  }

  /** Reads the ledger list, recovers (fences) the last ledger, starts a new one, loads cursors. */
  static async open(name: string, config: ManagedLedgerConfig, deps: ManagedLedgerDeps, createIfMissing: boolean): Promise<ManagedLedgerImpl> {
    const ml = new ManagedLedgerImpl(name, config, deps);
    for (let attempt = 1; ; attempt++) {
      try {
        await ml.initialize(createIfMissing);
        break;
      } catch (err) {
        if (!isCode(err, ErrorCode.BAD_VERSION) || attempt >= OPEN_ATTEMPTS) {
          if (isCode(err, ErrorCode.BAD_VERSION)) throw new StorageUnavailableError(`managed ledger ${name}: concurrent open by another broker`, { cause: err, code: ErrorCode.BAD_VERSION });
          throw err;
        }
        ml.log.info({ attempt }, 'ledger list changed during open; retrying');
      }
    }
    try {
      await ml.loadCursors();
    } catch (err) {
      // The new ledger is listed; the next open recovers it (empty, so it is dropped).
      await ml.writer?.close().catch(() => undefined);
      throw err;
    }
    ml.log.info({ ledgers: ml.ledgers.length, lastConfirmed: ml.last, currentLedger: ml.writer?.ledgerId }, 'managed ledger opened');
    return ml;
  }

  // ---------------------------------------------------------------------------------------------
  // Public surface

  get lost(): AbortSignal {
    return this.lostController.signal;
  }

  get lastConfirmed(): Position {
    return this.last;
  }

  get firstPosition(): Position {
    const first = this.ledgers[0];
    return first ? this.normalize({ ledgerId: first.ledgerId, entryId: 0 }) : { ledgerId: this.last.ledgerId, entryId: 0 };
  }

  /** False once close() (or delete) has begun. */
  get isOpen(): boolean {
    return this.lifecycle === 'open';
  }

  get terminated(): boolean {
    return this.isTerminated;
  }

  append(payload: Uint8Array, options: { signal?: AbortSignal } = {}): Promise<Position> {
    try {
      options.signal?.throwIfAborted();
      this.checkWritable();
    } catch (err) {
      return Promise.reject(err);
    }
    const bytes = payload.byteLength;
    if (this.pendingCount >= this.config.maxPendingAppends) {
      return Promise.reject(new TooManyPendingAppendsError(this.name, `${this.pendingCount} pending, limit ${this.config.maxPendingAppends}`));
    }
    // A single append larger than the byte limit is still accepted when nothing else is pending.
    if (this.pendingCount > 0 && this.pendingBytes + bytes > this.config.maxPendingAppendBytes) {
      return Promise.reject(new TooManyPendingAppendsError(this.name, `${this.pendingBytes} bytes pending, limit ${this.config.maxPendingAppendBytes}`));
    }
    this.pendingCount++;
    this.pendingBytes += bytes;
    const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
    return new Promise<Position>((resolve, reject) => {
      const settle = () => {
        this.pendingCount--;
        this.pendingBytes -= bytes;
        if (this.pendingCount === 0) for (const wake of this.idleWaiters.splice(0)) wake();
      };
      const op: PendingAppend = {
        payload: data,
        resolve: (p) => { settle(); resolve(p); },
        reject: (e) => { settle(); reject(e); },
      };
      if (this.writer && !this.rolling && this.queue.length === 0 && !this.isCurrentFull()) this.send(op);
      else {
        this.queue.push(op);
        if (this.writer && this.isCurrentFull()) this.startRollover('full');
        else this.ensureWriter();
      }
    });
  }

  async read(from: Position, options: ReadOptions): Promise<Entry[]> {
    this.checkNotClosed();
    options.signal?.throwIfAborted();
    const maxEntries = options.maxEntries;
    if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new InvalidStorageArgumentError(`maxEntries must be an integer >= 1, got ${maxEntries}`);
    const maxBytes = options.maxBytes ?? DEFAULT_READ_MAX_BYTES;
    const out: Entry[] = [];
    let bytes = 0;
    let p = this.normalize(from);
    while (out.length < maxEntries && bytes < maxBytes && comparePositions(p, this.last) <= 0) {
      const info = this.ledgerInfo(p.ledgerId);
      if (!info) break;
      const lastInLedger = this.last.ledgerId === info.ledgerId ? this.last.entryId : info.entries - 1;
      const upTo = Math.min(lastInLedger, p.entryId + (maxEntries - out.length) - 1);
      if (upTo < p.entryId) break;
      const got = await this.readLedgerRange(info.ledgerId, p.entryId, upTo, maxBytes - bytes, out.length === 0, options.signal);
      if (got.length === 0) break;
      for (const e of got) {
        out.push(e);
        bytes += e.payload.length;
      }
      p = this.nextPosition((got.at(-1) as Entry).position);
    }
    return out;
  }

  async readPositions(positions: readonly Position[], options: { signal?: AbortSignal } = {}): Promise<Entry[]> {
    this.checkNotClosed();
    const sorted = [...positions].sort(comparePositions);
    const out: Entry[] = [];
    let i = 0;
    while (i < sorted.length) {
      const p = sorted[i] as Position;
      i++;
      if (p.entryId < 0 || comparePositions(p, this.last) > 0 || !positionEquals(this.normalize(p), p) || !this.ledgerInfo(p.ledgerId)) continue;
      // Read runs of consecutive entries in one go.
      let end = p.entryId;
      while (i < sorted.length) {
        const q = sorted[i] as Position;
        if (q.ledgerId !== p.ledgerId || q.entryId > end + 1) break;
        if (q.entryId === end + 1 && comparePositions(q, this.last) <= 0 && positionEquals(this.normalize(q), q)) end++;
        i++;
      }
      let start = p.entryId;
      while (start <= end) {
        const got = await this.readLedgerRange(p.ledgerId, start, end, DEFAULT_READ_MAX_BYTES, true, options.signal);
        if (got.length === 0) break;
        out.push(...got);
        start = (got.at(-1) as Entry).position.entryId + 1;
      }
    }
    return out;
  }

  waitForEntriesAfter(after: Position, options: { signal?: AbortSignal } = {}): Promise<void> {
    return this.waitForEntryAt(this.nextPosition(after), options.signal);
  }

  nextPosition(p: Position): Position {
    return this.normalize({ ledgerId: p.ledgerId, entryId: p.entryId + 1 });
  }

  async findFirst(predicate: (entry: Entry) => boolean, options: { from?: Position; signal?: AbortSignal } = {}): Promise<Position | undefined> {
    this.checkNotClosed();
    const start = this.normalize(options.from ?? this.firstPosition);
    // Positions from `start` to lastConfirmed as segments of consecutive entry ids, indexed globally.
    const segments: Array<{ ledgerId: number; first: number; count: number; offset: number }> = [];
    let total = 0;
    for (const info of this.ledgers) {
      if (info.ledgerId < start.ledgerId) continue;
      const first = info.ledgerId === start.ledgerId ? start.entryId : 0;
      const lastId = this.last.ledgerId === info.ledgerId ? this.last.entryId : info.entries - 1;
      if (info.ledgerId > this.last.ledgerId || lastId < first) continue;
      segments.push({ ledgerId: info.ledgerId, first, count: lastId - first + 1, offset: total });
      total += lastId - first + 1;
    }
    const at = (index: number): Position => {
      let seg = segments[0] as (typeof segments)[number];
      for (const s of segments) if (s.offset <= index) seg = s;
      return { ledgerId: seg.ledgerId, entryId: seg.first + (index - seg.offset) };
    };
    let lo = 0;
    let hi = total;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const p = at(mid);
      const [entry] = await this.readLedgerRange(p.ledgerId, p.entryId, p.entryId, Number.MAX_SAFE_INTEGER, true, options.signal);
      if (!entry) throw new StorageUnavailableError(`entry ${p.ledgerId}:${p.entryId} of ${this.name} could not be read`);
      if (predicate(entry)) hi = mid;
      else lo = mid + 1;
    }
    return lo < total ? at(lo) : undefined;
  }

  findPositionByTime(timestampMs: number, options: { signal?: AbortSignal } = {}): Promise<Position | undefined> {
    const timeOf = this.config.entryTimeMs;
    if (!timeOf) return Promise.reject(new InvalidStorageArgumentError(`managed ledger ${this.name} has no entryTimeMs: cannot search by time`));
    return this.findFirst((e) => (timeOf(e.payload) ?? Infinity) >= timestampMs, options);
  }

  countEntriesAfter(from: Position): number {
    let n = 0;
    for (const info of this.ledgers) {
      if (info.ledgerId < from.ledgerId) continue;
      n += info.ledgerId === from.ledgerId ? Math.max(0, info.entries - (from.entryId + 1)) : info.entries;
    }
    return n;
  }

  async openCursor(name: string, options: { initialPosition?: InitialPosition; signal?: AbortSignal } = {}): Promise<Cursor> {
    this.checkNotClosed();
    if (typeof name !== 'string' || name.length === 0 || name.length > CURSOR_NAME_MAX_CHARS) {
      throw new InvalidStorageArgumentError(`cursor name must be 1..${CURSOR_NAME_MAX_CHARS} characters`);
    }
    const existing = this.deletingCursors.has(name) ? undefined : this.durableCursors.get(name);
    if (existing) return existing;
    let creating = this.creatingCursors.get(name);
    if (!creating) {
      creating = (async () => {
        // Re-subscribing while the same name is being deleted: create only once the old key is gone.
        await this.deletingCursors.get(name)?.catch(() => undefined);
        this.checkNotClosed();
        this.checkNotFenced();
        const again = this.durableCursors.get(name);
        if (again) return again;
        const initial = options.initialPosition ?? 'latest';
        const markDelete = initial === 'latest' ? this.last : this.prevPosition(this.firstPosition);
        const cursor = new CursorImpl(this, name, true, { markDelete, ranges: [], properties: {}, updatedAtMs: 0 }, 0, this.log);
        cursor.markDirty();
        await cursor.flush({ signal: options.signal });
        this.durableCursors.set(name, cursor);
        this.log.info({ cursor: name, markDelete, initialPosition: initial }, 'cursor created');
        return cursor;
      })().finally(() => this.creatingCursors.delete(name));
      this.creatingCursors.set(name, creating);
    }
    return creating;
  }

  cursors(): readonly Cursor[] {
    return [...this.durableCursors.values()];
  }

  getCursor(name: string): Cursor | undefined {
    return this.durableCursors.get(name);
  }

  deleteCursor(name: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    try {
      this.checkNotClosed();
      this.checkNotFenced();
    } catch (err) {
      return Promise.reject(err);
    }
    const pending = this.deletingCursors.get(name);
    if (pending) return pending;
    // Registered synchronously, so an openCursor() of the same name right after waits for it.
    const creating = this.creatingCursors.get(name);
    const deleting = (async () => {
      await creating?.catch(() => undefined);
      const cursor = this.durableCursors.get(name);
      if (!cursor) throw new ManagedLedgerNotFoundError(`${this.name}/${name}`, 'cursor');
      await this.deleteDurableCursor(cursor, options.signal);
    })().finally(() => this.deletingCursors.delete(name));
    this.deletingCursors.set(name, deleting);
    return deleting;
  }

  private async deleteDurableCursor(cursor: CursorImpl, signal?: AbortSignal): Promise<void> {
    const name = cursor.name;
    // Wait for an in-flight persist so the version below is the latest one we wrote.
    await cursor.flush().catch(() => undefined);
    this.durableCursors.delete(name);
    cursor.markClosed();
    try {
      await this.metadata.delete(cursorKey(this.name, name), { expectedVersion: cursor.persistedVersion, signal });
    } catch (err) {
      if (isCode(err, ErrorCode.BAD_VERSION)) throw this.fence(`cursor ${name} was changed by another broker`, err);
      cursor.markOpen();
      this.durableCursors.set(name, cursor);
      throw err;
    }
    this.onCursorRead();
    this.log.info({ cursor: name }, 'cursor deleted');
  }

  newNonDurableCursor(start: Position | InitialPosition, options: { inclusive?: boolean; name?: string } = {}): Cursor {
    this.checkNotClosed();
    const name = options.name ?? `reader-${++this.nonDurableSeq}`;
    const cursor = new CursorImpl(this, name, false, { markDelete: this.last, ranges: [], properties: {}, updatedAtMs: 0 }, 0, this.log);
    let first: Position;
    if (start === 'earliest') first = this.firstPosition;
    else if (start === 'latest') first = this.nextPosition(this.last);
    else if (options.inclusive) first = comparePositions(start, this.firstPosition) < 0 ? this.firstPosition : this.normalize(start);
    else first = this.nextPosition(start);
    cursor.setStart(first);
    this.readersCursors.add(cursor);
    return cursor;
  }

  stats(): ManagedLedgerStats {
    return {
      entries: this.ledgers.reduce((n, l) => n + l.entries, 0),
      sizeBytes: this.ledgers.reduce((n, l) => n + l.sizeBytes, 0),
      ledgers: this.ledgers.length,
      firstPosition: this.firstPosition,
      lastConfirmed: this.last,
      pendingAppends: this.pendingCount,
      pendingAppendBytes: this.pendingBytes,
      cacheSizeBytes: this.deps.cache.ownerSizeBytes(this.name),
      cacheHits: this.counters.cacheHits,
      cacheMisses: this.counters.cacheMisses,
      appendedEntries: this.counters.appendedEntries,
      appendedBytes: this.counters.appendedBytes,
      trimmedLedgers: this.counters.trimmedLedgers,
      terminated: this.isTerminated,
    };
  }

  /** Ledger ids currently listed (oldest first); for stats and tests. */
  ledgerIds(): number[] {
    return this.ledgers.map((l) => l.ledgerId);
  }

  async terminate(options: { signal?: AbortSignal } = {}): Promise<Position> {
    this.checkNotClosed();
    this.checkNotFenced();
    if (this.isTerminated) return this.last;
    this.isTerminated = true;
    await this.waitIdle();
    await this.rolling;
    options.signal?.throwIfAborted();
    const writer = this.writer;
    this.writer = undefined;
    if (writer) await this.closeWriter(writer);
    await this.mutateList((ledgers) => ledgers, true);
    this.log.info({ lastConfirmed: this.last }, 'managed ledger terminated');
    return this.last;
  }

  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  async delete(options: { signal?: AbortSignal } = {}): Promise<void> {
    this.checkNotClosed();
    this.checkNotFenced();
    this.lifecycle = 'closing';
    this.failQueue(new ManagedLedgerClosedError(this.name));
    await this.waitIdle();
    await this.rolling;
    const writer = this.writer;
    this.writer = undefined;
    if (writer) await writer.close().catch((err: unknown) => this.log.warn({ err }, 'closing the current ledger before delete failed'));
    for (const cursor of [...this.durableCursors.values()]) {
      await cursor.flush().catch(() => undefined);
      cursor.markClosed();
      try {
        await this.metadata.delete(cursorKey(this.name, cursor.name), { expectedVersion: cursor.persistedVersion, signal: options.signal });
      } catch (err) {
        if (isCode(err, ErrorCode.BAD_VERSION)) throw this.fence(`cursor ${cursor.name} was changed by another broker during delete`, err);
        throw err;
      }
    }
    this.durableCursors.clear();
    // The list goes first: after a crash here, ledgers may be orphaned but never referenced while deleted.
    try {
      await this.metadata.delete(listKey(this.name), { expectedVersion: this.listVersion, signal: options.signal });
    } catch (err) {
      if (isCode(err, ErrorCode.BAD_VERSION)) throw this.fence('ledger list changed by another broker during delete', err);
      throw err;
    }
    for (const info of this.ledgers) {
      await this.closeReader(info.ledgerId);
      await this.deps.ledgerClient.deleteLedger(info.ledgerId).catch((err: unknown) => this.log.warn({ err, ledgerId: info.ledgerId }, 'deleting a ledger failed; it is orphaned'));
    }
    this.ledgers = [];
    this.log.info('managed ledger deleted');
    await this.close();
  }

  // ---------------------------------------------------------------------------------------------
  // CursorHost and factory hooks

  now(): number {
    return this.deps.clock.now();
  }

  /** The first position >= p that holds (or will next hold) an entry. */
  normalize(p: Position): Position {
    const ls = this.ledgers;
    let i = 0;
    while (i < ls.length && (ls[i] as LedgerInfo).ledgerId < p.ledgerId) i++;
    if (i >= ls.length) return p;
    const info = ls[i] as LedgerInfo;
    if (info.ledgerId > p.ledgerId) return this.firstEntryFrom(i);
    const entryId = Math.max(0, p.entryId);
    if (info.closedAtMs === undefined || entryId < info.entries) return { ledgerId: info.ledgerId, entryId };
    return this.firstEntryFrom(i + 1);
  }

  prevPosition(p: Position): Position {
    const q = this.normalize(p);
    if (q.entryId > 0) return { ledgerId: q.ledgerId, entryId: q.entryId - 1 };
    for (let i = this.ledgers.length - 1; i >= 0; i--) {
      const info = this.ledgers[i] as LedgerInfo;
      if (info.ledgerId < q.ledgerId && info.entries > 0) return { ledgerId: info.ledgerId, entryId: info.entries - 1 };
    }
    return { ledgerId: q.ledgerId, entryId: -1 };
  }

  waitForEntryAt(p: Position, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      if (this.fencedError) return reject(this.fencedError);
      if (this.lifecycle !== 'open') return reject(new ManagedLedgerClosedError(this.name));
      if (comparePositions(this.normalize(p), this.last) <= 0) return resolve();
      if (this.waiters.size >= MAX_WAITERS) return reject(new TooManyPendingAppendsError(this.name, `${MAX_WAITERS} readers waiting`));
      const onAbort = () => {
        this.waiters.delete(waiter);
        reject(signal?.reason);
      };
      const waiter: Waiter = {
        at: p,
        resolve: () => { signal?.removeEventListener('abort', onAbort); resolve(); },
        reject: (e) => { signal?.removeEventListener('abort', onAbort); reject(e); },
      };
      this.waiters.add(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  checkNotFenced(): void {
    if (this.fencedError) throw this.fencedError;
  }

  /** This broker lost the managed ledger: fail what is pending, tell the owner via `lost`. */
  fence(reason: string, cause?: unknown): ManagedLedgerFencedError {
    if (this.fencedError) return this.fencedError;
    const err = new ManagedLedgerFencedError(this.name, reason, { cause });
    this.fencedError = err;
    this.log.warn({ reason, err: cause }, 'managed ledger fenced: another broker owns it now');
    this.failQueue(err);
    for (const w of [...this.waiters]) w.reject(err);
    this.waiters.clear();
    this.lostController.abort(err);
    return err;
  }

  /** Evicts cache entries every active cursor has read past. */
  onCursorRead(): void {
    let min: Position | undefined;
    for (const c of this.allCursors()) {
      if (!c.isActive) continue;
      min = min ? minPosition(min, c.readPosition) : c.readPosition;
    }
    if (!min) this.deps.cache.clear(this.name);
    else this.deps.cache.evictBefore(this.name, min);
  }

  detach(cursor: CursorImpl): void {
    if (this.durableCursors.get(cursor.name) === cursor) this.durableCursors.delete(cursor.name);
    this.readersCursors.delete(cursor);
    this.onCursorRead();
  }

  /** Persists every durable cursor with unpersisted acks (called by the factory's flush loop). */
  async flushCursors(): Promise<void> {
    if (this.fencedError) return;
    for (const cursor of [...this.durableCursors.values()]) {
      if (!cursor.needsFlush) continue;
      try {
        await cursor.flush();
      } catch (err) {
        this.log.warn({ err, cursor: cursor.name }, 'cursor flush failed; will retry');
        if (this.fencedError) return;
      }
    }
  }

  /** TTL, age rollover and retention trimming (called by the factory's maintenance loop). */
  async maintain(): Promise<void> {
    if (this.lifecycle !== 'open' || this.fencedError) return;
    await this.expireByTtl();
    const current = this.currentInfo();
    if (current && this.writer && !this.rolling && current.entries > 0 && this.now() - current.createdAtMs >= this.config.maxLedgerAgeMs) {
      this.startRollover('age');
    }
    await this.trim();
  }

  // ---------------------------------------------------------------------------------------------
  // Opening

  private async initialize(createIfMissing: boolean): Promise<void> {
    const kv = await this.metadata.get(listKey(this.name));
    if (!kv && !createIfMissing) throw new ManagedLedgerNotFoundError(this.name);
    const list = kv ? decodeLedgerList(kv.value, listKey(this.name)) : { ledgers: [], terminated: false };
    const ledgers = list.ledgers.map((l) => ({ ...l }));
    const emptyRecovered: number[] = [];
    const lastInfo = ledgers.at(-1);
    if (lastInfo && lastInfo.closedAtMs === undefined) {
      // Fences the previous owner: from here on its appends to this ledger fail.
      const reader = await this.deps.ledgerClient.openLedger(lastInfo.ledgerId, { recovery: true });
      const m = reader.metadata;
      await reader.close().catch(() => undefined);
      lastInfo.entries = m.lastEntryId + 1;
      lastInfo.sizeBytes = m.length;
      lastInfo.closedAtMs = this.now();
      this.log.info({ ledgerId: lastInfo.ledgerId, entries: lastInfo.entries }, 'recovered the previous owner\'s ledger');
      if (lastInfo.entries === 0) {
        ledgers.pop();
        emptyRecovered.push(lastInfo.ledgerId);
      }
    }
    let writer: LedgerWriter | undefined;
    if (!list.terminated) {
      writer = await this.createWriter();
      const prev = ledgers.at(-1);
      if (prev && writer.ledgerId <= prev.ledgerId) {
        await this.discardWriter(writer, true);
        throw new StorageUnavailableError(`ledger ids must ascend: new ${writer.ledgerId} after ${prev.ledgerId}`, { code: ErrorCode.INTERNAL });
      }
      ledgers.push({ ledgerId: writer.ledgerId, entries: 0, sizeBytes: 0, createdAtMs: this.now(), closedAtMs: undefined });
    }
    let version: number;
    try {
      const res = await this.metadata.put(listKey(this.name), encodeLedgerList({ ledgers, terminated: list.terminated }), { expectedVersion: kv?.version ?? 0 });
      version = res.version;
    } catch (err) {
      if (writer) await this.discardWriter(writer, isCode(err, ErrorCode.BAD_VERSION));
      throw err;
    }
    this.ledgers = ledgers;
    this.listVersion = version;
    this.writer = writer;
    this.writerGeneration++;
    this.isTerminated = list.terminated;
    let lastPos: Position = { ledgerId: ledgers[0]?.ledgerId ?? 0, entryId: -1 };
    for (const l of ledgers) if (l.entries > 0) lastPos = { ledgerId: l.ledgerId, entryId: l.entries - 1 };
    this.last = lastPos;
    for (const id of emptyRecovered) {
      await this.deps.ledgerClient.deleteLedger(id).catch((err: unknown) => this.log.warn({ err, ledgerId: id }, 'deleting an empty recovered ledger failed'));
    }
  }

  private async loadCursors(): Promise<void> {
    const prefix = cursorsPrefix(this.name);
    let startAfter: string | undefined;
    for (;;) {
      const page = await this.metadata.list(prefix, { limit: 1000, startAfter });
      for (const item of page.items) {
        const name = decodeURIComponent(item.key.slice(prefix.length));
        // Rewriting bumps the key's version, so a previous owner's late flush fails (and fences it).
        let kv: typeof item | undefined = item;
        for (let attempt = 1; kv; attempt++) {
          try {
            const record = decodeCursor(kv.value, kv.key);
            const res = await this.metadata.put(kv.key, kv.value, { expectedVersion: kv.version });
            this.durableCursors.set(name, new CursorImpl(this, name, true, record, res.version, this.log));
            break;
          } catch (err) {
            if (!isCode(err, ErrorCode.BAD_VERSION) || attempt >= TOUCH_ATTEMPTS) throw err;
            kv = await this.metadata.get(kv.key);
          }
        }
      }
      if (!page.more || page.items.length === 0) break;
      startAfter = page.items.at(-1)?.key;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Appending and rollover

  private send(op: PendingAppend): void {
    const writer = this.writer as LedgerWriter;
    const generation = this.writerGeneration;
    const info = this.currentInfo() as LedgerInfo;
    this.sentEntries++;
    this.sentBytes += op.payload.length;
    writer.append(op.payload).then(
      (entryId) => {
        if (this.brokenGeneration === generation || this.fencedError) {
          // A later append of a broken writer: report failure so the producer resends in order.
          op.reject(this.fencedError ?? new StorageUnavailableError(`append to ${this.name} failed after an earlier failure`));
          return;
        }
        info.entries = entryId + 1;
        info.sizeBytes += op.payload.length;
        const pos: Position = { ledgerId: info.ledgerId, entryId };
        this.last = pos;
        this.counters.appendedEntries++;
        this.counters.appendedBytes += op.payload.length;
        if (this.hasActiveCursor()) this.deps.cache.insert(this.name, { position: pos, payload: op.payload });
        op.resolve(pos);
        this.wakeWaiters();
      },
      (err: unknown) => {
        if (isCode(err, ErrorCode.FENCED)) {
          op.reject(this.fence(`ledger ${info.ledgerId} was recovered by another broker`, err));
          return;
        }
        if (this.fencedError) return op.reject(this.fencedError);
        const first = this.brokenGeneration !== generation;
        this.brokenGeneration = generation;
        if (first) this.log.warn({ err, ledgerId: info.ledgerId }, 'append failed; rolling over to a new ledger');
        op.reject(new StorageUnavailableError(`append to ${this.name} failed`, { cause: err, code: isStrataError(err) ? err.code : ErrorCode.UNAVAILABLE }));
        if (this.writer === writer) this.startRollover('append-failed');
      },
    );
  }

  /** Sends queued appends to the new writer, up to the point where it is full again. */
  private drainQueue(): void {
    while (this.queue.length > 0 && this.writer && !this.rolling) {
      if (this.isCurrentFull()) {
        this.startRollover('full');
        return;
      }
      this.send(this.queue.shift() as PendingAppend);
    }
  }

  private isCurrentFull(): boolean {
    const info = this.currentInfo();
    if (!info) return false;
    const full = this.sentEntries >= this.config.maxEntriesPerLedger || this.sentBytes >= this.config.maxLedgerSizeBytes;
    return full && this.now() - info.createdAtMs >= this.config.minLedgerRolloverMs;
  }

  private ensureWriter(): void {
    if (!this.writer && !this.rolling) this.startRollover('no-ledger');
  }

  private startRollover(reason: string): void {
    if (this.rolling || this.lifecycle !== 'open' || this.fencedError) return;
    if (this.isTerminated && !this.writer) return;
    this.rolling = this.rollover(reason)
      .catch((err: unknown) => {
        this.log.warn({ err, reason }, 'ledger rollover failed');
        this.failQueue(this.fencedError ?? new StorageUnavailableError(`no ledger to append to in ${this.name}`, { cause: err, code: isStrataError(err) ? err.code : ErrorCode.UNAVAILABLE }));
      })
      .finally(() => {
        this.rolling = undefined;
        this.drainQueue();
      });
  }

  private async rollover(reason: string): Promise<void> {
    const old = this.writer;
    this.writer = undefined;
    if (old) await this.closeWriter(old);
    if (this.fencedError || this.isTerminated || this.lifecycle !== 'open') return;
    const writer = await this.createWriter();
    const info: LedgerInfo = { ledgerId: writer.ledgerId, entries: 0, sizeBytes: 0, createdAtMs: this.now(), closedAtMs: undefined };
    try {
      await this.mutateList((ledgers) => {
        const prev = ledgers.at(-1);
        if (prev && prev.ledgerId >= info.ledgerId) throw new StorageUnavailableError(`ledger ids must ascend: ${info.ledgerId} after ${prev.ledgerId}`, { code: ErrorCode.INTERNAL });
        return [...ledgers, info];
      });
    } catch (err) {
      // Delete the new ledger only when the list surely does not name it (the CAS was refused); after
      // an unknown outcome it may be listed, and a listed ledger must never be deleted: leak instead.
      await this.discardWriter(writer, isCode(err, ErrorCode.FENCED) && isCode((err as Error).cause, ErrorCode.BAD_VERSION));
      throw err;
    }
    this.writer = writer;
    this.writerGeneration++;
    this.sentEntries = 0;
    this.sentBytes = 0;
    this.log.info({ reason, ledgerId: writer.ledgerId, previousLedgerId: old?.ledgerId }, 'rolled over to a new ledger');
  }

  /** Closes a writer (waiting for its in-flight appends) and records the ledger's final size. */
  private async closeWriter(writer: LedgerWriter): Promise<void> {
    const info = this.ledgerInfo(writer.ledgerId);
    let lastEntryId: number;
    let length: number;
    try {
      await writer.close();
      lastEntryId = writer.metadata.lastEntryId;
      length = writer.metadata.length;
    } catch (err) {
      if (isCode(err, ErrorCode.FENCED)) throw this.fence(`ledger ${writer.ledgerId} was recovered by another broker`, err);
      // A broken writer: recover our own ledger to learn where it really ends.
      this.log.info({ err, ledgerId: writer.ledgerId }, 'closing the ledger failed; recovering it');
      const reader = await this.deps.ledgerClient.openLedger(writer.ledgerId, { recovery: true });
      lastEntryId = reader.metadata.lastEntryId;
      length = reader.metadata.length;
      await reader.close().catch(() => undefined);
    }
    if (info) {
      info.entries = lastEntryId + 1;
      info.sizeBytes = length;
      info.closedAtMs = this.now();
      if (lastEntryId >= 0 && comparePositions({ ledgerId: info.ledgerId, entryId: lastEntryId }, this.last) > 0) {
        // Entries stored after a failure we reported: they exist, so they are readable (duplicates, never loss).
        this.last = { ledgerId: info.ledgerId, entryId: lastEntryId };
        this.wakeWaiters();
      }
    }
  }

  private createWriter(): Promise<LedgerWriter> {
    return this.deps.ledgerClient.createLedger({
      ensembleSize: this.config.ensembleSize,
      writeQuorum: this.config.writeQuorum,
      ackQuorum: this.config.ackQuorum,
      customMetadata: { managedLedger: this.name },
    });
  }

  private async discardWriter(writer: LedgerWriter, deleteIt: boolean): Promise<void> {
    await writer.close().catch(() => undefined);
    if (!deleteIt) {
      this.log.warn({ ledgerId: writer.ledgerId }, 'ledger list write outcome unknown: keeping the new ledger (it may be listed, else it is orphaned)');
      return;
    }
    await this.deps.ledgerClient.deleteLedger(writer.ledgerId).catch((err: unknown) => this.log.warn({ err, ledgerId: writer.ledgerId }, 'deleting an unused ledger failed; it is orphaned'));
  }

  /** Serialised compare-and-swap of the ledger list. A lost CAS means another broker owns the topic. */
  private mutateList(change: (ledgers: LedgerInfo[]) => LedgerInfo[], terminated = this.isTerminated): Promise<void> {
    const run = this.listLock.then(async () => {
      this.checkNotFenced();
      const next = change(this.ledgers);
      const encoded = encodeLedgerList({ ledgers: next, terminated });
      try {
        const res = await this.metadata.put(listKey(this.name), encoded, { expectedVersion: this.listVersion });
        this.listVersion = res.version;
        this.ledgers = next;
      } catch (err) {
        if (isCode(err, ErrorCode.BAD_VERSION)) throw this.fence('ledger list changed by another broker', err);
        // Outcome unknown (timeout, connection lost): the write may have landed. Look before deciding.
        const kv = await this.metadata.get(listKey(this.name)).catch(() => undefined);
        if (kv && kv.version > this.listVersion && kv.value.toString('utf8') === encoded) {
          this.listVersion = kv.version;
          this.ledgers = next;
          return;
        }
        throw err;
      }
    });
    this.listLock = run.catch(() => undefined);
    return run;
  }

  private failQueue(err: unknown): void {
    for (const op of this.queue.splice(0)) op.reject(err);
  }

  private waitIdle(): Promise<void> {
    if (this.pendingCount === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  // ---------------------------------------------------------------------------------------------
  // Reading

  private async readLedgerRange(ledgerId: number, first: number, last: number, maxBytes: number, atLeastOne: boolean, signal?: AbortSignal): Promise<Entry[]> {
    const out: Entry[] = [];
    let bytes = 0;
    let e = first;
    for (; e <= last; e++) {
      const hit = this.deps.cache.get(this.name, { ledgerId, entryId: e });
      if (!hit) break;
      if ((out.length > 0 || !atLeastOne) && bytes + hit.payload.length > maxBytes) return out;
      this.counters.cacheHits++;
      out.push(hit);
      bytes += hit.payload.length;
    }
    if (e > last) return out;
    if (out.length > 0 && bytes >= maxBytes) return out;
    this.counters.cacheMisses++;
    const reader = await this.getReader(ledgerId);
    const got = await reader.read(e, last, { maxBytes: Math.max(1, maxBytes - bytes), signal });
    for (const g of got) {
      if ((out.length > 0 || !atLeastOne) && bytes + g.payload.length > maxBytes) break;
      out.push({ position: { ledgerId, entryId: g.entryId }, payload: g.payload });
      bytes += g.payload.length;
    }
    return out;
  }

  private getReader(ledgerId: number): Promise<LedgerReader> {
    if (this.writer && this.writer.ledgerId === ledgerId) return Promise.resolve(this.writer);
    let reader = this.readers.get(ledgerId);
    if (!reader) {
      reader = this.deps.ledgerClient.openLedger(ledgerId);
      this.readers.set(ledgerId, reader);
      reader.catch(() => this.readers.delete(ledgerId));
    }
    return reader;
  }

  private async closeReader(ledgerId: number): Promise<void> {
    const reader = this.readers.get(ledgerId);
    this.readers.delete(ledgerId);
    if (reader) await reader.then((r) => r.close()).catch(() => undefined);
  }

  private wakeWaiters(): void {
    for (const w of [...this.waiters]) {
      if (comparePositions(this.normalize(w.at), this.last) <= 0) {
        this.waiters.delete(w);
        w.resolve();
      }
    }
  }

  // ---------------------------------------------------------------------------------------------
  // TTL and trimming

  private async expireByTtl(): Promise<void> {
    if (this.config.ttlMs <= 0) return;
    const cutoff = this.now() - this.config.ttlMs;
    const timeOf = this.config.entryTimeMs;
    for (const cursor of [...this.durableCursors.values()]) {
      const from = this.nextPosition(cursor.markDeletePosition);
      if (comparePositions(from, this.last) > 0) continue;
      let target: Position | undefined;
      if (timeOf) {
        const firstFresh = await this.findFirst((e) => (timeOf(e.payload) ?? Infinity) >= cutoff, { from });
        target = firstFresh ? this.prevPosition(firstFresh) : this.last;
      } else {
        for (const info of this.ledgers) {
          if (info.closedAtMs !== undefined && info.closedAtMs <= cutoff && info.entries > 0) target = { ledgerId: info.ledgerId, entryId: info.entries - 1 };
        }
      }
      if (target && comparePositions(target, cursor.markDeletePosition) > 0) {
        this.log.info({ cursor: cursor.name, upTo: target }, 'TTL expired messages');
        await cursor.ackCumulative(target);
      }
    }
  }

  private async trim(): Promise<void> {
    const { retentionTimeMs, retentionSizeBytes } = this.config;
    if (retentionTimeMs === -1 && retentionSizeBytes === -1) return;
    let slowest = this.last;
    for (const c of this.durableCursors.values()) slowest = minPosition(slowest, c.markDeletePosition);
    const now = this.now();
    let total = this.ledgers.reduce((n, l) => n + l.sizeBytes, 0);
    const doomed = new Set<number>();
    for (let i = 0; i < this.ledgers.length - 1; i++) {
      const info = this.ledgers[i] as LedgerInfo;
      if (info.closedAtMs === undefined) break;
      const consumed = info.ledgerId < slowest.ledgerId || (info.ledgerId === slowest.ledgerId && slowest.entryId >= info.entries - 1);
      if (!consumed) break;
      const expired = retentionTimeMs >= 0 && now - info.closedAtMs >= retentionTimeMs;
      const overSize = retentionSizeBytes >= 0 && total - info.sizeBytes >= retentionSizeBytes;
      if (!expired && !overSize) break;
      doomed.add(info.ledgerId);
      total -= info.sizeBytes;
    }
    if (doomed.size === 0) return;
    await this.mutateList((ledgers) => ledgers.filter((l) => !doomed.has(l.ledgerId)));
    this.deps.cache.evictBefore(this.name, this.firstPosition);
    for (const ledgerId of doomed) {
      await this.closeReader(ledgerId);
      await this.deps.ledgerClient.deleteLedger(ledgerId).catch((err: unknown) => this.log.warn({ err, ledgerId }, 'deleting a trimmed ledger failed; it is orphaned'));
    }
    this.counters.trimmedLedgers += doomed.size;
    this.log.info({ ledgers: [...doomed] }, 'trimmed consumed ledgers');
  }

  // ---------------------------------------------------------------------------------------------
  // Helpers

  private async doClose(): Promise<void> {
    this.lifecycle = 'closing';
    this.failQueue(this.fencedError ?? new ManagedLedgerClosedError(this.name));
    await this.waitIdle();
    await this.rolling;
    if (!this.fencedError) {
      for (const cursor of [...this.durableCursors.values()]) {
        try {
          await cursor.flush();
        } catch (err) {
          this.log.warn({ err, cursor: cursor.name }, 'cursor flush on close failed; acks since the last flush will be redelivered');
        }
      }
    }
    for (const cursor of [...this.durableCursors.values(), ...this.readersCursors]) cursor.markClosed();
    const writer = this.writer;
    this.writer = undefined;
    if (writer && !this.fencedError) await writer.close().catch((err: unknown) => this.log.warn({ err, ledgerId: writer.ledgerId }, 'closing the current ledger failed; the next owner recovers it'));
    for (const id of [...this.readers.keys()]) await this.closeReader(id);
    const closedErr = this.fencedError ?? new ManagedLedgerClosedError(this.name);
    for (const w of [...this.waiters]) w.reject(closedErr);
    this.waiters.clear();
    this.deps.cache.clear(this.name);
    this.lifecycle = 'closed';
    this.deps.onClosed(this);
    this.log.info('managed ledger closed');
  }

  private firstEntryFrom(index: number): Position {
    const ls = this.ledgers;
    for (let j = index; j < ls.length; j++) {
      const info = ls[j] as LedgerInfo;
      if (info.entries > 0 || info.closedAtMs === undefined) return { ledgerId: info.ledgerId, entryId: 0 };
    }
    const lastInfo = ls.at(-1) as LedgerInfo;
    return { ledgerId: lastInfo.ledgerId, entryId: Math.max(0, lastInfo.entries) };
  }

  private ledgerInfo(ledgerId: number): LedgerInfo | undefined {
    return this.ledgers.find((l) => l.ledgerId === ledgerId);
  }

  private currentInfo(): LedgerInfo | undefined {
    const info = this.ledgers.at(-1);
    return info && info.closedAtMs === undefined ? info : undefined;
  }

  private allCursors(): CursorImpl[] {
    return [...this.durableCursors.values(), ...this.readersCursors];
  }

  private hasActiveCursor(): boolean {
    for (const c of this.allCursors()) if (c.isActive) return true;
    return false;
  }

  private checkNotClosed(): void {
    if (this.lifecycle !== 'open') throw new ManagedLedgerClosedError(this.name);
  }

  private checkWritable(): void {
    this.checkNotFenced();
    this.checkNotClosed();
    if (this.isTerminated) throw new ManagedLedgerTerminatedError(this.name);
  }
}
