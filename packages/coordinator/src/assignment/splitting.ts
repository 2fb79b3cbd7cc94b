import type { BrokerView } from './placement.js';
import { parseBundleId, splitBundlePolicy, type BundleLoad, type BundlePolicy, type BundleSpec } from './protocol.js';

/**
 * Automatic splitting of hot bundles (decision 0068): pure decisions over the brokers' per-bundle load
 * reports, the namespace policies and the split history, so that tests can replay them. The leader
 * writes each decision as one compare-and-swap of the namespace policy (the same write as the admin
 * SplitBundle, `splitBundlePolicy`); the owner then unloads the old range and the assigner places the
 * two halves like any unowned bundles.
 */
export interface SplitOptions {
  /** A bundle with more loaded topics than this is split (0: no limit). */
  maxTopics: number;
  /** ... or more producers + consumers (0: no limit). */
  maxSessions: number;
  /** ... or more messages per second in + out (0: no limit). */
  maxMsgRate: number;
  /** ... or more bytes per second in + out (0: no limit). */
  maxBandwidthBytes: number;
  /** A namespace is never split beyond this many bundles. */
  maxBundlesPerNamespace: number;
  /** After a split, the namespace is left alone this long (its halves get placed and report their own load). */
  cooldownMs: number;
}

/** Pulsar's defaults (loadBalancerNamespaceBundleMax*, loadBalancerNamespaceMaximumBundles). */
export const DEFAULT_SPLIT_OPTIONS: SplitOptions = {
  maxTopics: 1000, maxSessions: 1000, maxMsgRate: 30_000, maxBandwidthBytes: 100 * 1024 * 1024, maxBundlesPerNamespace: 128, cooldownMs: 60_000,
};

/** A namespace as the leader sees it. */
export interface NamespaceView {
  /** The stored policy, every field (a split must keep them all). */
  policy: BundlePolicy;
  /** The policy key's version, for the compare-and-swap write. */
  version: number;
  bundles: readonly BundleSpec[];
}

export interface SplitSnapshot {
  now: number;
  namespaces: ReadonlyMap<string, NamespaceView>;
  /** Live brokers with their last load report. */
  brokers: ReadonlyMap<string, BrokerView>;
  /** bundle id -> owning broker id. */
  owners: ReadonlyMap<string, string>;
}

export interface SplitAction {
  kind: 'split';
  namespace: string;
  bundle: string;
  /** Start of the bundle's range (the split point is the middle of the range). */
  start: number;
  /** The namespace policy's version the decision was made on. */
  expectedVersion: number;
  /** The limits the bundle exceeded, e.g. `msgRate 31000 > 30000`. */
  reasons: string[];
  load: BundleLoad;
}

/** The limits a bundle's load exceeds (empty: not hot). */
export function hotReasons(load: BundleLoad, options: SplitOptions): string[] {
  const checks: Array<[string, number, number]> = [
    ['topics', load.topics, options.maxTopics],
    ['sessions', load.producers + load.consumers, options.maxSessions],
    ['msgRate', load.msgRateIn + load.msgRateOut, options.maxMsgRate],
    ['bandwidthBytes', load.msgThroughputIn + load.msgThroughputOut, options.maxBandwidthBytes],
  ];
  return checks.filter(([, value, limit]) => limit > 0 && value > limit).map(([name, value, limit]) => `${name} ${round(value)} > ${limit}`);
}

/** How far over its worst limit a bundle is (1 = at the limit); orders candidates, hottest first. */
function heat(load: BundleLoad, options: SplitOptions): number {
  const ratio = (value: number, limit: number) => (limit > 0 ? value / limit : 0);
  return Math.max(
    ratio(load.topics, options.maxTopics), ratio(load.producers + load.consumers, options.maxSessions),
    ratio(load.msgRateIn + load.msgRateOut, options.maxMsgRate), ratio(load.msgThroughputIn + load.msgThroughputOut, options.maxBandwidthBytes),
  );
}

/**
 * One round of split decisions: per namespace at most one split, of its hottest bundle over any limit,
 * and only if
 * - the namespace's cooldown has passed (`lastSplitAt`, namespace -> time of its last split);
 * - it has fewer than `maxBundlesPerNamespace` bundles;
 * - every bundle of it is owned (nothing in flight, e.g. the halves of the last split);
 * - the load comes from the bundle's current owner's report, and the bundle has at least 2 topics
 *   (splitting cannot separate a single topic: a hot single topic needs partitions, not bundles);
 * - the range can still be halved.
 */
export function planSplits(snapshot: SplitSnapshot, options: SplitOptions, lastSplitAt: ReadonlyMap<string, number>): SplitAction[] {
  const loads = new Map<string, BundleLoad>();
  for (const broker of snapshot.brokers.values()) {
    for (const load of broker.load?.bundles ?? []) {
      if (snapshot.owners.get(load.bundle) === broker.id) loads.set(load.bundle, load);
    }
  }
  const actions: SplitAction[] = [];
  for (const [namespace, ns] of [...snapshot.namespaces].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (snapshot.now - (lastSplitAt.get(namespace) ?? Number.NEGATIVE_INFINITY) < options.cooldownMs) continue;
    if (ns.bundles.length >= options.maxBundlesPerNamespace) continue;
    if (!ns.bundles.every((b) => snapshot.owners.has(b.id))) continue;
    const candidates = ns.bundles
      .map((spec) => ({ spec, load: loads.get(spec.id) }))
      .filter((c): c is { spec: BundleSpec; load: BundleLoad } => c.load !== undefined && c.load.topics >= 2 && hotReasons(c.load, options).length > 0)
      .sort((x, y) => heat(y.load, options) - heat(x.load, options) || (x.spec.id < y.spec.id ? -1 : 1));
    for (const { spec, load } of candidates) {
      if (!splitBundlePolicy(namespace, ns.policy, spec.start, { maxBundles: options.maxBundlesPerNamespace })) continue;
      actions.push({ kind: 'split', namespace, bundle: spec.id, start: spec.start, expectedVersion: ns.version, reasons: hotReasons(load, options), load });
      break;
    }
  }
  return actions;
}

/**
 * Bundles not to assign yet: those whose hash range overlaps a bundle that is still owned under an id
 * that no longer exists (its namespace was just split and the old owner is still unloading it). Once
 * the old owner releases, the halves are assigned; so no topic is ever served by two owners of
 * overlapping ranges, and a split hands topics over like a graceful unload.
 */
export function heldBySplit(bundles: readonly BundleSpec[], owners: ReadonlyMap<string, string>): Set<string> {
  const held = new Set<string>();
  const existing = new Set(bundles.map((b) => b.id));
  const gone = [...owners.keys()].filter((id) => !existing.has(id)).map(parseBundleId).filter((b): b is BundleSpec => b !== undefined);
  if (gone.length === 0) return held;
  for (const b of bundles) {
    if (gone.some((g) => g.namespace === b.namespace && g.start < b.end && b.start < g.end)) held.add(b.id);
  }
  return held;
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
