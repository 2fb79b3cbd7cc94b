import { randomBytes } from 'node:crypto';
import { cpuUsage, memoryUsage } from 'node:process';
import { totalmem } from 'node:os';
import {
  ASSIGNMENTS_PREFIX, assignmentKey, BROKERS_PREFIX, brokerKey, bundleForHash, chooseBroker, namespaceBundles, namespaceOfPolicyKey,
  OWNERSHIP_PREFIX, ownershipKey, parseBundleId, parseJson, POLICIES_PREFIX, PrefixCache,
  type AssignmentRecord, type BrokerRegistration, type BrokerView, type BundlePolicy, type BundleSpec, type CachedEntry,
  type LoadReport, type MetadataStore, type OwnershipRecord, type Session,
} from '@strata/coordinator';
import { backoffMs, ErrorCode, sleep, StrataError, systemClock, type Clock, type Logger, Random } from '@strata/runtime';
import type { BundleOwner, OwnershipView } from './bundles.js';
import { bundleLoads, type TopicLoad } from './bundle-load.js';
import { ServiceNotReadyError } from '../errors.js';
import { topicHash, type TopicName } from '../names.js';

export interface OwnershipManagerOptions {
  store: MetadataStore;
  /** This broker: id and the host:port clients use. */
  self: BundleOwner;
  httpUrl?: string;
  /** The broker's metadata session TTL; ownership vanishes this long after the broker dies. */
  sessionTtlMs: number;
  /** How often `brokers/<id>` is refreshed with a load report (default 5000). */
  loadReportIntervalMs?: number;
  /** How long `ownerOf` waits for a bundle assigned to this broker to be acquired (default 2000). */
  acquireWaitMs?: number;
  /** Longest `onUnload` may take before the bundle is released anyway (default 10000). */
  unloadTimeoutMs?: number;
  /** Bundles of a namespace whose policies do not say (the broker's defaultBundles). */
  defaultBundles?: number;
  /**
   * Message rates for the load report (the service knows them); with `topics`, the report also lists
   * the load of each owned bundle (summed over its loaded topics) for the leader's hot-bundle split.
   */
  rates?(): { msgRateIn: number; msgRateOut: number; topics?: readonly TopicLoad[] };
  /**
   * Graceful unload of one bundle (coordinator move, admin unload, drain): stop accepting, finish
   * in-flight writes, close the bundle's topics telling clients `target` (when known). Ownership is
   * released after it resolves (or after unloadTimeoutMs).
   */
  onUnload?(bundle: BundleSpec, target: BundleOwner | undefined): Promise<void>;
  /**
   * After start: the session was lost (`alive` false; no bundle is owned until a new one registers) or
   * a new one registered (`alive` true). The broker's readiness follows it.
   */
  onSessionChange?(alive: boolean): void;
  clock?: Clock;
  random?: Random;
  logger: Logger;
}

/** Why a bundle signal aborted. `lost`: stop at once; `released`: a graceful unload (target = where it went). */
export class BundleEndedError extends StrataError {
  constructor(readonly bundle: string, readonly kind: 'lost' | 'released', readonly target?: BundleOwner, cause?: unknown) {
    super(kind === 'lost' ? ErrorCode.NOT_OWNER : ErrorCode.SERVICE_NOT_READY, `bundle ${bundle} ${kind === 'lost' ? 'lost' : 'unloaded'}`, { cause });
    this.name = 'BundleEndedError';
  }
}

interface Owned {
  spec: BundleSpec;
  /** The ownership key's version and revision as we wrote it. */
  version: number;
  modRevision: number;
  controller: AbortController;
  /** Set once a graceful unload started: no new topic may load; where the bundle goes. */
  unloading?: { target: BundleOwner | undefined };
}

type Cache<T> = PrefixCache<T>;

/**
 * Bundle ownership for one broker (decision 0060): registers `brokers/<id>` on its own session with a
 * periodic load report; acquires bundles the coordinator assigns to it with a create-if-absent put of
 * `ownership/<bundle>` bound to that session; answers `ownerOf` from watched caches; unloads bundles the
 * coordinator assigns elsewhere.
 *
 * Invariants:
 * - `isMine` / `isOwned` / an unaborted `bundleSignal` mean: acquired by this session, which is alive
 *   right now (checked against the clock, not only the timer), and nobody else changed or deleted the key.
 * - When the session is lost, every bundle signal aborts (reason BundleEndedError 'lost') in the same
 *   tick the session signal aborts — before the server can expire the lease (decision 0011), so before
 *   anyone else can acquire. Then a new session is made and registration resumes.
 * - A key deleted or changed by anyone else aborts that bundle's signal at once.
 */
export class OwnershipManager implements OwnershipView {
  private readonly store: MetadataStore;
  private readonly clock: Clock;
  private readonly random: Random;
  private logger: Logger;
  private readonly owned = new Map<string, Owned>();
  private readonly lostListeners = new Set<(bundle: BundleSpec, reason: BundleEndedError) => void>();
  private readonly changeWaiters = new Set<() => void>();
  private readonly stopController = new AbortController();
  private session: Session | undefined;
  private sessionLoop: Promise<void> | undefined;
  private reconciling: Promise<void> | undefined;
  private reconcileAgain = false;
  private reconcileScheduled = false;
  private readonly acquiring = new Set<string>();
  private readonly startedAtMs: number;
  /** Tells this process from an earlier one with the same broker id (published in the registration). */
  private readonly instanceId = randomBytes(8).toString('hex');
  private reportSeq = 0;
  private lastCpu = cpuUsage();
  private lastCpuAt: number;
  private cpuPercentValue = 0;
  private reportTimer: NodeJS.Timeout | undefined;
  private draining = false;
  private started = false;
  private selfValue: BundleOwner;
  private stopping: Promise<void> | undefined;
  private readonly caches: {
    brokers: Cache<BrokerRegistration>; owners: Cache<OwnershipRecord>; assignments: Cache<AssignmentRecord>; policies: Cache<BundlePolicy>;
  };

  constructor(private readonly options: OwnershipManagerOptions) {
    this.store = options.store;
    this.selfValue = { ...options.self };
    this.httpUrl = options.httpUrl;
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? new Random(Math.floor(Math.random() * 2 ** 32));
    this.logger = options.logger.child({ component: 'ownership' });
    this.startedAtMs = this.clock.now();
    this.lastCpuAt = this.clock.monotonic();
    const logger = this.logger;
    const store = this.store;
    this.caches = {
      brokers: new PrefixCache({ store, prefix: BROKERS_PREFIX, logger, decode: (v) => parseJson<BrokerRegistration>(v) }),
      owners: new PrefixCache({ store, prefix: OWNERSHIP_PREFIX, logger, decode: (v) => parseJson<OwnershipRecord>(v), onChange: (k, e) => this.ownershipChanged(k, e) }),
      assignments: new PrefixCache({ store, prefix: ASSIGNMENTS_PREFIX, logger, decode: (v) => parseJson<AssignmentRecord>(v), onChange: () => this.reconcile() }),
      policies: new PrefixCache({ store, prefix: POLICIES_PREFIX, logger, decode: (v) => parseJson<BundlePolicy>(v), onChange: () => this.reconcile() }),
    };
  }

  get self(): BundleOwner {
    return this.selfValue;
  }

  /** host:port of the broker's HTTP endpoint, published in its registration (settable any time). */
  httpUrl: string | undefined;

  /** Settable until start() (the composition root learns its bound address after the server starts). */
  set self(value: BundleOwner) {
    if (this.started) throw new StrataError(ErrorCode.INTERNAL, 'broker identity cannot change after start', { retriable: false });
    this.selfValue = value;
  }

  /** Starts the session, registers, fills the caches and begins acquiring what is assigned here. */
  async start(): Promise<void> {
    if (!this.selfValue.brokerId || !this.selfValue.url) throw new StrataError(ErrorCode.CONFIG, 'broker id and url must be set before start', { retriable: false });
    this.started = true;
    this.logger = this.options.logger.child({ component: 'ownership', brokerId: this.selfValue.brokerId });
    try {
      await this.newSession();
      await Promise.all(Object.values(this.caches).map((c) => c.start()));
    } catch (err) {
      await this.stop({ drain: false });
      throw err;
    }
    this.reportTimer = setInterval(() => void this.register(), this.options.loadReportIntervalMs ?? 5_000);
    this.reportTimer.unref();
    this.reconcile();
  }

  /**
   * Graceful stop (SIGTERM): marks the registration draining, hands every owned bundle to another live
   * broker (assignment + unload with that target), then closes the session. With `drain: false` the
   * session is closed at once (keys vanish; the coordinator reassigns).
   */
  stop(options: { drain?: boolean } = {}): Promise<void> {
    this.stopping ??= this.doStop(options.drain !== false);
    return this.stopping;
  }

  private async doStop(drain: boolean): Promise<void> {
    this.draining = true;
    if (drain && this.session?.isAlive()) {
      await this.register().catch(() => undefined);
      await Promise.all([...this.owned.values()].map(async (o) => {
        const target = this.pickTarget(new Set([this.self.brokerId]));
        if (target) await this.writeAssignment(o.spec.id, target, 'drain').catch((err) => this.logger.warn({ err, bundle: o.spec.id }, 'drain assignment failed'));
        await this.unload(o.spec.id, target);
      }));
    }
    this.stopController.abort(new Error('ownership manager stopping'));
    if (this.reportTimer) clearInterval(this.reportTimer);
    for (const o of [...this.owned.values()]) this.end(o, new BundleEndedError(o.spec.id, 'released'));
    await this.session?.close().catch((err) => this.logger.warn({ err }, 'session close failed'));
    await this.sessionLoop;
    await this.reconciling;
    await Promise.all(Object.values(this.caches).map((c) => c.close()));
  }

  async ownerOf(topic: TopicName, options: { signal?: AbortSignal } = {}): Promise<(BundleOwner & { isMine: boolean }) | undefined> {
    this.assertSession();
    const spec = await this.bundleOfTopic(topic);
    if (!spec) return undefined;
    const deadline = this.clock.monotonic() + (this.options.acquireWaitMs ?? 2_000);
    for (;;) {
      this.assertSession();
      const answer = this.answer(spec);
      if (answer) return answer;
      // Unowned: an acquisition (by us or by the broker it is or is about to be assigned to) is usually a
      // moment away; answer then rather than bounce the client into a retry loop.
      const left = deadline - this.clock.monotonic();
      if (left <= 0 || this.draining || options.signal?.aborted) return undefined;
      await this.waitForChange(Math.min(left, 100), options.signal);
    }
  }

  checkSession(): boolean {
    if (!this.started || this.stopController.signal.aborted) return true;
    return this.session?.isAlive() ?? false;
  }

  /**
   * Without a live session this broker's view of ownership is stale and its metadata calls may hang (cut
   * off from etcd): it answers no lookup, so the client asks another broker at once.
   */
  private assertSession(): void {
    if (this.started && !this.stopController.signal.aborted && !this.session?.isAlive()) {
      throw new ServiceNotReadyError(`broker ${this.self.brokerId} has no live metadata session; ask another broker`);
    }
  }

  /** The bundle a topic belongs to (by the namespace's current bundle policy), or undefined if the namespace does not exist. */
  async bundleOfTopic(topic: TopicName): Promise<BundleSpec | undefined> {
    const key = `${POLICIES_PREFIX}${topic.namespaceName}`;
    let policy = this.caches.policies.get(key)?.value;
    if (!policy) {
      // A namespace created a moment ago may not have reached the cache yet.
      const kv = await this.store.get(key);
      policy = kv ? parseJson<BundlePolicy>(kv.value) : undefined;
      if (!policy) return undefined;
    }
    return bundleForHash(namespaceBundles(topic.namespaceName, policy, this.options.defaultBundles ?? 4), topicHash(topic));
  }

  /**
   * The signal a loaded topic is tied to: aborts when this broker stops owning the topic's bundle
   * (reason BundleEndedError: `lost` = close at once; `released` = graceful, `target` is the new owner).
   * Undefined when the bundle is not owned here now (do not load the topic).
   */
  async topicSignal(topic: TopicName): Promise<AbortSignal | undefined> {
    const spec = await this.bundleOfTopic(topic);
    return spec && this.isOwned(spec.id) ? this.bundleSignal(spec.id) : undefined;
  }

  /** Synchronous, exact check before acting as owner (e.g. before persisting): owned, alive, not unloading. */
  isOwned(bundleId: string): boolean {
    const o = this.owned.get(bundleId);
    return o !== undefined && !o.unloading && !o.controller.signal.aborted && this.session?.isAlive() === true;
  }

  /** Aborts when this broker stops owning the bundle (reason BundleEndedError); undefined if not owned now. */
  bundleSignal(bundleId: string): AbortSignal | undefined {
    const o = this.owned.get(bundleId);
    return o && !o.controller.signal.aborted ? o.controller.signal : undefined;
  }

  /** Process CPU in percent of one core over the last load-report interval (0 until a second has passed). */
  get cpuPercent(): number {
    return this.cpuPercentValue;
  }

  /** Bundles owned now. */
  ownedBundles(): BundleSpec[] {
    return [...this.owned.values()].filter((o) => !o.controller.signal.aborted).map((o) => o.spec);
  }

  /** Every owner known (from the cache): bundle id -> owner. */
  owners(): Map<string, BundleOwner> {
    const out = new Map<string, BundleOwner>();
    for (const e of this.caches.owners.values()) out.set(e.key.slice(OWNERSHIP_PREFIX.length), { brokerId: e.value.brokerId, url: e.value.url });
    return out;
  }

  /** Called when a bundle is lost (not on graceful release). Returns an unsubscribe function. */
  onBundleLost(listener: (bundle: BundleSpec, reason: BundleEndedError) => void): () => void {
    this.lostListeners.add(listener);
    return () => this.lostListeners.delete(listener);
  }

  /**
   * Moves an owned bundle to `targetBrokerId` (or the least loaded other live broker): writes the
   * assignment, then unloads (onUnload with the target, release). Returns the target, undefined if none.
   */
  async requestUnload(bundleId: string, targetBrokerId?: string): Promise<BundleOwner | undefined> {
    // Works on any broker: the owner (this one or another) obeys the assignment.
    const owner = this.owned.has(bundleId) ? this.self.brokerId : this.caches.owners.get(ownershipKey(bundleId))?.value.brokerId;
    const target = targetBrokerId ? this.liveBroker(targetBrokerId) : this.pickTarget(new Set(owner ? [owner] : []));
    if (targetBrokerId && !target) throw new StrataError(ErrorCode.NOT_FOUND, `broker ${targetBrokerId} is not live`, { retriable: false });
    if (target) await this.writeAssignment(bundleId, target, 'unload');
    if (this.owned.has(bundleId)) await this.unload(bundleId, target);
    return target;
  }

  /**
   * Takes an unowned bundle directly (create-if-absent bound to this broker's session), without waiting
   * for an assignment. True when this broker owns it afterwards. Exactly one of any number of
   * concurrent callers (in any process) wins.
   */
  async acquire(bundleId: string): Promise<boolean> {
    if (this.owned.has(bundleId)) return this.isOwned(bundleId);
    const spec = this.allBundles().get(bundleId) ?? parseBundleId(bundleId);
    if (!spec) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `not a bundle id: ${bundleId}`, { retriable: false });
    await this.acquireSpec(spec);
    return this.isOwned(bundleId);
  }

  /**
   * Releases a bundle now (onUnload, then delete the key with its version). Note: a bundle still
   * assigned to this broker is acquired again by the next reconcile; use requestUnload to move one.
   */
  async release(bundleId: string): Promise<void> {
    await this.unload(bundleId, undefined);
  }

  // ---- internals ----

  private answer(spec: BundleSpec): (BundleOwner & { isMine: boolean }) | undefined {
    const mine = this.owned.get(spec.id);
    if (mine && !mine.controller.signal.aborted) {
      if (mine.unloading) return mine.unloading.target ? { ...mine.unloading.target, isMine: false } : undefined;
      if (this.session?.isAlive()) return { ...this.self, isMine: true };
      return undefined;
    }
    const e = this.caches.owners.get(ownershipKey(spec.id));
    if (!e) return undefined;
    // Our own key from an earlier session (restart within the TTL) is not ours: it vanishes soon.
    if (e.value.brokerId === this.self.brokerId) return undefined;
    return { brokerId: e.value.brokerId, url: e.value.url, isMine: false };
  }

  private waitForChange(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.changeWaiters.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.changeWaiters.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  /** Wakes `ownerOf` waiters on a later macrotask: they must not run (and write) inside a store watch callback. */
  private changed(): void {
    if (this.changeWaiters.size === 0) return;
    setImmediate(() => {
      for (const w of [...this.changeWaiters]) w();
    });
  }

  private async newSession(): Promise<void> {
    const session = await this.store.createSession({ ttlMs: this.options.sessionTtlMs });
    this.session = session;
    session.signal.addEventListener('abort', () => this.sessionEnded(session), { once: true });
    try {
      await this.revokeEarlierInstance(session);
      await this.register(true);
    } catch (err) {
      // Unregistered sessions are useless: drop it so that the caller's retry makes a new one.
      this.session = undefined;
      await session.close().catch(() => undefined);
      throw err;
    }
    this.logger.info({ sessionId: session.id }, 'broker registered');
  }

  /**
   * A broker restarted with the same id finds its registration still held by the previous process's
   * session (a crash leaves it until the TTL). Only one process may use an id, so that session is dead
   * or a zombie: revoke it, so that its bundles are free now rather than after the TTL (decision 0066).
   * Best effort: on failure the old keys expire as before.
   */
  private async revokeEarlierInstance(session: Session): Promise<void> {
    if (!this.store.revokeSession) return;
    let kv;
    try {
      kv = await this.store.get(brokerKey(this.self.brokerId));
    } catch (err) {
      this.logger.warn({ err }, 'cannot read this broker\'s earlier registration; an earlier session (if any) expires with its TTL');
      return;
    }
    if (!kv?.sessionId || kv.sessionId === session.id) return;
    const earlier = parseJson<BrokerRegistration>(kv.value);
    this.logger.warn({ earlierSessionId: kv.sessionId, earlierInstanceId: earlier?.instanceId, earlierStartedAtMs: earlier?.startedAtMs, instanceId: this.instanceId },
      'an earlier session of this broker id (a previous process, or this one\'s lost session) still holds the registration: revoking it (broker ids must be unique)');
    try {
      await this.store.revokeSession(kv.sessionId);
    } catch (err) {
      this.logger.warn({ err, earlierSessionId: kv.sessionId }, 'revoking the earlier session failed; its keys expire with its TTL');
    }
  }

  private sessionEnded(session: Session): void {
    if (this.session !== session) return;
    const reason = session.signal.reason;
    for (const o of [...this.owned.values()]) this.end(o, new BundleEndedError(o.spec.id, 'lost', undefined, reason), true);
    if (this.stopController.signal.aborted) return;
    this.logger.error({ reason: String(reason) }, 'metadata session lost: every bundle dropped; registering again');
    this.notifySession(false);
    this.sessionLoop ??= (async () => {
      // Loops until a session is alive at the check, so a loss right after re-registering is not missed.
      for (let attempt = 0; !this.stopController.signal.aborted && !this.session?.isAlive(); attempt++) {
        try {
          await sleep(backoffMs(attempt, { initialMs: 100, maxMs: 5_000 }, () => this.random.next()), this.stopController.signal);
          await this.newSession();
          this.notifySession(true);
          this.reconcile();
        } catch (err) {
          if (!this.stopController.signal.aborted) this.logger.warn({ err, attempt }, 'new session failed; retrying');
        }
      }
    })().catch(() => undefined).finally(() => {
      this.sessionLoop = undefined;
    });
  }

  private notifySession(alive: boolean): void {
    try {
      this.options.onSessionChange?.(alive);
    } catch (err) {
      this.logger.warn({ err }, 'session change listener failed');
    }
  }

  /** Ends an ownership tenure: abort its signal, forget it, tell listeners if lost. */
  private end(o: Owned, reason: BundleEndedError, lost = false): void {
    if (this.owned.get(o.spec.id) === o) this.owned.delete(o.spec.id);
    if (o.controller.signal.aborted) return;
    o.controller.abort(reason);
    if (lost) {
      this.logger.warn({ bundle: o.spec.id, err: reason }, 'bundle lost');
      for (const l of this.lostListeners) {
        try {
          l(o.spec, reason);
        } catch (err) {
          this.logger.error({ err }, 'bundle-lost listener threw');
        }
      }
    }
    this.changed();
  }

  private ownershipChanged(key: string, entry: CachedEntry<OwnershipRecord> | undefined): void {
    const o = this.owned.get(key.slice(OWNERSHIP_PREFIX.length));
    if (o && (!entry || entry.modRevision !== o.modRevision)) {
      // Someone else deleted or overwrote our key (an operator, or a lease revoked): we no longer own it.
      if (!o.unloading || entry) this.end(o, new BundleEndedError(o.spec.id, 'lost', undefined, new Error(entry ? 'ownership key changed' : 'ownership key deleted')), true);
    }
    this.changed();
    if (!entry) this.reconcile();
  }

  /** Puts `brokers/<id>` with a fresh load report; `strict`: throw on failure (the first registration). */
  private async register(strict = false): Promise<void> {
    const session = this.session;
    if (!session?.isAlive()) return;
    const now = this.clock.monotonic();
    const elapsedMs = now - this.lastCpuAt;
    // CPU over a window under a second is noise (a start-up burst reads as 100 %) and would steer
    // placement: keep the last value until a full second has passed.
    if (elapsedMs >= 1_000) {
      const cpu = cpuUsage(this.lastCpu);
      this.cpuPercentValue = round(((cpu.user + cpu.system) / 1000 / elapsedMs) * 100);
      this.lastCpu = cpuUsage();
      this.lastCpuAt = now;
    }
    const rss = memoryUsage.rss();
    const rates = this.options.rates?.() ?? { msgRateIn: 0, msgRateOut: 0 };
    const load: LoadReport = {
      seq: ++this.reportSeq, atMs: this.clock.now(), cpuPercent: this.cpuPercentValue,
      memoryPercent: round((rss / totalmem()) * 100), memoryRssBytes: rss, msgRateIn: round(rates.msgRateIn), msgRateOut: round(rates.msgRateOut),
      bundleCount: this.owned.size,
    };
    if (rates.topics) load.bundles = bundleLoads(this.ownedBundles(), rates.topics);
    const reg: BrokerRegistration = {
      id: this.self.brokerId, url: this.self.url, httpUrl: this.httpUrl, startedAtMs: this.startedAtMs, draining: this.draining, load,
      sessionId: session.id, instanceId: this.instanceId,
    };
    try {
      await this.store.put(brokerKey(this.self.brokerId), JSON.stringify(reg), { session });
    } catch (err) {
      if (session.isAlive()) this.logger.warn({ err }, 'load report failed');
      if (strict) throw err;
    }
  }

  /**
   * Serialised and coalesced: acquires bundles assigned here, unloads bundles assigned elsewhere or gone.
   * Runs on a later macrotask, so a burst of watch events makes one pass and no store call is made from
   * inside a watch callback.
   */
  private reconcile(): void {
    if (this.reconcileScheduled) return;
    this.reconcileScheduled = true;
    setImmediate(() => {
      this.reconcileScheduled = false;
      this.reconcileNow();
    });
  }

  private reconcileNow(): void {
    if (this.reconciling) {
      this.reconcileAgain = true;
      return;
    }
    this.reconciling = (async () => {
      do {
        this.reconcileAgain = false;
        await this.reconcileOnce();
      } while (this.reconcileAgain && !this.stopController.signal.aborted);
    })().catch((err) => this.logger.error({ err }, 'reconcile failed')).finally(() => {
      this.reconciling = undefined;
    });
  }

  private async reconcileOnce(): Promise<void> {
    if (this.draining || this.stopController.signal.aborted || !this.session?.isAlive()) return;
    const bundles = this.allBundles();
    const toAcquire: BundleSpec[] = [];
    for (const e of this.caches.assignments.values()) {
      if (e.value.brokerId !== this.self.brokerId) continue;
      const id = e.key.slice(ASSIGNMENTS_PREFIX.length);
      const spec = bundles.get(id);
      if (!spec || this.owned.has(id) || this.acquiring.has(id) || this.caches.owners.get(ownershipKey(id))) continue;
      toAcquire.push(spec);
    }
    for (const o of this.owned.values()) {
      if (o.unloading) continue;
      const a = this.caches.assignments.get(assignmentKey(o.spec.id))?.value;
      if (a && a.brokerId !== this.self.brokerId) {
        void this.unload(o.spec.id, this.liveBroker(a.brokerId) ?? { brokerId: a.brokerId, url: a.url });
      } else if (this.caches.policies.size > 0 && !bundles.has(o.spec.id)) {
        // The namespace was deleted or its bundle split: hand the old range back; the coordinator assigns the new ones.
        void this.unload(o.spec.id, undefined);
      }
    }
    // Bounded parallelism: many bundles can be assigned at once after a broker dies.
    for (let i = 0; i < toAcquire.length; i += 16) {
      await Promise.all(toAcquire.slice(i, i + 16).map((spec) => this.acquireSpec(spec)));
    }
  }

  private allBundles(): Map<string, BundleSpec> {
    const out = new Map<string, BundleSpec>();
    for (const e of this.caches.policies.values()) {
      const ns = namespaceOfPolicyKey(e.key);
      if (!ns) continue;
      try {
        for (const b of namespaceBundles(ns, e.value, this.options.defaultBundles ?? 4)) out.set(b.id, b);
      } catch (err) {
        this.logger.warn({ err, namespace: ns }, 'malformed bundle policy');
      }
    }
    return out;
  }

  private async acquireSpec(spec: BundleSpec): Promise<void> {
    const session = this.session;
    if (!session?.isAlive() || this.acquiring.has(spec.id)) return;
    this.acquiring.add(spec.id);
    const key = ownershipKey(spec.id);
    try {
      const record: OwnershipRecord = { brokerId: this.self.brokerId, url: this.self.url, acquiredAtMs: this.clock.now() };
      let result: { version: number; revision: number };
      try {
        result = await this.store.put(key, JSON.stringify(record), { expectedVersion: 0, session });
      } catch (err) {
        if ((err as { code?: string }).code !== 'BAD_VERSION') throw err;
        // Someone holds it — or our own put was applied and its reply lost: then the key is on our session.
        const kv = await this.store.get(key);
        if (!kv || kv.sessionId !== session.id) return;
        result = { version: kv.version, revision: kv.modRevision };
      }
      if (this.session !== session || !session.isAlive() || this.draining) return; // ended meanwhile: the lease takes the key
      const o: Owned = { spec, version: result.version, modRevision: result.revision, controller: new AbortController() };
      this.owned.set(spec.id, o);
      // The watch may have delivered a later change of the key before our put's reply arrived.
      const cached = this.caches.owners.get(key);
      if (this.caches.owners.revision >= result.revision && (!cached || cached.modRevision !== result.revision)) {
        this.end(o, new BundleEndedError(spec.id, 'lost', undefined, new Error('ownership key changed right after acquisition')), true);
        return;
      }
      this.logger.info({ bundle: spec.id }, 'bundle acquired');
      this.changed();
    } catch (err) {
      this.logger.warn({ err, bundle: spec.id }, 'acquiring a bundle failed; retrying');
      setTimeout(() => this.reconcile(), 200 + this.random.int(0, 300)).unref();
    } finally {
      this.acquiring.delete(spec.id);
    }
  }

  private async unload(bundleId: string, target: BundleOwner | undefined): Promise<void> {
    const o = this.owned.get(bundleId);
    if (!o || o.unloading || o.controller.signal.aborted) return;
    o.unloading = { target };
    this.changed();
    this.logger.info({ bundle: bundleId, target: target?.brokerId }, 'unloading bundle');
    const timeoutMs = this.options.unloadTimeoutMs ?? 10_000;
    try {
      if (this.options.onUnload) {
        // The timer is cancelled once the handler settles, so it warns only about a real overrun.
        const timer = new AbortController();
        try {
          await Promise.race([
            this.options.onUnload(o.spec, target),
            sleep(timeoutMs, timer.signal).then(
              () => this.logger.warn({ bundle: bundleId, timeoutMs }, 'unload took too long; releasing anyway'),
              () => undefined,
            ),
          ]);
        } finally {
          timer.abort();
        }
      }
    } catch (err) {
      this.logger.warn({ err, bundle: bundleId }, 'unload handler failed; releasing anyway');
    }
    this.end(o, new BundleEndedError(bundleId, 'released', target));
    for (let attempt = 0; attempt < 5 && this.session?.isAlive(); attempt++) {
      try {
        await this.store.delete(ownershipKey(bundleId), { expectedVersion: o.version });
        this.logger.info({ bundle: bundleId, target: target?.brokerId }, 'bundle released');
        return;
      } catch (err) {
        if ((err as { code?: string }).code === 'BAD_VERSION') return; // already gone or not ours any more
        this.logger.warn({ err, bundle: bundleId, attempt }, 'release failed; retrying');
        await sleep(backoffMs(attempt, { initialMs: 100, maxMs: 1_000 }, () => this.random.next())).catch(() => undefined);
      }
    }
  }

  private liveBroker(id: string): BundleOwner | undefined {
    const e = this.caches.brokers.get(brokerKey(id));
    return e && !e.value.draining ? { brokerId: id, url: e.value.url } : undefined;
  }

  /** Least loaded other live broker by the cached load reports (the coordinator's rule). */
  private pickTarget(exclude: Set<string>): BundleOwner | undefined {
    const views = new Map<string, BrokerView>();
    for (const e of this.caches.brokers.values()) {
      const id = e.key.slice(BROKERS_PREFIX.length);
      if (!exclude.has(id)) views.set(id, { id, url: e.value.url, draining: e.value.draining === true, load: e.value.load });
    }
    const counts = new Map<string, number>();
    for (const id of views.keys()) counts.set(id, 0);
    for (const e of this.caches.owners.values()) if (counts.has(e.value.brokerId)) counts.set(e.value.brokerId, (counts.get(e.value.brokerId) ?? 0) + 1);
    const id = chooseBroker(views, counts, { loadSlackPercent: 10 }, this.random);
    return id ? { brokerId: id, url: views.get(id)?.url ?? '' } : undefined;
  }

  private async writeAssignment(bundleId: string, target: BundleOwner, reason: AssignmentRecord['reason']): Promise<void> {
    const record: AssignmentRecord = { brokerId: target.brokerId, url: target.url, atMs: this.clock.now(), reason };
    await this.store.put(assignmentKey(bundleId), JSON.stringify(record));
  }
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}

