import {
  Etcd3, isRecoverableError, type IDuplexStream, type IKeyValue, type ILeaseKeepAliveRequest, type ILeaseKeepAliveResponse,
  type IOptions, type IRequestOp, type ITxnResponse, type IWatchRequest, type IWatchResponse,
} from 'etcd3';
import { backoffMs, ErrorCode, StrataError, systemClock, type Clock, type Logger } from '@strata/runtime';
import { BadVersionError, CompactedError, MetadataUnavailableError, SessionLostError } from '../errors.js';
import { checkExpectedVersion, checkKey, foreignSession, pageLimit, raceSignal, toBuffer } from './common.js';
import { campaign } from './election.js';
import type {
  CallOptions, CampaignOptions, DeleteOptions, KeyValue, Leadership, ListOptions, ListPage, MetadataStore, PutOptions,
  PutResult, Session, SessionOptions, WatchEvent, Watcher, WatchOptions,
} from './store.js';

export interface EtcdMetadataStoreOptions {
  /** `host:port` of each etcd member. */
  endpoints: string[];
  /** Keys live under `/strata/<cluster>/`. */
  cluster: string;
  logger: Logger;
  clock?: Clock;
  /** Deadline of every unary call (default 2000 ms). */
  callTimeoutMs?: number;
}

type Policy = NonNullable<NonNullable<IOptions['faultHandling']>['global']>;

/**
 * A policy that runs the call once. Failover is done here, not by etcd3's pool: we pick the member,
 * so a write is never silently re-sent after an ambiguous failure, and a dead member is left at once.
 */
const runOnce = {
  execute: (fn: (context: { signal: AbortSignal; attempt: number }) => unknown) =>
    Promise.resolve().then(() => fn({ signal: new AbortController().signal, attempt: 1 })),
} as unknown as Policy;

const TOO_LARGE = /too large|larger than max|too many operations/i;

/** Errors after which the request was certainly not applied, so even a write may be retried. */
const NOT_SENT = /ECONNREFUSED|No connection established|no leader|failed to connect|Connection refused|BrokenCircuit/i;
/**
 * grpc-js's DEADLINE_EXCEEDED of a call that never got a connection (the member's address did not
 * answer the connect): it was never written anywhere, so a write may be retried on the next member.
 * A call that was sent names the peer (`remote_addr=`) instead.
 */
const NEVER_PICKED = /Waiting for LB pick|waiting for name resolution|waiting for metadata filters/;

/** Whether a failed call certainly did not reach any member. */
export function certainlyNotSent(message: string): boolean {
  return NOT_SENT.test(message) || (NEVER_PICKED.test(message) && !/remote_addr=/.test(message));
}

/** gRPC keepalive pings on each member's connection (decision 0014). */
export const KEEPALIVE_TIME_MS = 10_000;
export const KEEPALIVE_TIMEOUT_MS = 3_000;

/** The smallest silence, in ms, the session rule keeps between our view and the server's lease expiry. */
export function sessionSafetyMarginMs(ttlMs: number): number {
  return Math.max(250, Math.floor(ttlMs / 4));
}

/**
 * The production MetadataStore (store.ts states the contract) over etcd v3 via the `etcd3` package.
 * One etcd3 client per member; calls go to the current member and move to the next on a transport
 * failure. Keys are stored under `/strata/<cluster>/`.
 */
export class EtcdMetadataStore implements MetadataStore {
  private readonly members: Etcd3[];
  private current = 0;
  private readonly root: string;
  private readonly rootBuf: Buffer;
  private readonly logger: Logger;
  private readonly clock: Clock;
  readonly callTimeoutMs: number;
  private readonly sessions = new Set<EtcdSession>();
  private readonly watchers = new Set<EtcdWatcher>();
  private closed = false;

  constructor(options: EtcdMetadataStoreOptions) {
    if (options.endpoints.length === 0) throw new StrataError(ErrorCode.CONFIG, 'etcd: no endpoints', { retriable: false });
    if (!/^[A-Za-z0-9._-]+$/.test(options.cluster)) {
      throw new StrataError(ErrorCode.CONFIG, `invalid cluster name "${options.cluster}"`, { retriable: false });
    }
    this.root = `/strata/${options.cluster}/`;
    this.rootBuf = Buffer.from(this.root);
    this.logger = options.logger.child({ component: 'etcd-metadata', cluster: options.cluster });
    this.clock = options.clock ?? systemClock;
    this.callTimeoutMs = options.callTimeoutMs ?? 2_000;
    const timeout = this.callTimeoutMs;
    this.members = options.endpoints.map(
      (host) =>
        new Etcd3({
          hosts: host,
          defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
          faultHandling: { global: runOnce, host: () => runOnce },
          grpcOptions: {
            'grpc.initial_reconnect_backoff_ms': 100,
            'grpc.max_reconnect_backoff_ms': 1_000,
            // A member that vanished without closing its connections (a killed container's address drops
            // packets) leaves a connection that looks open until TCP gives up, many minutes later: pings
            // while calls are active find it dead within keepalive time + timeout, and grpc reconnects.
            // etcd refuses pings more often than every 5 s (--grpc-keepalive-min-time) with a GOAWAY.
            'grpc.keepalive_time_ms': KEEPALIVE_TIME_MS,
            'grpc.keepalive_timeout_ms': KEEPALIVE_TIMEOUT_MS,
          },
        }),
    );
  }

  // ---- plumbing -------------------------------------------------------------------------------

  /** @internal Runs `fn` against the current member, failing over to the others on transport errors. */
  async call<T>(what: string, kind: 'read' | 'write', fn: (client: Etcd3) => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.closed) throw new MetadataUnavailableError('metadata store is closed');
    const attempts = Math.max(3, this.members.length * 2);
    // Each attempt has its own deadline (callTimeoutMs); the whole call gets two of them, so a caller cut
    // off from every member hears so in seconds, not after every member timed out twice.
    const giveUpAt = Date.now() + 2 * this.callTimeoutMs;
    let last: unknown;
    for (let attempt = 0; attempt < attempts && (attempt === 0 || Date.now() < giveUpAt); attempt++) {
      signal?.throwIfAborted();
      const index = this.current;
      const client = this.members[index] as Etcd3;
      try {
        return await raceSignal(fn(client), signal);
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        const message = err instanceof Error ? err.message : String(err);
        const transport = err instanceof Error && isRecoverableError(err) && !TOO_LARGE.test(message);
        if (!transport) throw this.mapError(err, what);
        last = err;
        if (this.current === index) this.current = (index + 1) % this.members.length;
        if (kind === 'write' && !certainlyNotSent(message)) break;
        if (attempt + 1 < attempts) await delay(backoffMs(attempt, { initialMs: 20, maxMs: 200 }));
      }
    }
    throw new MetadataUnavailableError(`etcd ${what} failed: ${last instanceof Error ? last.message : String(last)}`, last);
  }

  /** @internal A member client for a long-lived stream (watch, keep-alive), rotating after a failure. */
  streamClient(): { client: Etcd3; failed(): void } {
    const index = this.current;
    return {
      client: this.members[index] as Etcd3,
      failed: () => {
        if (this.current === index) this.current = (index + 1) % this.members.length;
      },
    };
  }

  /** @internal */
  mapError(err: unknown, what: string): Error {
    if (err instanceof StrataError) return err;
    const message = err instanceof Error ? err.message : String(err);
    if (/requested lease not found/i.test(message)) return new SessionLostError('?', `${what}: lease not found`);
    if (TOO_LARGE.test(message)) {
      return new StrataError(ErrorCode.TOO_LARGE, `etcd ${what}: ${message}`, { cause: err, retriable: false });
    }
    return new MetadataUnavailableError(`etcd ${what} failed: ${message}`, err);
  }

  /** @internal The absolute etcd key of a store key. */
  abs(key: string): Buffer {
    return Buffer.concat([this.rootBuf, Buffer.from(key)]);
  }

  /** @internal */
  rel(key: Buffer): string {
    return key.subarray(this.rootBuf.length).toString();
  }

  private toKeyValue(kv: IKeyValue): KeyValue {
    const lease = String(kv.lease);
    return {
      key: this.rel(kv.key),
      value: kv.value,
      version: Number(kv.version),
      createRevision: Number(kv.create_revision),
      modRevision: Number(kv.mod_revision),
      ...(lease !== '0' ? { sessionId: lease } : {}),
    };
  }

  // ---- key-value ------------------------------------------------------------------------------

  async get(key: string, options?: CallOptions): Promise<KeyValue | undefined> {
    checkKey(key);
    const res = await this.call('get', 'read', (c) => c.kv.range({ key: this.abs(key) }), options?.signal);
    const kv = res.kvs[0];
    return kv ? this.toKeyValue(kv) : undefined;
  }

  async put(key: string, value: Uint8Array | string, options: PutOptions = {}): Promise<PutResult> {
    checkKey(key);
    checkExpectedVersion(options.expectedVersion);
    let lease = '0';
    if (options.session) {
      const session = options.session;
      if (!(session instanceof EtcdSession) || session.store !== this) throw foreignSession(session);
      if (!session.isAlive()) throw new SessionLostError(session.id, 'session already lost or closed');
      lease = session.id;
    }
    const k = this.abs(key);
    const res = await this.txn('put', key, options.expectedVersion, [
      { request_put: { key: k, value: toBuffer(value), lease } },
      { request_range: { key: k } },
    ], options.signal).catch((err) => {
      if (err instanceof SessionLostError && options.session) throw new SessionLostError(options.session.id, 'lease not found on the server');
      throw err;
    });
    const kv = res.responses[1]?.response_range.kvs[0];
    if (!kv) throw new MetadataUnavailableError(`etcd put ${key}: no read-back`);
    return { version: Number(kv.version), revision: Number(res.header.revision) };
  }

  async delete(key: string, options: DeleteOptions = {}): Promise<boolean> {
    checkKey(key);
    checkExpectedVersion(options.expectedVersion);
    const res = await this.txn('delete', key, options.expectedVersion, [{ request_delete_range: { key: this.abs(key) } }], options.signal);
    return Number(res.responses[0]?.response_delete_range.deleted ?? 0) > 0;
  }

  /** A transaction guarded by the key's version (when expected is set); throws BadVersionError if it fails. */
  private async txn(what: string, key: string, expected: number | undefined, success: IRequestOp[], signal?: AbortSignal): Promise<ITxnResponse> {
    const k = this.abs(key);
    const compare = expected === undefined ? [] : [{ key: k, target: 'Version' as const, result: 'Equal' as const, version: expected }];
    const res = await this.call(what, 'write', (c) => c.kv.txn({ compare, success, failure: [{ request_range: { key: k } }] }), signal);
    if (!res.succeeded) {
      const actual = res.responses[0]?.response_range.kvs[0];
      throw new BadVersionError(key, expected ?? -1, actual ? Number(actual.version) : 0);
    }
    return res;
  }

  async list(prefix: string, options?: ListOptions): Promise<ListPage> {
    const limit = pageLimit(options);
    const start = options?.startAfter !== undefined && options.startAfter >= prefix
      ? Buffer.concat([this.abs(options.startAfter), Buffer.from([0])])
      : this.abs(prefix);
    const res = await this.call('list', 'read', (c) => c.kv.range({ key: start, range_end: prefixEnd(this.abs(prefix)), limit }), options?.signal);
    return { items: res.kvs.map((kv) => this.toKeyValue(kv)), more: res.more, revision: Number(res.header.revision) };
  }

  async currentRevision(options?: CallOptions): Promise<number> {
    const res = await this.call('currentRevision', 'read', (c) => c.kv.range({ key: this.rootBuf, count_only: true }), options?.signal);
    return Number(res.header.revision);
  }

  // ---- watch ----------------------------------------------------------------------------------

  async watch(prefix: string, options: WatchOptions): Promise<Watcher> {
    const from = options.fromRevision ?? (await this.currentRevision()) + 1;
    if (!Number.isInteger(from) || from < 1) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, `fromRevision must be an integer >= 1, got ${from}`, { retriable: false });
    }
    const watcher = new EtcdWatcher(this, prefix, from, options, this.logger);
    this.watchers.add(watcher);
    watcher.onClosed = () => this.watchers.delete(watcher);
    try {
      await watcher.start();
    } catch (err) {
      await watcher.close();
      throw err;
    }
    return watcher;
  }

  // ---- sessions and election ------------------------------------------------------------------

  async createSession(options: SessionOptions): Promise<Session> {
    if (!Number.isInteger(options.ttlMs) || options.ttlMs < 1_000) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, `session ttlMs must be an integer >= 1000, got ${options.ttlMs}`, { retriable: false });
    }
    // The lease is granted after this instant, so its expiry on the server is at least sentAt + ttl.
    const sentAt = this.clock.monotonic();
    const ttlSeconds = Math.ceil(options.ttlMs / 1000);
    const res = await this.call('leaseGrant', 'read', (c) => c.leaseClient.leaseGrant({ TTL: ttlSeconds }));
    const session = new EtcdSession(this, String(res.ID), options.ttlMs, sentAt, this.clock, this.logger);
    this.sessions.add(session);
    session.onEnded = () => this.sessions.delete(session);
    session.start();
    return session;
  }

  async revokeSession(sessionId: string): Promise<boolean> {
    if (!/^[0-9]+$/.test(sessionId)) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `not an etcd lease id: ${sessionId}`, { retriable: false });
    try {
      await this.call('leaseRevoke', 'write', (c) => c.leaseClient.leaseRevoke({ ID: sessionId }));
      return true;
    } catch (err) {
      if (err instanceof SessionLostError) return false; // lease not found: already gone
      throw err;
    }
  }

  campaign(election: string, candidate: string, options: CampaignOptions): Promise<Leadership> {
    return campaign(this, election, candidate, options, this.logger);
  }

  async getLeader(election: string, options?: CallOptions): Promise<string | undefined> {
    return (await this.get(`elections/${election}`, options))?.value.toString();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await Promise.allSettled([...this.watchers].map((w) => w.close()));
    await Promise.allSettled([...this.sessions].map((s) => s.close()));
    this.closed = true;
    for (const m of this.members) m.close();
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The smallest key greater than every key starting with `prefix` (etcd's range_end for a prefix). */
export function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if ((end[i] as number) < 0xff) {
      end[i] = (end[i] as number) + 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

/**
 * A session: an etcd lease and our own keep-alive loop. The rule that makes it safe (decision 0011):
 * the session counts as lost once no keep-alive has succeeded for ttl - margin, measured from when
 * the last successful keep-alive was SENT. The server renewed the lease no earlier than that send, so
 * it cannot expire it (and let another process take our keys) before we have given up.
 */
class EtcdSession implements Session {
  private readonly controller = new AbortController();
  private lastAckedSendAt: number;
  private readonly marginMs: number;
  private readonly intervalMs: number;
  private timer: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private stream: IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse> | undefined;
  /** Marks the member `stream` runs on as failed (the next keep-alive goes to another member). */
  private streamFailed: () => void = () => {};
  /** How long one keep-alive waits for its reply before the next member is tried (decision 0014). */
  private readonly attemptTimeoutMs: number;
  private stopped = false;
  onEnded: () => void = () => {};
  private readonly logger: Logger;

  constructor(
    readonly store: EtcdMetadataStore,
    readonly id: string,
    readonly ttlMs: number,
    sentAt: number,
    private readonly clock: Clock,
    logger: Logger,
  ) {
    this.lastAckedSendAt = sentAt;
    this.marginMs = sessionSafetyMarginMs(ttlMs);
    this.intervalMs = Math.max(100, Math.floor((ttlMs - this.marginMs) / 3));
    // One interval, not the whole call timeout: a member that does not answer (dead without closing its
    // connection, or stopped) must leave time for another try on the next member before the session is
    // given up, ttl - margin = 3 intervals after the last acknowledged keep-alive.
    this.attemptTimeoutMs = Math.min(store.callTimeoutMs, Math.max(200, this.intervalMs));
    this.logger = logger.child({ sessionId: id });
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  private get lossAt(): number {
    return this.lastAckedSendAt + this.ttlMs - this.marginMs;
  }

  isAlive(): boolean {
    if (this.controller.signal.aborted) return false;
    // Exact even when timers run late (a blocked event loop): decide from the clock, not the timer.
    if (this.clock.monotonic() >= this.lossAt) {
      this.lose('no keep-alive succeeded within ttl - margin');
      return false;
    }
    return true;
  }

  start(): void {
    this.armWatchdog();
    this.timer = setTimeout(() => void this.keepAlive(), this.intervalMs);
  }

  private armWatchdog(): void {
    clearTimeout(this.watchdog);
    const wait = Math.max(0, this.lossAt - this.clock.monotonic());
    this.watchdog = setTimeout(() => void this.isAlive(), wait + 1);
  }

  private async keepAlive(): Promise<void> {
    if (this.stopped || !this.isAlive()) return;
    const sentAt = this.clock.monotonic();
    const remaining = this.lossAt - sentAt;
    let ok = false;
    try {
      const ttl = await this.sendKeepAlive(Math.min(this.attemptTimeoutMs, Math.max(50, remaining)));
      if (this.stopped) return;
      if (ttl <= 0) {
        this.lose('the server no longer has the lease');
        return;
      }
      if (this.isAlive()) {
        this.lastAckedSendAt = Math.max(this.lastAckedSendAt, sentAt);
        this.armWatchdog();
        ok = true;
      }
    } catch (err) {
      if (this.stopped) return;
      this.logger.warn({ err }, 'session keep-alive failed');
    }
    if (this.stopped || !this.isAlive()) return;
    // After a failure, try the next member at once rather than a whole interval later (a short pause
    // only so that members refusing at once do not make a busy loop).
    const next = ok ? Math.max(0, sentAt + this.intervalMs - this.clock.monotonic()) : Math.min(this.intervalMs, 20);
    this.timer = setTimeout(() => void this.keepAlive(), next);
  }

  /** One keep-alive round trip on the current member, bounded by timeoutMs. Resolves the granted TTL. */
  private async sendKeepAlive(timeoutMs: number): Promise<number> {
    const { client, failed } = this.store.streamClient();
    // The member this attempt depends on: the stream's, which may not be the current one any more.
    let memberFailed = failed;
    try {
      if (!this.stream) {
        const stream = await client.leaseClient.leaseKeepAlive();
        // A stream that breaks between keep-alives (its member died) sends the next one elsewhere at
        // once; our own drop (dropStream) has already cleared this.stream, so it does not count.
        const broken = () => {
          if (this.stream !== stream) return;
          this.stream = undefined;
          failed();
        };
        stream.on('error', broken);
        stream.on('end', broken);
        this.stream = stream;
        this.streamFailed = failed;
      }
      const stream = this.stream;
      memberFailed = this.streamFailed;
      return await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => done(new MetadataUnavailableError(`keep-alive got no reply in ${timeoutMs} ms`)), timeoutMs);
        const onData = (res: ILeaseKeepAliveResponse) => done(undefined, Number(res.TTL));
        const onError = (err: Error) => done(err);
        const onEnd = () => done(new MetadataUnavailableError('keep-alive stream ended'));
        const done = (err?: Error, ttl?: number) => {
          clearTimeout(timer);
          const emitter = stream as unknown as NodeJS.EventEmitter;
          emitter.removeListener('data', onData).removeListener('error', onError).removeListener('end', onEnd);
          if (err) reject(err);
          else resolve(ttl as number);
        };
        stream.on('data', onData);
        stream.on('error', onError);
        stream.on('end', onEnd);
        stream.write({ ID: this.id });
      });
    } catch (err) {
      memberFailed();
      this.dropStream();
      throw err;
    }
  }

  private dropStream(): void {
    const stream = this.stream;
    this.stream = undefined;
    if (stream) {
      // end() first: etcd3 then does not count our own cancel as a member failure.
      stream.end();
      stream.cancel();
    }
  }

  private stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.watchdog);
    this.dropStream();
    this.onEnded();
  }

  private lose(reason: string): void {
    if (this.controller.signal.aborted) return;
    this.logger.warn({ reason }, 'session lost');
    this.controller.abort(new SessionLostError(this.id, reason));
    this.stop();
    // Best effort: if the server is reachable, release our keys now rather than at lease expiry.
    void this.store
      .call('leaseRevoke', 'write', (c) => c.leaseClient.leaseRevoke({ ID: this.id }))
      .catch(() => undefined);
  }

  async close(): Promise<void> {
    if (this.stopped) return;
    this.controller.abort(new SessionLostError(this.id, 'session closed'));
    this.stop();
    await this.store.call('leaseRevoke', 'write', (c) => c.leaseClient.leaseRevoke({ ID: this.id })).catch((err) => {
      if (!/lease not found/i.test(String(err))) throw err;
    });
  }
}

/**
 * A watch that resumes from the last delivered revision after any stream failure: each (re)start
 * asks for `lastRevision + 1`, and events at or below lastRevision are dropped, so nothing is missed
 * or repeated. A stream that stays silent is detected by progress requests.
 */
class EtcdWatcher implements Watcher {
  private delivered: number;
  private stream: IDuplexStream<IWatchRequest, IWatchResponse> | undefined;
  private closed = false;
  private attempt = 0;
  private lastHeardAt = 0;
  private progressTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  onClosed: () => void = () => {};
  private readonly logger: Logger;
  /** A stream silent for this long (no reply to progress requests) is considered dead. */
  private readonly silenceMs = 5_000;

  constructor(
    private readonly store: EtcdMetadataStore,
    private readonly prefix: string,
    fromRevision: number,
    private readonly options: WatchOptions,
    logger: Logger,
  ) {
    this.delivered = fromRevision - 1;
    this.logger = logger.child({ watch: prefix });
  }

  get lastRevision(): number {
    return this.delivered;
  }

  /** Opens the first stream; rejects if it cannot be established within the call timeout (x2). */
  async start(): Promise<void> {
    const deadline = Date.now() + this.store.callTimeoutMs * 2;
    let last: unknown;
    while (Date.now() < deadline && !this.closed) {
      try {
        await this.open(deadline - Date.now());
        this.progressTimer = setInterval(() => this.checkProgress(), 1_000);
        return;
      } catch (err) {
        if (err instanceof CompactedError) {
          // Same as a compaction noticed later: the watch exists and ends through onError.
          setImmediate(() => this.fatal(err));
          return;
        }
        last = err;
        await delay(50);
      }
    }
    throw new MetadataUnavailableError(`cannot open watch on ${this.prefix}`, last);
  }

  /** Opens a stream and resolves when etcd confirms the watch was created. */
  private async open(timeoutMs: number): Promise<void> {
    const { client, failed } = this.store.streamClient();
    let stream: IDuplexStream<IWatchRequest, IWatchResponse>;
    try {
      stream = await client.watchClient.watch();
    } catch (err) {
      failed();
      throw err;
    }
    const startFrom = this.delivered + 1;
    this.lastHeardAt = Date.now();
    await new Promise<void>((resolve, reject) => {
      let created = false;
      let finished = false;
      const timer = setTimeout(() => fail(new MetadataUnavailableError('watch create timed out')), Math.max(100, timeoutMs));
      const fail = (err: Error) => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        if (this.stream === stream) this.stream = undefined;
        end(stream);
        if (!created) {
          if (!(err instanceof CompactedError)) failed();
          reject(err);
          return;
        }
        if (err instanceof CompactedError) return this.fatal(err);
        failed();
        this.reconnect(err);
      };
      stream.on('data', (res: IWatchResponse) => {
        if (finished) return;
        this.lastHeardAt = Date.now();
        if (res.canceled) {
          const compact = Number(res.compact_revision);
          return fail(compact > 0 ? new CompactedError(startFrom, compact) : new MetadataUnavailableError(`watch canceled: ${res.cancel_reason}`));
        }
        if (res.created && !created) {
          created = true;
          clearTimeout(timer);
          this.stream = stream;
          this.attempt = 0;
          resolve();
        }
        this.deliver(res);
      });
      stream.on('error', (err: Error) => fail(err));
      stream.on('end', () => fail(new MetadataUnavailableError('watch stream ended')));
      const key = this.store.abs(this.prefix);
      stream.write({ create_request: { key, range_end: prefixEnd(key), start_revision: startFrom } });
    });
  }

  private deliver(res: IWatchResponse): void {
    for (const e of res.events ?? []) {
      const rev = Number(e.kv.mod_revision);
      // Already delivered before a reconnect: skip (etcd never splits a revision across responses
      // unless fragmenting, which we do not ask for).
      if (this.closed || rev <= this.delivered) continue;
      const key = this.store.rel(e.kv.key);
      const event: WatchEvent =
        e.type === 'Delete'
          ? { type: 'delete', key, modRevision: rev }
          : { type: 'put', key, value: e.kv.value, version: Number(e.kv.version), modRevision: rev };
      try {
        this.options.onEvent(event);
      } catch (err) {
        this.logger.error({ err, key, revision: rev }, 'watch onEvent threw');
      }
    }
    const last = res.events?.[res.events.length - 1];
    if (last) this.delivered = Math.max(this.delivered, Number(last.kv.mod_revision));
  }

  private checkProgress(): void {
    const stream = this.stream;
    if (!stream || this.closed) return;
    if (Date.now() - this.lastHeardAt > this.silenceMs) {
      this.stream = undefined;
      end(stream);
      this.store.streamClient().failed();
      this.reconnect(new MetadataUnavailableError('watch stream silent'));
      return;
    }
    stream.write({ progress_request: {} });
  }

  private reconnect(cause: Error): void {
    if (this.closed || this.retryTimer) return;
    const wait = backoffMs(this.attempt++, { initialMs: 50, maxMs: 1_000 });
    this.logger.info({ err: cause, resumeFrom: this.delivered + 1, waitMs: wait }, 'watch stream lost; resuming');
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.closed) return;
      this.open(this.store.callTimeoutMs * 2).catch((err) => {
        if (err instanceof CompactedError) this.fatal(err);
        else this.reconnect(err);
      });
    }, wait);
  }

  private fatal(err: Error): void {
    if (this.closed) return;
    this.logger.warn({ err }, 'watch failed');
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
    clearInterval(this.progressTimer);
    clearTimeout(this.retryTimer);
    if (this.stream) end(this.stream);
    this.stream = undefined;
    this.onClosed();
  }
}

function end(stream: IDuplexStream<unknown, unknown>): void {
  try {
    stream.end();
    stream.cancel();
  } catch {
    // already gone
  }
}
