import type { Random } from '@strata/runtime';
import { loadScore, type AssignmentReason, type LoadReport } from './protocol.js';

/**
 * Where bundles go: pure decisions over a snapshot of the cluster, driven by an injected Random
 * (ties) and `now` (timeouts), so that tests can replay them. Decision 0063.
 */
export interface BrokerView {
  id: string;
  url: string;
  draining: boolean;
  load: LoadReport | undefined;
}

export interface AssignmentView {
  brokerId: string;
  atMs: number;
  /** The key's version, for a compare-and-swap write. */
  version: number;
}

export interface ClusterSnapshot {
  now: number;
  /** Every bundle id of every namespace. */
  bundles: readonly string[];
  /** Live brokers (their session holds `brokers/<id>`). */
  brokers: ReadonlyMap<string, BrokerView>;
  /** bundle id -> owning broker id. */
  owners: ReadonlyMap<string, string>;
  /** bundle id -> assignment. */
  assignments: ReadonlyMap<string, AssignmentView>;
}

export interface PlacementOptions {
  /** An assigned bundle still unowned after this long goes to another broker. */
  assignTimeoutMs: number;
  /** Brokers within this many load points of the least loaded count as equally loaded (then fewest bundles wins). */
  loadSlackPercent: number;
  /** Writes planned per round at most; the rest wait for the next round. */
  maxActionsPerRound: number;
}

export const DEFAULT_PLACEMENT_OPTIONS: PlacementOptions = { assignTimeoutMs: 10_000, loadSlackPercent: 10, maxActionsPerRound: 1000 };

export type PlacementAction =
  | { kind: 'assign'; bundle: string; brokerId: string; reason: AssignmentReason; expectedVersion: number }
  | { kind: 'unassign'; bundle: string; expectedVersion: number };

/** Bundles per broker: owned ones plus unowned ones assigned to it (on their way). */
export function bundleCounts(snapshot: ClusterSnapshot): Map<string, number> {
  const counts = new Map<string, number>();
  for (const id of snapshot.brokers.keys()) counts.set(id, 0);
  const bump = (id: string) => counts.has(id) && counts.set(id, (counts.get(id) as number) + 1);
  for (const owner of snapshot.owners.values()) bump(owner);
  for (const [bundle, a] of snapshot.assignments) if (!snapshot.owners.has(bundle)) bump(a.brokerId);
  return counts;
}

/**
 * The broker a bundle should go to: among live, non-draining brokers (not `exclude`, unless nothing
 * else is left), those within `loadSlackPercent` of the least load score; of them the one with the
 * fewest bundles; remaining ties by `random`. Undefined when no broker can take it.
 */
export function chooseBroker(
  brokers: ReadonlyMap<string, BrokerView>,
  counts: ReadonlyMap<string, number>,
  options: Pick<PlacementOptions, 'loadSlackPercent'>,
  random: Random,
  exclude?: ReadonlySet<string>,
): string | undefined {
  let candidates = [...brokers.values()].filter((b) => !b.draining && !exclude?.has(b.id));
  if (candidates.length === 0 && exclude) candidates = [...brokers.values()].filter((b) => !b.draining);
  if (candidates.length === 0) return undefined;
  const minScore = Math.min(...candidates.map((b) => loadScore(b.load)));
  const band = candidates.filter((b) => loadScore(b.load) <= minScore + options.loadSlackPercent);
  const fewest = Math.min(...band.map((b) => counts.get(b.id) ?? 0));
  const ties = band.filter((b) => (counts.get(b.id) ?? 0) === fewest).sort((x, y) => (x.id < y.id ? -1 : 1));
  return random.pick(ties).id;
}

/**
 * One round of assignment: every bundle that nobody owns and that is not on its way to a live broker
 * gets assigned; assignments of bundles that no longer exist are removed. Owned bundles are left alone
 * (moving them is load shedding's business).
 */
export function planAssignments(snapshot: ClusterSnapshot, options: PlacementOptions, random: Random): PlacementAction[] {
  const actions: PlacementAction[] = [];
  const counts = bundleCounts(snapshot);
  for (const bundle of [...snapshot.bundles].sort()) {
    if (actions.length >= options.maxActionsPerRound) return actions;
    const a = snapshot.assignments.get(bundle);
    const owner = snapshot.owners.get(bundle);
    if (owner !== undefined) {
      // A move towards a broker that died meanwhile: cancel it, the owner keeps the bundle.
      if (a && a.brokerId !== owner && !snapshot.brokers.has(a.brokerId) && snapshot.brokers.has(owner)) {
        actions.push({ kind: 'assign', bundle, brokerId: owner, reason: 'timeout', expectedVersion: a.version });
      }
      continue;
    }
    const target = a ? snapshot.brokers.get(a.brokerId) : undefined;
    const timedOut = a !== undefined && snapshot.now - a.atMs >= options.assignTimeoutMs;
    if (a && target && !target.draining && !timedOut) continue;
    const exclude = a && timedOut ? new Set([a.brokerId]) : undefined;
    const chosen = chooseBroker(snapshot.brokers, counts, options, random, exclude);
    if (!chosen) continue;
    if (a && a.brokerId === chosen && !timedOut) continue;
    if (a && counts.has(a.brokerId)) counts.set(a.brokerId, (counts.get(a.brokerId) as number) - 1);
    counts.set(chosen, (counts.get(chosen) ?? 0) + 1);
    actions.push({ kind: 'assign', bundle, brokerId: chosen, reason: timedOut ? 'timeout' : 'unowned', expectedVersion: a?.version ?? 0 });
  }
  const existing = new Set(snapshot.bundles);
  for (const [bundle, a] of snapshot.assignments) {
    if (actions.length >= options.maxActionsPerRound) break;
    if (!existing.has(bundle) && !snapshot.owners.has(bundle)) actions.push({ kind: 'unassign', bundle, expectedVersion: a.version });
  }
  return actions;
}

export interface ShedOptions {
  /** A broker is overloaded when its load score exceeds the average by more than this many points. */
  thresholdPercent: number;
  /** ... in this many consecutive load reports (hysteresis). */
  consecutiveReports: number;
  /** At most one bundle moves per this interval, cluster-wide. */
  cooldownMs: number;
}

export const DEFAULT_SHED_OPTIONS: ShedOptions = { thresholdPercent: 25, consecutiveReports: 3, cooldownMs: 60_000 };

/**
 * Load shedding with hysteresis: counts, per broker, consecutive load reports above average +
 * threshold; once a broker reaches the count (and the cooldown has passed, and no other move is in
 * flight) one of its bundles is reassigned to the least loaded broker, which must be below average.
 * The owner obeys by unloading the bundle towards that broker. State is per leader term.
 */
export class LoadShedder {
  private readonly streaks = new Map<string, { seq: number; count: number }>();
  private lastMoveAt = Number.NEGATIVE_INFINITY;

  constructor(private readonly options: ShedOptions, private readonly random: Random) {}

  /** Feeds the brokers' current load reports; a report counts once (by its seq). */
  observe(brokers: ReadonlyMap<string, BrokerView>): void {
    const active = [...brokers.values()].filter((b) => !b.draining && b.load);
    for (const id of this.streaks.keys()) if (!brokers.has(id)) this.streaks.delete(id);
    if (active.length < 2) return;
    const avg = active.reduce((s, b) => s + loadScore(b.load), 0) / active.length;
    for (const b of active) {
      const seq = (b.load as LoadReport).seq;
      const streak = this.streaks.get(b.id);
      if (streak && streak.seq === seq) continue;
      const over = loadScore(b.load) > avg + this.options.thresholdPercent;
      this.streaks.set(b.id, { seq, count: over ? (streak?.count ?? 0) + 1 : 0 });
    }
  }

  /** At most one move, or undefined. */
  plan(snapshot: ClusterSnapshot, placement: Pick<PlacementOptions, 'loadSlackPercent'>): PlacementAction | undefined {
    if (snapshot.now - this.lastMoveAt < this.options.cooldownMs) return undefined;
    for (const [bundle, a] of snapshot.assignments) {
      const owner = snapshot.owners.get(bundle);
      if (owner === undefined || owner !== a.brokerId) return undefined; // a move is in flight: one at a time
    }
    const active = [...snapshot.brokers.values()].filter((b) => !b.draining && b.load);
    if (active.length < 2) return undefined;
    const avg = active.reduce((s, b) => s + loadScore(b.load), 0) / active.length;
    const counts = bundleCounts(snapshot);
    const hot = active
      .filter((b) => (this.streaks.get(b.id)?.count ?? 0) >= this.options.consecutiveReports && (counts.get(b.id) ?? 0) >= 2)
      .sort((x, y) => loadScore(y.load) - loadScore(x.load))[0];
    if (!hot) return undefined;
    const cool = new Map([...snapshot.brokers].filter(([id, b]) => id !== hot.id && loadScore(b.load) < avg));
    const target = chooseBroker(cool, counts, placement, this.random);
    if (!target) return undefined;
    const owned = [...snapshot.owners].filter(([, owner]) => owner === hot.id).map(([bundle]) => bundle).sort();
    const bundle = this.random.pick(owned);
    this.lastMoveAt = snapshot.now;
    this.streaks.set(hot.id, { seq: (hot.load as LoadReport).seq, count: 0 });
    return { kind: 'assign', bundle, brokerId: target, reason: 'shed', expectedVersion: snapshot.assignments.get(bundle)?.version ?? 0 };
  }
}
