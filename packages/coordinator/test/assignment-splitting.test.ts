import { describe, expect, test } from 'vitest';
import type { BrokerView } from '../src/assignment/placement.js';
import { coordinatorConfigSpec, splitOptionsOf, type CoordinatorConfig } from '../src/main.js';
import { namespaceBundles, splitBundlePolicy, type BundleLoad, type BundlePolicy, type LoadReport } from '../src/assignment/protocol.js';
import { DEFAULT_SPLIT_OPTIONS, heldBySplit, hotReasons, planSplits, type SplitOptions, type SplitSnapshot } from '../src/assignment/splitting.js';

const NOW = 1_000_000;
const LOW: SplitOptions = { maxTopics: 10, maxSessions: 10, maxMsgRate: 100, maxBandwidthBytes: 10_000, maxBundlesPerNamespace: 8, cooldownMs: 60_000 };

const quiet = (bundle: string, extra: Partial<BundleLoad> = {}): BundleLoad => ({
  bundle, topics: 2, producers: 1, consumers: 1, msgRateIn: 1, msgRateOut: 1, msgThroughputIn: 10, msgThroughputOut: 10, ...extra,
});

const report = (bundles: BundleLoad[]): LoadReport => ({
  seq: 1, atMs: NOW, cpuPercent: 0, memoryPercent: 0, memoryRssBytes: 0, msgRateIn: 0, msgRateOut: 0, bundleCount: bundles.length, bundles,
});

/** Namespace `ns` (policy given) owned entirely by broker `a`, which reports `loads`; `extra` namespaces likewise. */
function snapshot(policies: Record<string, BundlePolicy>, loads: BundleLoad[], options: { unowned?: string[]; reportedBy?: string } = {}): SplitSnapshot {
  const namespaces = new Map(Object.entries(policies).map(([ns, policy]) => [ns, { policy, version: 7, bundles: namespaceBundles(ns, policy) }]));
  const owners = new Map<string, string>();
  for (const ns of namespaces.values()) for (const b of ns.bundles) if (!options.unowned?.includes(b.id)) owners.set(b.id, 'a');
  const brokerId = options.reportedBy ?? 'a';
  const brokers = new Map<string, BrokerView>([[brokerId, { id: brokerId, url: `${brokerId}:6650`, draining: false, load: report(loads) }]]);
  return { now: NOW, namespaces, brokers, owners };
}

const b4 = namespaceBundles('t/ns', { bundles: 4 }).map((b) => b.id) as [string, string, string, string];

describe('hotReasons', () => {
  test('each limit counts on its own; in + out are summed; 0 turns a limit off', () => {
    expect(hotReasons(quiet('x'), LOW)).toEqual([]);
    expect(hotReasons(quiet('x', { topics: 11 }), LOW)).toEqual(['topics 11 > 10']);
    expect(hotReasons(quiet('x', { producers: 6, consumers: 5 }), LOW)).toEqual(['sessions 11 > 10']);
    expect(hotReasons(quiet('x', { msgRateIn: 60, msgRateOut: 41 }), LOW)).toEqual(['msgRate 101 > 100']);
    expect(hotReasons(quiet('x', { msgThroughputIn: 5_000, msgThroughputOut: 5_001 }), LOW)).toEqual(['bandwidthBytes 10001 > 10000']);
    expect(hotReasons(quiet('x', { msgRateIn: 99 }), LOW)).toEqual([]); // at the limit is not above it
    expect(hotReasons(quiet('x', { topics: 11_000 }), { ...LOW, maxTopics: 0 })).toEqual([]);
  });

  test('the defaults are Pulsar\'s', () => {
    expect(DEFAULT_SPLIT_OPTIONS).toMatchObject({ maxTopics: 1000, maxSessions: 1000, maxMsgRate: 30_000, maxBandwidthBytes: 100 * 1024 * 1024, maxBundlesPerNamespace: 128 });
  });
});

describe('planSplits', () => {
  test('a bundle above a limit is split at the middle of its range; quiet bundles are not', () => {
    const snap = snapshot({ 't/ns': { bundles: 4 } }, [quiet(b4[0]), quiet(b4[1], { msgRateIn: 500 }), quiet(b4[2])]);
    const actions = planSplits(snap, LOW, new Map());
    expect(actions).toEqual([expect.objectContaining({ kind: 'split', namespace: 't/ns', bundle: b4[1], start: 0x40000000, expectedVersion: 7, reasons: ['msgRate 501 > 100'] })]);
    const next = splitBundlePolicy('t/ns', { bundles: 4 }, actions[0]!.start)!;
    expect(next.bundleBoundaries).toEqual([0, 0x40000000, 0x60000000, 0x80000000, 0xc0000000, 0xffffffff]);
    expect(next.bundles).toBe(5);
    expect(planSplits(snapshot({ 't/ns': { bundles: 4 } }, b4.map((b) => quiet(b))), LOW, new Map())).toEqual([]);
  });

  test('one split per namespace per round: the hottest bundle (relative to its limit) goes first', () => {
    const snap = snapshot({ 't/ns': { bundles: 4 } }, [quiet(b4[0], { msgRateIn: 150 }), quiet(b4[2], { topics: 50 }), quiet(b4[3], { msgRateIn: 120 })]);
    const actions = planSplits(snap, LOW, new Map());
    expect(actions.map((a) => a.bundle)).toEqual([b4[2]]); // 50/10 beats 151/100 and 121/100
  });

  test('several namespaces can each split in the same round', () => {
    const other = namespaceBundles('t/other', { bundles: 2 }).map((b) => b.id);
    const snap = snapshot({ 't/ns': { bundles: 4 }, 't/other': { bundles: 2 } }, [quiet(b4[0], { topics: 20 }), quiet(other[1]!, { topics: 20 })]);
    expect(planSplits(snap, LOW, new Map()).map((a) => a.bundle).sort()).toEqual([other[1], b4[0]].sort());
  });

  test('cooldown per namespace', () => {
    const snap = snapshot({ 't/ns': { bundles: 4 } }, [quiet(b4[0], { topics: 20 })]);
    expect(planSplits(snap, LOW, new Map([['t/ns', NOW - 59_999]]))).toEqual([]);
    expect(planSplits(snap, LOW, new Map([['t/other', NOW]]))).toHaveLength(1);
    expect(planSplits(snap, LOW, new Map([['t/ns', NOW - 60_000]]))).toHaveLength(1);
  });

  test('never past maxBundlesPerNamespace, nor past a range that cannot be halved', () => {
    const at8 = { bundles: 8 };
    const ids8 = namespaceBundles('t/ns', at8).map((b) => b.id);
    expect(planSplits(snapshot({ 't/ns': at8 }, [quiet(ids8[0]!, { topics: 20 })]), LOW, new Map())).toEqual([]);
    expect(planSplits(snapshot({ 't/ns': at8 }, [quiet(ids8[0]!, { topics: 20 })]), { ...LOW, maxBundlesPerNamespace: 9 }, new Map())).toHaveLength(1);
    expect(splitBundlePolicy('t/ns', at8, 0, { maxBundles: 8 })).toBeUndefined();
    const tiny = { bundleBoundaries: [0, 1, 0xffffffff] };
    const tinyIds = namespaceBundles('t/ns', tiny).map((b) => b.id);
    const snap = snapshot({ 't/ns': tiny }, [quiet(tinyIds[0]!, { topics: 50 }), quiet(tinyIds[1]!, { topics: 20 })]);
    // [0, 1) cannot be halved: the next hottest bundle of the namespace is split instead.
    expect(planSplits(snap, LOW, new Map()).map((a) => a.bundle)).toEqual([tinyIds[1]]);
  });

  test('waits while a bundle of the namespace is unowned (halves of the last split on their way)', () => {
    const snap = snapshot({ 't/ns': { bundles: 4 } }, [quiet(b4[0], { topics: 20 })], { unowned: [b4[3]] });
    expect(planSplits(snap, LOW, new Map())).toEqual([]);
  });

  test('only the current owner\'s report counts; a single topic is never split', () => {
    expect(planSplits(snapshot({ 't/ns': { bundles: 4 } }, [quiet(b4[0], { topics: 20 })], { reportedBy: 'b' }), LOW, new Map())).toEqual([]);
    expect(planSplits(snapshot({ 't/ns': { bundles: 4 } }, [quiet(b4[0], { topics: 1, msgRateIn: 10_000 })]), LOW, new Map())).toEqual([]);
  });
});

describe('splitBundlePolicy', () => {
  test('keeps every other field of the policy; unknown start or malformed policy', () => {
    const policy = { bundles: 2, deduplicationEnabled: true, retentionTimeMinutes: 5 };
    expect(splitBundlePolicy('t/ns', policy, 0x80000000)).toEqual({
      // The last range includes 0xffffffff, so its middle is 0xbfffffff (as Pulsar splits it).
      bundles: 3, deduplicationEnabled: true, retentionTimeMinutes: 5, bundleBoundaries: [0, 0x80000000, 0xbfffffff, 0xffffffff],
    });
    expect(splitBundlePolicy('t/ns', policy, 0x1234)).toBeUndefined();
    expect(() => splitBundlePolicy('t/ns', { bundleBoundaries: [0, 5, 5, 0xffffffff] }, 0)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});

describe('heldBySplit', () => {
  test('halves wait while the old range is still owned under its old id; other bundles do not', () => {
    const after = namespaceBundles('t/ns', { bundleBoundaries: [0, 0x40000000, 0x60000000, 0x80000000, 0xc0000000, 0xffffffff] });
    const owners = new Map([[b4[1], 'a'], [b4[0], 'a'], ['t/other/0x00000000_0xffffffff', 'b']]);
    expect([...heldBySplit(after, owners)].sort()).toEqual(['t/ns/0x40000000_0x60000000', 't/ns/0x60000000_0x80000000']);
    expect(heldBySplit(after, new Map([[b4[0], 'a']]))).toEqual(new Set());
    // The last bundle's end is inclusive; a split of it holds both its halves, not its neighbour.
    const lastSplit = namespaceBundles('t/ns', { bundleBoundaries: [0, 0x40000000, 0x80000000, 0xc0000000, 0xdfffffff, 0xffffffff] });
    expect([...heldBySplit(lastSplit, new Map([[b4[3], 'a']]))].sort()).toEqual(['t/ns/0xc0000000_0xdfffffff', 't/ns/0xdfffffff_0xffffffff']);
  });
});

describe('coordinator config', () => {
  test('split settings map to SplitOptions (MiB/s to bytes/s); autoSplitEnabled false turns splitting off', () => {
    const defaults = Object.fromEntries(Object.entries(coordinatorConfigSpec).map(([k, f]) => [k, f.default])) as CoordinatorConfig;
    expect(splitOptionsOf(defaults)).toEqual(DEFAULT_SPLIT_OPTIONS);
    expect(splitOptionsOf({ ...defaults, splitMaxBandwidthMbytes: 0.5, splitMaxMsgRate: 50 })).toMatchObject({ maxBandwidthBytes: 512 * 1024, maxMsgRate: 50 });
    expect(splitOptionsOf({ ...defaults, autoSplitEnabled: false })).toBe(false);
  });
});
