import { sleep, systemClock, type Clock, type Logger, type Random } from '@strata/runtime';
import type { Registry } from 'prom-client';
import { dutyCounter, type LeaderContext, type LeaderDuty } from '../leader.js';
import type { MetadataStore } from '../metadata/store.js';
import {
  DEFAULT_PLACEMENT_OPTIONS, DEFAULT_SHED_OPTIONS, LoadShedder, planAssignments,
  type BrokerView, type ClusterSnapshot, type PlacementAction, type PlacementOptions, type ShedOptions,
} from './placement.js';
import { PrefixCache } from './prefix-cache.js';
import { BrokerLiveness, type LivenessOptions } from './liveness.js';
import { DEFAULT_SPLIT_OPTIONS, heldBySplit, planSplits, type NamespaceView, type SplitAction, type SplitOptions } from './splitting.js';
import {
  ASSIGNMENTS_PREFIX, assignmentKey, BROKERS_PREFIX, namespaceBundles, namespaceOfPolicyKey, OWNERSHIP_PREFIX, parseJson,
  POLICIES_PREFIX, splitBundlePolicy, type AssignmentRecord, type BrokerRegistration, type BundlePolicy, type BundleSpec, type OwnershipRecord,
} from './protocol.js';

export interface BundleAssignerOptions {
  clock?: Clock;
  random: Random;
  /** Bundles of a namespace whose policies do not say (the broker's defaultBundles). */
  defaultBundles?: number;
  /** Re-evaluates at least this often (timeouts, load shedding), besides on every change. */
  tickMs?: number;
  placement?: Partial<PlacementOptions>;
  /** Load shedding; `false` turns it off. */
  shedding?: Partial<ShedOptions> | false;
  /** Probing brokers to revoke the sessions of dead ones at once (decision 0065); `false` turns it off. */
  liveness?: Partial<LivenessOptions> | false;
  /** Automatic split of hot bundles (decision 0068); `false` turns it off. */
  splitting?: Partial<SplitOptions> | false;
  /** Called after each split written (tests and metrics). */
  onSplit?(split: SplitAction): void;
  /** Called after each round (tests and metrics). */
  onRound?(actions: readonly PlacementAction[]): void;
}

/**
 * The leader's bundle assignment duty. While leading it keeps caches of `brokers/`, `ownership/`,
 * `assignments/` and `admin/policies/` and, on every change and every tick, writes an assignment for
 * each bundle nobody owns (to the least loaded live broker; at once when an owner's session ends),
 * and at most one load-shedding move per cooldown. Writes are compare-and-swaps on the assignment's
 * version, so a concurrent admin unload or a stale view loses rather than overwrites.
 * Safety does not depend on this duty: an assignment is only a wish; ownership is taken by the broker
 * with create-if-absent on its own session (decision 0060).
 */
export class BundleAssigner implements LeaderDuty {
  readonly name = 'bundle-assigner';
  private readonly clock: Clock;
  private readonly placement: PlacementOptions;
  private readonly shedOptions: ShedOptions | undefined;
  private readonly splitOptions: SplitOptions | undefined;

  constructor(private readonly options: BundleAssignerOptions) {
    this.clock = options.clock ?? systemClock;
    this.placement = { ...DEFAULT_PLACEMENT_OPTIONS, ...options.placement };
    this.shedOptions = options.shedding === false ? undefined : { ...DEFAULT_SHED_OPTIONS, ...options.shedding };
    this.splitOptions = options.splitting === false ? undefined : { ...DEFAULT_SPLIT_OPTIONS, ...options.splitting };
  }

  async run(context: LeaderContext): Promise<void> {
    const { store, signal } = context;
    const logger = context.logger.child({ component: 'bundle-assigner' });
    const metrics = assignerMetrics(context.metrics);
    let wake: (() => void) | undefined;
    let dirty = true;
    // Changes come in bursts (a dead broker's keys vanish in one revision): one round after the burst.
    // Deferring to a macrotask also keeps store writes out of the store's watch callbacks.
    let poked = false;
    const poke = () => {
      dirty = true;
      if (poked) return;
      poked = true;
      setImmediate(() => {
        poked = false;
        wake?.();
      });
    };
    const caches = {
      brokers: new PrefixCache<BrokerRegistration>({ store, prefix: BROKERS_PREFIX, logger, decode: (v) => parseJson(v), onChange: poke }),
      owners: new PrefixCache<OwnershipRecord>({ store, prefix: OWNERSHIP_PREFIX, logger, decode: (v) => parseJson(v), onChange: poke }),
      assignments: new PrefixCache<AssignmentRecord>({ store, prefix: ASSIGNMENTS_PREFIX, logger, decode: (v) => parseJson(v), onChange: poke }),
      policies: new PrefixCache<BundlePolicy>({ store, prefix: POLICIES_PREFIX, logger, decode: (v) => parseJson(v), onChange: poke }),
    };
    const shedder = this.shedOptions ? new LoadShedder(this.shedOptions, this.options.random) : undefined;
    const tickMs = this.options.tickMs ?? 1_000;
    let liveness: BrokerLiveness | undefined;
    /** namespace -> when the leader last split it (per leader term, like the shedder's state). */
    const lastSplitAt = new Map<string, number>();
    try {
      await Promise.all(Object.values(caches).map((c) => c.start()));
      logger.info('bundle assignment started');
      if (this.options.liveness !== false && store.revokeSession) {
        liveness = new BrokerLiveness({
          revoke: (sessionId) => store.revokeSession?.(sessionId, { signal }) ?? Promise.resolve(false),
          registrations: () => [...caches.brokers.values()].map((e) => ({ ...e.value, id: e.key.slice(BROKERS_PREFIX.length) })),
          logger, options: this.options.liveness, onRevoked: () => metrics.revocations.inc(),
        });
        liveness.start();
      }
      while (!signal.aborted) {
        if (dirty) {
          dirty = false;
          const snapshot = this.snapshot(caches, logger);
          shedder?.observe(snapshot.brokers);
          const actions = planAssignments(snapshot, this.placement, this.options.random);
          const shed = actions.length === 0 ? shedder?.plan(snapshot, this.placement) : undefined;
          if (shed) actions.push(shed);
          await this.execute(store, actions, caches.brokers, metrics, logger, signal);
          this.options.onRound?.(actions);
          if (this.splitOptions) {
            const splits = planSplits({ ...snapshot, namespaces: this.namespaces(caches.policies) }, this.splitOptions, lastSplitAt);
            await this.executeSplits(store, splits, caches.policies, lastSplitAt, metrics, logger, signal);
          }
        }
        if (dirty) continue;
        await new Promise<void>((resolve) => {
          const done = () => {
            clearTimeout(timer);
            signal.removeEventListener('abort', done);
            resolve();
          };
          const timer = setTimeout(() => {
            dirty = true;
            done();
          }, tickMs);
          wake = done;
          signal.addEventListener('abort', done, { once: true });
        });
        wake = undefined;
      }
    } finally {
      await liveness?.stop();
      await Promise.all(Object.values(caches).map((c) => c.close()));
      logger.info('bundle assignment stopped');
    }
  }

  private snapshot(
    caches: { brokers: PrefixCache<BrokerRegistration>; owners: PrefixCache<OwnershipRecord>; assignments: PrefixCache<AssignmentRecord>; policies: PrefixCache<BundlePolicy> },
    logger: Logger,
  ): ClusterSnapshot {
    const brokers = new Map<string, BrokerView>();
    for (const e of caches.brokers.values()) {
      const id = e.key.slice(BROKERS_PREFIX.length);
      brokers.set(id, { id, url: e.value.url, draining: e.value.draining === true, load: e.value.load });
    }
    const specs: BundleSpec[] = [];
    for (const e of caches.policies.values()) {
      const ns = namespaceOfPolicyKey(e.key);
      if (!ns) continue;
      try {
        for (const b of namespaceBundles(ns, e.value, this.options.defaultBundles ?? 4)) specs.push(b);
      } catch (err) {
        logger.warn({ err, namespace: ns }, 'namespace has malformed bundle policies; not assigning it');
      }
    }
    const owners = new Map<string, string>();
    for (const e of caches.owners.values()) owners.set(e.key.slice(OWNERSHIP_PREFIX.length), e.value.brokerId);
    // The halves of a split wait until the old owner has released the old range (decision 0068).
    const held = heldBySplit(specs, owners);
    const bundles = specs.filter((b) => !held.has(b.id)).map((b) => b.id);
    const assignments = new Map<string, { brokerId: string; atMs: number; version: number }>();
    for (const e of caches.assignments.values()) {
      assignments.set(e.key.slice(ASSIGNMENTS_PREFIX.length), { brokerId: e.value.brokerId, atMs: e.value.atMs, version: e.version });
    }
    return { now: this.clock.now(), bundles, brokers, owners, assignments };
  }

  /** Every namespace with well-formed bundle policies (malformed ones are logged by `snapshot`). */
  private namespaces(policies: PrefixCache<BundlePolicy>): Map<string, NamespaceView> {
    const out = new Map<string, NamespaceView>();
    for (const e of policies.values()) {
      const ns = namespaceOfPolicyKey(e.key);
      if (!ns) continue;
      try {
        out.set(ns, { policy: e.value, version: e.version, bundles: namespaceBundles(ns, e.value, this.options.defaultBundles ?? 4) });
      } catch {
        continue;
      }
    }
    return out;
  }

  /**
   * Each split is one compare-and-swap of the namespace policy (the admin SplitBundle's write). A lost
   * CAS (an admin changed the policy meanwhile) is skipped: the next round decides on the new policy.
   */
  private async executeSplits(
    store: MetadataStore, splits: readonly SplitAction[], policies: PrefixCache<BundlePolicy>, lastSplitAt: Map<string, number>,
    metrics: AssignerMetrics, logger: Logger, signal: AbortSignal,
  ): Promise<void> {
    for (const split of splits) {
      if (signal.aborted) return;
      const key = `${POLICIES_PREFIX}${split.namespace}`;
      const current = policies.get(key);
      if (!current || current.version !== split.expectedVersion) continue;
      const next = splitBundlePolicy(split.namespace, current.value, split.start, {
        defaultBundles: this.options.defaultBundles ?? 4, maxBundles: this.splitOptions?.maxBundlesPerNamespace,
      });
      if (!next) continue;
      try {
        await store.put(key, JSON.stringify(next), { expectedVersion: split.expectedVersion, signal });
        lastSplitAt.set(split.namespace, this.clock.now());
        logger.info({ bundle: split.bundle, reasons: split.reasons, load: split.load, bundles: next.bundles }, 'hot bundle split');
        metrics.splits.inc();
        this.options.onSplit?.(split);
      } catch (err) {
        if ((err as { code?: string }).code === 'BAD_VERSION') continue;
        if (signal.aborted) return;
        logger.warn({ err, bundle: split.bundle }, 'bundle split failed; retrying next round');
      }
    }
  }

  private async execute(
    store: MetadataStore, actions: readonly PlacementAction[], brokers: PrefixCache<BrokerRegistration>, metrics: AssignerMetrics,
    logger: Logger, signal: AbortSignal,
  ): Promise<void> {
    for (const a of actions) {
      if (signal.aborted) return;
      try {
        if (a.kind === 'assign') {
          const url = brokers.get(`${BROKERS_PREFIX}${a.brokerId}`)?.value.url ?? '';
          const record: AssignmentRecord = { brokerId: a.brokerId, url, atMs: this.clock.now(), reason: a.reason };
          await store.put(assignmentKey(a.bundle), JSON.stringify(record), { expectedVersion: a.expectedVersion, signal });
          logger.info({ bundle: a.bundle, brokerId: a.brokerId, reason: a.reason }, 'bundle assigned');
          metrics.assignments.inc({ reason: a.reason });
        } else {
          await store.delete(assignmentKey(a.bundle), { expectedVersion: a.expectedVersion, signal });
          logger.info({ bundle: a.bundle }, 'assignment of a bundle that no longer exists removed');
        }
      } catch (err) {
        // A lost CAS means our view was stale: the cache brings the change and the next round decides again.
        if ((err as { code?: string }).code === 'BAD_VERSION') continue;
        if (signal.aborted) return;
        logger.warn({ err, bundle: a.bundle }, 'assignment write failed; retrying next round');
        await sleep(200, signal).catch(() => undefined);
      }
    }
  }
}

type AssignerMetrics = ReturnType<typeof assignerMetrics>;

/** The duty's counters on the coordinator's registry: registered by the first term, kept by later ones. */
function assignerMetrics(registry: Registry) {
  return {
    assignments: dutyCounter(registry, 'strata_coordinator_bundle_assignments_total', 'Bundle assignments written, by reason (unowned, timeout, shed, unload, drain)', ['reason']),
    splits: dutyCounter(registry, 'strata_coordinator_bundle_splits_total', 'Hot bundles split automatically (decision 0068)'),
    revocations: dutyCounter(registry, 'strata_coordinator_broker_sessions_revoked_total', 'Sessions of brokers whose port refused connections, revoked at once (decision 0065)'),
  };
}
