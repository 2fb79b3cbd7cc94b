import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32c } from '@node-rs/crc32';
import { ErrorCode, StrataError, systemClock, type Clock, type Logger } from '@strata/runtime';
import { BadVersionError, CompactedError, MetadataUnavailableError, SessionLostError } from '../errors.js';
import { checkExpectedVersion, checkKey, foreignSession, pageLimit, toBuffer } from './common.js';
import { campaign, electionKey } from './election.js';
import type {
  CallOptions, CampaignOptions, DeleteOptions, KeyValue, Leadership, ListOptions, ListPage, MetadataStore, PutOptions,
  PutResult, Session, SessionOptions, WatchEvent, Watcher, WatchOptions,
} from './store.js';

export interface EmbeddedMetadataStoreOptions {
  /** Directory of the store's files; created if missing. One process at a time (a LOCK file). */
  dir: string;
  logger: Logger;
  /** Drives session expiry. */
  clock?: Clock;
  /** Watch history kept in memory, in events (default 10000); older start revisions get CompactedError. */
  historyMax?: number;
  /** Log records between snapshots (default 10000). */
  snapshotEveryRecords?: number;
  /** How often sessions are renewed and checked (default 100 ms). */
  sessionCheckIntervalMs?: number;
  /** Changes waiting for fsync; beyond it writes fail with a retriable MetadataUnavailableError (default 10000). */
  pendingWritesMax?: number;
}

interface Entry {
  value: Buffer;
  version: number;
  createRevision: number;
  modRevision: number;
  lease?: string;
}

/** One log record: every change of one revision. `v` is base64; `l` the session id. */
interface LogRecord {
  r: number;
  ops: ({ p: string; v: string; l?: string } | { d: string })[];
}

interface Snapshot {
  revision: number;
  entries: [key: string, value: string, version: number, createRevision: number, modRevision: number, lease: string | null][];
}

interface Pending {
  frame: Buffer;
  revision: number;
  events: WatchEvent[];
  resolve: () => void;
  reject: (err: Error) => void;
}

const SNAPSHOT = 'snapshot';
const LOG = 'log';
const LOCK = 'LOCK';
const FRAME_HEADER = 8;
/** Largest record accepted on load; anything bigger is a torn or corrupt length field. */
const MAX_RECORD_BYTES = 256 * 1024 * 1024;
/** Largest value accepted (etcd's default request limit is 1.5 MiB; keep the stores alike). */
export const EMBEDDED_MAX_VALUE_BYTES = 1536 * 1024;

/**
 * A single-process MetadataStore persisted on local disk (decision 0010 gives the file format):
 * a snapshot plus an append-only log of framed, CRC32C-checked records, each fsync'd before the
 * change is acknowledged, seen by watchers, or seen by reads. Keys bound to sessions belong to the
 * process that made them, so they are deleted when the store is reopened.
 */
export class EmbeddedMetadataStore implements MetadataStore {
  private readonly entries = new Map<string, Entry>();
  private sortedKeys: string[] = [];
  private revision = 0;
  private durableRevision = 0;
  private compactRevision = 0;
  private history: WatchEvent[] = [];
  private readonly watchers = new Set<EmbeddedWatcher>();
  private readonly sessions = new Map<string, EmbeddedSession>();
  private queue: Pending[] = [];
  private flushing: Promise<void> | undefined;
  private lastPending: Promise<void> = Promise.resolve();
  private recordsSinceSnapshot = 0;
  private failed: Error | undefined;
  private closed = false;
  private sessionTimer: NodeJS.Timeout | undefined;
  private readonly bootId = randomBytes(4).toString('hex');
  private nextSession = 1;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly historyMax: number;
  private readonly snapshotEvery: number;
  private readonly pendingMax: number;

  private constructor(
    private readonly options: EmbeddedMetadataStoreOptions,
    private log: FileHandle,
  ) {
    this.logger = options.logger.child({ component: 'embedded-metadata', dir: options.dir });
    this.clock = options.clock ?? systemClock;
    this.historyMax = options.historyMax ?? 10_000;
    this.snapshotEvery = options.snapshotEveryRecords ?? 10_000;
    this.pendingMax = options.pendingWritesMax ?? 10_000;
  }

  /** Opens (or creates) the store in `dir`: loads the snapshot, replays the log, cuts a torn tail. */
  static async open(options: EmbeddedMetadataStoreOptions): Promise<EmbeddedMetadataStore> {
    await mkdir(options.dir, { recursive: true });
    await takeLock(options.dir);
    try {
      const logPath = join(options.dir, LOG);
      const log = await open(logPath, 'a+');
      // The log may have just been created: make its directory entry durable too.
      await fsyncDir(options.dir);
      const store = new EmbeddedMetadataStore(options, log);
      await store.load(logPath);
      store.sessionTimer = setInterval(() => store.checkSessions(), options.sessionCheckIntervalMs ?? 100);
      return store;
    } catch (err) {
      await rm(join(options.dir, LOCK), { force: true });
      throw err;
    }
  }

  private async load(logPath: string): Promise<void> {
    const snap = await readFile(join(this.options.dir, SNAPSHOT)).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    if (snap) {
      const frame = readFrame(snap, 0);
      if (!frame) throw new StrataError(ErrorCode.INTERNAL, `corrupt metadata snapshot in ${this.options.dir}`, { retriable: false });
      const s = JSON.parse(frame.payload.toString()) as Snapshot;
      for (const [key, value, version, createRevision, modRevision, lease] of s.entries) {
        this.entries.set(key, { value: Buffer.from(value, 'base64'), version, createRevision, modRevision, ...(lease ? { lease } : {}) });
      }
      this.sortedKeys = [...this.entries.keys()].sort();
      this.revision = s.revision;
    }
    this.compactRevision = this.revision;
    const data = await readFile(logPath);
    let offset = 0;
    let replayed = 0;
    for (;;) {
      const frame = readFrame(data, offset);
      if (!frame) break;
      const record = JSON.parse(frame.payload.toString()) as LogRecord;
      offset = frame.next;
      if (record.r <= this.revision) continue; // already in the snapshot
      const events = this.applyRecord(record);
      this.addHistory(events);
      replayed++;
    }
    if (offset < data.length) {
      this.logger.warn({ validBytes: offset, fileBytes: data.length }, 'cutting a torn or corrupt tail off the metadata log');
      await this.log.truncate(offset);
      await this.log.datasync();
    }
    this.recordsSinceSnapshot = replayed;
    this.durableRevision = this.revision;
    this.logger.info({ revision: this.revision, keys: this.entries.size, replayed }, 'embedded metadata store opened');
    // Sessions do not survive their process: drop the keys bound to the previous run's sessions.
    const orphans = [...this.entries].filter(([, e]) => e.lease !== undefined).map(([k]) => k);
    if (orphans.length > 0) await this.commit(orphans.map((d) => ({ d })));
  }

  // ---- the write path -------------------------------------------------------------------------

  /** Applies a record to memory, returning the events it makes. Versions follow etcd's rules. */
  private applyRecord(record: LogRecord): WatchEvent[] {
    const events: WatchEvent[] = [];
    for (const op of record.ops) {
      if ('d' in op) {
        if (!this.entries.delete(op.d)) continue;
        this.removeSorted(op.d);
        events.push({ type: 'delete', key: op.d, modRevision: record.r });
      } else {
        const prev = this.entries.get(op.p);
        const value = Buffer.from(op.v, 'base64');
        const entry: Entry = {
          value,
          version: (prev?.version ?? 0) + 1,
          createRevision: prev?.createRevision ?? record.r,
          modRevision: record.r,
          ...(op.l ? { lease: op.l } : {}),
        };
        if (!prev) this.insertSorted(op.p);
        this.entries.set(op.p, entry);
        events.push({ type: 'put', key: op.p, value, version: entry.version, modRevision: record.r });
      }
    }
    this.revision = record.r;
    return events;
  }

  /**
   * Applies the ops as the next revision and resolves once the record is on disk. Ops that change
   * nothing (deleting a missing key) do not take a revision.
   */
  private commit(ops: LogRecord['ops']): Promise<number> {
    if (this.failed) return Promise.reject(new MetadataUnavailableError('embedded metadata store failed', this.failed));
    if (this.queue.length >= this.pendingMax) {
      return Promise.reject(new MetadataUnavailableError(`too many metadata writes waiting for disk (${this.pendingMax})`));
    }
    const effective = ops.filter((op) => !('d' in op) || this.entries.has(op.d));
    if (effective.length === 0) return Promise.resolve(this.revision);
    const record: LogRecord = { r: this.revision + 1, ops: effective };
    const events = this.applyRecord(record);
    const done = new Promise<void>((resolve, reject) => {
      this.queue.push({ frame: frame(Buffer.from(JSON.stringify(record))), revision: record.r, events, resolve, reject });
    });
    this.lastPending = done.catch(() => undefined);
    this.startFlush();
    return done.then(() => record.r);
  }

  /**
   * Starts the flush loop unless it runs. Code resumed by a flushed write can queue a new one after the
   * loop saw an empty queue but before `flushing` was cleared; the restart in `finally` catches it.
   */
  private startFlush(): void {
    this.flushing ??= this.flush().finally(() => {
      this.flushing = undefined;
      if (this.queue.length > 0 && !this.failed) this.startFlush();
    });
  }

  /** Group commit: everything queued goes out in one write and one fdatasync. */
  private async flush(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue;
      this.queue = [];
      try {
        await this.log.write(Buffer.concat(batch.map((p) => p.frame)));
        await this.log.datasync();
      } catch (err) {
        // Memory is now ahead of the disk: refuse everything from here on; a reopen recovers.
        this.failed = err instanceof Error ? err : new Error(String(err));
        this.logger.error({ err }, 'metadata log write failed; the store is unusable until reopened');
        for (const p of [...batch, ...this.queue]) p.reject(new MetadataUnavailableError('metadata log write failed', err));
        this.queue = [];
        return;
      }
      for (const p of batch) {
        this.durableRevision = p.revision;
        this.addHistory(p.events);
        for (const w of this.watchers) w.offer(p.events);
        p.resolve();
      }
      this.recordsSinceSnapshot += batch.length;
      if (this.recordsSinceSnapshot >= this.snapshotEvery && this.queue.length === 0) await this.snapshot();
    }
  }

  /** Writes the durable state as the new snapshot, then empties the log. Runs with nothing pending. */
  private async snapshot(): Promise<void> {
    const s: Snapshot = {
      revision: this.revision,
      entries: [...this.entries].map(([k, e]) => [k, e.value.toString('base64'), e.version, e.createRevision, e.modRevision, e.lease ?? null]),
    };
    const tmp = join(this.options.dir, `${SNAPSHOT}.tmp`);
    try {
      await writeFile(tmp, frame(Buffer.from(JSON.stringify(s))));
      const fh = await open(tmp, 'r+');
      await fh.datasync().finally(() => fh.close());
      await rename(tmp, join(this.options.dir, SNAPSHOT));
      await fsyncDir(this.options.dir);
      // A crash before this truncate leaves records the snapshot already has; load skips them.
      await this.log.truncate(0);
      await this.log.datasync();
      this.recordsSinceSnapshot = 0;
      this.logger.debug({ revision: s.revision }, 'metadata snapshot written');
    } catch (err) {
      this.logger.warn({ err }, 'metadata snapshot failed; the log keeps growing until the next try');
    }
  }

  private addHistory(events: WatchEvent[]): void {
    this.history.push(...events);
    if (this.history.length > this.historyMax * 1.25) {
      let cut = this.history.length - this.historyMax;
      // Never split a revision: drop whole revisions only.
      while (cut < this.history.length && this.history[cut]?.modRevision === this.history[cut - 1]?.modRevision) cut++;
      this.compactRevision = this.history[cut - 1]?.modRevision ?? this.compactRevision;
      this.history = this.history.slice(cut);
    }
  }

  /** Resolves once every change made before the call is durable, so reads never see an unsynced write. */
  private async barrier(): Promise<void> {
    this.check();
    if (this.durableRevision < this.revision) await this.lastPending;
    if (this.failed) throw new MetadataUnavailableError('embedded metadata store failed', this.failed);
  }

  private check(): void {
    if (this.closed) throw new MetadataUnavailableError('metadata store is closed');
    if (this.failed) throw new MetadataUnavailableError('embedded metadata store failed', this.failed);
  }

  private insertSorted(key: string): void {
    this.sortedKeys.splice(lowerBound(this.sortedKeys, key), 0, key);
  }

  private removeSorted(key: string): void {
    const i = lowerBound(this.sortedKeys, key);
    if (this.sortedKeys[i] === key) this.sortedKeys.splice(i, 1);
  }

  private toKeyValue(key: string, e: Entry): KeyValue {
    return {
      key, value: e.value, version: e.version, createRevision: e.createRevision, modRevision: e.modRevision,
      ...(e.lease ? { sessionId: e.lease } : {}),
    };
  }

  // ---- key-value ------------------------------------------------------------------------------

  async get(key: string, options?: CallOptions): Promise<KeyValue | undefined> {
    checkKey(key);
    options?.signal?.throwIfAborted();
    await this.barrier();
    const e = this.entries.get(key);
    return e ? this.toKeyValue(key, e) : undefined;
  }

  async put(key: string, value: Uint8Array | string, options: PutOptions = {}): Promise<PutResult> {
    checkKey(key);
    checkExpectedVersion(options.expectedVersion);
    options.signal?.throwIfAborted();
    this.check();
    const buf = toBuffer(value);
    if (buf.length > EMBEDDED_MAX_VALUE_BYTES) {
      throw new StrataError(ErrorCode.TOO_LARGE, `value of ${key} is ${buf.length} bytes, limit ${EMBEDDED_MAX_VALUE_BYTES}`, { retriable: false });
    }
    let lease: string | undefined;
    if (options.session) {
      const s = options.session;
      if (!(s instanceof EmbeddedSession) || s.store !== this) throw foreignSession(s);
      if (!s.isAlive()) throw new SessionLostError(s.id, 'session already lost or closed');
      lease = s.id;
    }
    const current = this.entries.get(key)?.version ?? 0;
    if (options.expectedVersion !== undefined && options.expectedVersion !== current) {
      throw new BadVersionError(key, options.expectedVersion, current);
    }
    const revision = await this.commit([{ p: key, v: buf.toString('base64'), ...(lease ? { l: lease } : {}) }]);
    return { version: current + 1, revision };
  }

  async delete(key: string, options: DeleteOptions = {}): Promise<boolean> {
    checkKey(key);
    checkExpectedVersion(options.expectedVersion);
    options.signal?.throwIfAborted();
    this.check();
    const current = this.entries.get(key)?.version ?? 0;
    if (options.expectedVersion !== undefined && options.expectedVersion !== current) {
      throw new BadVersionError(key, options.expectedVersion, current);
    }
    if (current === 0) {
      await this.barrier();
      return false;
    }
    await this.commit([{ d: key }]);
    return true;
  }

  async list(prefix: string, options?: ListOptions): Promise<ListPage> {
    const limit = pageLimit(options);
    options?.signal?.throwIfAborted();
    await this.barrier();
    const after = options?.startAfter;
    let i = lowerBound(this.sortedKeys, after !== undefined && after >= prefix ? after : prefix);
    if (after !== undefined && this.sortedKeys[i] === after) i++;
    const items: KeyValue[] = [];
    for (; i < this.sortedKeys.length && items.length < limit; i++) {
      const key = this.sortedKeys[i] as string;
      if (!key.startsWith(prefix)) break;
      items.push(this.toKeyValue(key, this.entries.get(key) as Entry));
    }
    const nextKey = this.sortedKeys[i];
    return { items, more: nextKey !== undefined && nextKey.startsWith(prefix), revision: this.revision };
  }

  async currentRevision(options?: CallOptions): Promise<number> {
    options?.signal?.throwIfAborted();
    await this.barrier();
    return this.revision;
  }

  // ---- watch ----------------------------------------------------------------------------------

  async watch(prefix: string, options: WatchOptions): Promise<Watcher> {
    this.check();
    const from = options.fromRevision ?? this.durableRevision + 1;
    if (!Number.isInteger(from) || from < 1) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, `fromRevision must be an integer >= 1, got ${from}`, { retriable: false });
    }
    const watcher = new EmbeddedWatcher(prefix, from, options, this.logger, () => this.watchers.delete(watcher));
    if (from <= this.compactRevision && from <= this.durableRevision) {
      // Like etcd: the watch is created, then fails with CompactedError through onError.
      const err = new CompactedError(from, this.compactRevision + 1);
      setImmediate(() => watcher.fail(err));
      return watcher;
    }
    // Synchronously replay history and join the live feed: nothing can slip in between.
    watcher.offer(this.history);
    this.watchers.add(watcher);
    return watcher;
  }

  // ---- sessions and election ------------------------------------------------------------------

  async createSession(options: SessionOptions): Promise<Session> {
    this.check();
    if (!Number.isInteger(options.ttlMs) || options.ttlMs < 1_000) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, `session ttlMs must be an integer >= 1000, got ${options.ttlMs}`, { retriable: false });
    }
    const id = `${this.bootId}-${this.nextSession++}`;
    const session = new EmbeddedSession(this, id, options.ttlMs, this.clock, (s, reason) => this.endSession(s, reason));
    this.sessions.set(id, session);
    return session;
  }

  async revokeSession(sessionId: string): Promise<boolean> {
    const session = this.sessions.get(sessionId);
    if (!session) return false;
    await session.revoke();
    return true;
  }

  /** The keep-alive and the expiry in one step: a gap longer than ttl between two checks is expiry. */
  private checkSessions(): void {
    for (const s of this.sessions.values()) s.renewOrExpire();
  }

  /** Aborts the holder first, then deletes its keys: the holder always knows before anyone else can. */
  private async endSession(session: EmbeddedSession, reason: string | undefined): Promise<void> {
    if (this.sessions.get(session.id) !== session) return;
    this.sessions.delete(session.id);
    if (reason) this.logger.warn({ sessionId: session.id, reason }, 'session lost');
    const keys = [...this.entries].filter(([, e]) => e.lease === session.id).map(([k]) => k);
    if (keys.length > 0 && !this.failed) await this.commit(keys.map((d) => ({ d })));
  }

  campaign(election: string, candidate: string, options: CampaignOptions): Promise<Leadership> {
    return campaign(this, election, candidate, options, this.logger);
  }

  async getLeader(election: string, options?: CallOptions): Promise<string | undefined> {
    return (await this.get(electionKey(election), options))?.value.toString();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    clearInterval(this.sessionTimer);
    for (const w of [...this.watchers]) await w.close();
    for (const s of [...this.sessions.values()]) await s.close().catch(() => undefined);
    this.closed = true;
    await this.flushing;
    await this.log.close();
    await rm(join(this.options.dir, LOCK), { force: true });
  }
}

class EmbeddedSession implements Session {
  private readonly controller = new AbortController();
  private renewedAt: number;

  constructor(
    readonly store: EmbeddedMetadataStore,
    readonly id: string,
    readonly ttlMs: number,
    private readonly clock: Clock,
    private readonly onEnd: (s: EmbeddedSession, lostReason: string | undefined) => Promise<void>,
  ) {
    this.renewedAt = clock.monotonic();
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  isAlive(): boolean {
    if (this.controller.signal.aborted) return false;
    if (this.clock.monotonic() - this.renewedAt >= this.ttlMs) {
      this.expire();
      return false;
    }
    return true;
  }

  renewOrExpire(): void {
    if (this.isAlive()) this.renewedAt = this.clock.monotonic();
  }

  private expire(): void {
    const reason = `not renewed for ${this.ttlMs} ms`;
    this.controller.abort(new SessionLostError(this.id, reason));
    void this.onEnd(this, reason).catch(() => undefined);
  }

  async close(): Promise<void> {
    if (this.controller.signal.aborted) return;
    this.controller.abort(new SessionLostError(this.id, 'session closed'));
    await this.onEnd(this, undefined);
  }

  /** Ended by someone else (revokeSession): lost for the holder. */
  async revoke(): Promise<void> {
    if (this.controller.signal.aborted) return;
    const reason = 'session revoked';
    this.controller.abort(new SessionLostError(this.id, reason));
    await this.onEnd(this, reason);
  }
}

class EmbeddedWatcher implements Watcher {
  private delivered: number;
  private closed = false;

  constructor(
    private readonly prefix: string,
    fromRevision: number,
    private readonly options: WatchOptions,
    private readonly logger: Logger,
    private readonly onClose: () => void,
  ) {
    this.delivered = fromRevision - 1;
  }

  get lastRevision(): number {
    return this.delivered;
  }

  offer(events: readonly WatchEvent[]): void {
    let last = this.delivered;
    for (const e of events) {
      if (this.closed) break;
      if (e.modRevision <= this.delivered || !e.key.startsWith(this.prefix)) continue;
      try {
        this.options.onEvent(e);
      } catch (err) {
        this.logger.error({ err, key: e.key, revision: e.modRevision }, 'watch onEvent threw');
      }
      last = e.modRevision;
    }
    this.delivered = last;
  }

  fail(err: Error): void {
    if (this.closed) return;
    void this.close();
    try {
      this.options.onError?.(err);
    } catch (e) {
      this.logger.error({ err: e }, 'watch onError threw');
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.onClose();
  }
}

function lowerBound(keys: string[], key: string): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((keys[mid] as string) < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** [u32 payload length][u32 CRC32C of payload][payload], little-endian. */
function frame(payload: Buffer): Buffer {
  const header = Buffer.alloc(FRAME_HEADER);
  header.writeUInt32LE(payload.length, 0);
  header.writeUInt32LE(crc32c(payload), 4);
  return Buffer.concat([header, payload]);
}

function readFrame(data: Buffer, offset: number): { payload: Buffer; next: number } | undefined {
  if (offset + FRAME_HEADER > data.length) return undefined;
  const length = data.readUInt32LE(offset);
  const crc = data.readUInt32LE(offset + 4);
  if (length > MAX_RECORD_BYTES || offset + FRAME_HEADER + length > data.length) return undefined;
  const payload = data.subarray(offset + FRAME_HEADER, offset + FRAME_HEADER + length);
  if (crc32c(payload) !== crc) return undefined;
  return { payload, next: offset + FRAME_HEADER + length };
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** One process per store directory: a LOCK file with our pid; a stale one (dead pid) is taken over. */
async function takeLock(dir: string): Promise<void> {
  const path = join(dir, LOCK);
  const existing = await readFile(path, 'utf8').catch(() => undefined);
  const pid = existing ? Number(existing.trim()) : NaN;
  if (Number.isInteger(pid) && pid > 0 && isRunning(pid)) {
    throw new StrataError(ErrorCode.CONFIG, `metadata store ${dir} is in use by process ${pid}`, { retriable: false });
  }
  await writeFile(path, `${process.pid}\n`);
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
