import { connect } from 'node:net';
import type { Logger } from '@strata/runtime';
import type { BrokerRegistration } from './protocol.js';

/**
 * What one probe of a broker's address found:
 * - `alive`: something accepted the TCP connection (a paused process too: the kernel accepts for it);
 * - `refused`: nothing listens on that address (ECONNREFUSED): the process is gone, its host is up;
 * - `unknown`: timeout, unreachable, name not resolved, ...: says nothing (a partition, a paused or
 *   dead host, a blackholed address) and never leads to a revocation.
 */
export type ProbeOutcome = 'alive' | 'refused' | 'unknown';

/** Probes `url` (host:port), settling within about `timeoutMs`. */
export type BrokerProbe = (url: string, timeoutMs: number) => Promise<ProbeOutcome>;

export interface LivenessOptions {
  /** How often every registered broker is probed (ms). */
  intervalMs: number;
  /** Consecutive refusals (after the broker was once seen alive) that revoke its session. */
  failuresToRevoke: number;
  /** After a refusal, the next probe of that broker goes this soon rather than at the next round (ms). */
  confirmAfterMs: number;
  /** A probe not answered within this long is `unknown`. */
  probeTimeoutMs: number;
  /** Probes in flight at most; brokers beyond it wait for a later round. */
  maxConcurrentProbes: number;
}

export const DEFAULT_LIVENESS_OPTIONS: LivenessOptions = {
  intervalMs: 250, failuresToRevoke: 2, confirmAfterMs: 50, probeTimeoutMs: 1_000, maxConcurrentProbes: 16,
};

/** A TCP connect to `host:port` (`[v6]:port` too), closed at once. */
export const tcpProbe: BrokerProbe = (url, timeoutMs) => {
  const m = /^(?:[a-z]+:\/\/)?(?:\[([^\]]+)\]|([^:/]+)):(\d+)\/?$/i.exec(url);
  if (!m) return Promise.resolve('unknown');
  const host = (m[1] ?? m[2]) as string;
  const port = Number(m[3]);
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (outcome: ProbeOutcome) => {
      clearTimeout(timer);
      socket.removeAllListeners();
      socket.on('error', () => undefined);
      socket.destroy();
      resolve(outcome);
    };
    const timer = setTimeout(() => done('unknown'), timeoutMs);
    socket.once('connect', () => done('alive'));
    socket.once('error', (err: NodeJS.ErrnoException & { errors?: NodeJS.ErrnoException[] }) => {
      // With several addresses (happy eyeballs) Node reports an AggregateError: refused only if every one refused.
      const codes = err.errors?.length ? err.errors.map((e) => e.code) : [err.code];
      done(codes.every((c) => c === 'ECONNREFUSED') ? 'refused' : 'unknown');
    });
  });
};

export interface BrokerLivenessOptions {
  /** Ends a session by id (`MetadataStore.revokeSession`); false if it no longer existed. */
  revoke(sessionId: string): Promise<boolean>;
  /** The registrations now (the assigner's `brokers/` cache). */
  registrations(): Iterable<BrokerRegistration>;
  logger: Logger;
  options?: Partial<LivenessOptions>;
  probe?: BrokerProbe;
  /** Called after a session was revoked (metrics, tests). */
  onRevoked?(brokerId: string, sessionId: string): void;
}

interface Tracked {
  sessionId: string;
  url: string;
  /** Refusals count only once this registration's address was reached: a wrong advertised address never revokes. */
  seenAlive: boolean;
  refusals: number;
  probing: boolean;
  revoking: boolean;
}

/**
 * Definitive death detection for brokers (decision 0065), run by the coordinator leader next to the
 * bundle assigner. Every `intervalMs` it probes each registered broker's address; when a broker that
 * was reachable before refuses `failuresToRevoke` probes in a row, its process is gone (its host still
 * answers, nothing listens), and its session is revoked: `brokers/<id>` and its ownerships vanish now
 * instead of at lease expiry, and the assigner reassigns at once.
 *
 * Invariants:
 * - Only refusals revoke. Timeouts and other errors (SIGSTOP, partitions, dead hosts) leave the broker
 *   to its TTL, so the session rule (decision 0011) keeps zombies from serving as before.
 * - A revocation targets the session named in the registration probed, never a newer one.
 * - If a live broker is revoked anyway (it closed its port, a firewall answers with resets), the new
 *   owner's ledger recovery fences it, and it learns from its next keep-alive (TTL 0) and re-registers.
 */
export class BrokerLiveness {
  private readonly options: LivenessOptions;
  private readonly probe: BrokerProbe;
  private readonly logger: Logger;
  private readonly tracked = new Map<string, Tracked>();
  private timer: NodeJS.Timeout | undefined;
  private inFlight = 0;
  private stopped = false;
  private readonly pending = new Set<Promise<void>>();
  private readonly confirmTimers = new Set<NodeJS.Timeout>();

  constructor(private readonly deps: BrokerLivenessOptions) {
    this.options = { ...DEFAULT_LIVENESS_OPTIONS, ...deps.options };
    this.probe = deps.probe ?? tcpProbe;
    this.logger = deps.logger.child({ component: 'broker-liveness' });
  }

  start(): void {
    if (this.timer || this.stopped) return;
    this.timer = setInterval(() => this.round(), this.options.intervalMs);
    this.timer.unref();
    this.round();
  }

  /** Stops probing; waits for probes and revocations in flight (each bounded by its timeout). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    for (const t of this.confirmTimers) clearTimeout(t);
    this.confirmTimers.clear();
    await Promise.allSettled([...this.pending]);
  }

  private round(): void {
    if (this.stopped) return;
    const present = new Set<string>();
    for (const reg of this.deps.registrations()) {
      if (!reg.sessionId || !reg.url) continue; // an older broker: it can only expire
      present.add(reg.id);
      let t = this.tracked.get(reg.id);
      if (!t || t.sessionId !== reg.sessionId || t.url !== reg.url) {
        t = { sessionId: reg.sessionId, url: reg.url, seenAlive: false, refusals: 0, probing: false, revoking: false };
        this.tracked.set(reg.id, t);
      }
      this.maybeProbe(reg.id, t);
    }
    for (const id of this.tracked.keys()) if (!present.has(id)) this.tracked.delete(id);
  }

  private maybeProbe(brokerId: string, t: Tracked): void {
    if (this.stopped || t.probing || t.revoking || this.inFlight >= this.options.maxConcurrentProbes) return;
    this.track(this.probeOne(brokerId, t));
  }

  private track(p: Promise<void>): void {
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }

  private async probeOne(brokerId: string, t: Tracked): Promise<void> {
    t.probing = true;
    this.inFlight++;
    let outcome: ProbeOutcome;
    try {
      outcome = await this.probe(t.url, this.options.probeTimeoutMs).catch(() => 'unknown' as const);
    } finally {
      t.probing = false;
      this.inFlight--;
    }
    if (this.stopped || this.tracked.get(brokerId) !== t) return;
    if (outcome === 'alive') {
      if (!t.seenAlive) this.logger.debug({ brokerId, url: t.url }, 'broker reachable');
      t.seenAlive = true;
      t.refusals = 0;
      return;
    }
    if (outcome === 'unknown' || !t.seenAlive) {
      // Only consecutive refusals count; and an address never reached may simply be wrong for us.
      t.refusals = 0;
      return;
    }
    t.refusals++;
    this.logger.info({ brokerId, url: t.url, refusals: t.refusals }, 'broker refused a liveness probe');
    if (t.refusals < this.options.failuresToRevoke) {
      // Confirm soon: a refusal is already strong evidence, the next round would only add delay.
      if (this.options.confirmAfterMs < this.options.intervalMs) {
        const timer = setTimeout(() => {
          this.confirmTimers.delete(timer);
          if (this.tracked.get(brokerId) === t) this.maybeProbe(brokerId, t);
        }, this.options.confirmAfterMs);
        timer.unref();
        this.confirmTimers.add(timer);
      }
      return;
    }
    t.revoking = true;
    try {
      const existed = await this.deps.revoke(t.sessionId);
      this.logger.warn({ brokerId, url: t.url, sessionId: t.sessionId, refusals: t.refusals, existed },
        'broker process gone (connections refused): its session revoked, its bundles are free now');
      this.deps.onRevoked?.(brokerId, t.sessionId);
    } catch (err) {
      if (!this.stopped) this.logger.warn({ err, brokerId, sessionId: t.sessionId }, 'revoking a dead broker\'s session failed; retrying next round');
      t.revoking = false;
    }
  }
}
