import { describe, expect, test } from 'vitest';
import { Random } from '@strata/runtime';
import {
  bundleCounts, chooseBroker, DEFAULT_PLACEMENT_OPTIONS, LoadShedder, planAssignments, type AssignmentView, type BrokerView,
  type ClusterSnapshot,
} from '../src/assignment/placement.js';
import { bundleForHash, equalBoundaries, namespaceBundles, parseBundleId, splitBoundaries } from '../src/assignment/protocol.js';
import type { LoadReport } from '../src/assignment/protocol.js';

const load = (cpuPercent: number, seq = 1, memoryPercent = 0): LoadReport => ({
  seq, atMs: 0, cpuPercent, memoryPercent, memoryRssBytes: 0, msgRateIn: 0, msgRateOut: 0, bundleCount: 0,
});
const broker = (id: string, cpu = 0, extra: Partial<BrokerView> = {}): [string, BrokerView] => [id, { id, url: `${id}:6650`, draining: false, load: load(cpu), ...extra }];

function snapshot(partial: Partial<ClusterSnapshot>): ClusterSnapshot {
  return { now: 100_000, bundles: [], brokers: new Map(), owners: new Map(), assignments: new Map(), ...partial };
}

const bundles = namespaceBundles('t/ns', { bundles: 8 }).map((b) => b.id);

describe('bundle math', () => {
  test('equal ranges cover the hash space; a hash maps to exactly one bundle', () => {
    const specs = namespaceBundles('t/ns', { bundles: 4 });
    expect(specs.map((s) => s.id)).toEqual([
      't/ns/0x00000000_0x40000000', 't/ns/0x40000000_0x80000000', 't/ns/0x80000000_0xc0000000', 't/ns/0xc0000000_0xffffffff',
    ]);
    expect(bundleForHash(specs, 0)?.start).toBe(0);
    expect(bundleForHash(specs, 0x3fffffff)?.start).toBe(0);
    expect(bundleForHash(specs, 0x40000000)?.start).toBe(0x40000000);
    expect(bundleForHash(specs, 0xffffffff)?.start).toBe(0xc0000000);
  });

  test('a split halves one range and keeps the others; explicit boundaries win over the count', () => {
    const split = splitBoundaries(equalBoundaries(4), 0x40000000)!;
    expect(split).toEqual([0, 0x40000000, 0x60000000, 0x80000000, 0xc0000000, 0xffffffff]);
    const specs = namespaceBundles('t/ns', { bundles: 4, bundleBoundaries: split });
    expect(specs).toHaveLength(5);
    expect(bundleForHash(specs, 0x5fffffff)?.end).toBe(0x60000000);
    expect(bundleForHash(specs, 0x60000000)?.start).toBe(0x60000000);
    expect(splitBoundaries([0, 1, 0xffffffff], 0)).toBeUndefined();
  });

  test('a bundle id parses back to its spec; other shapes do not', () => {
    for (const spec of namespaceBundles('t/ns', { bundles: 4 })) expect(parseBundleId(spec.id)).toEqual(spec);
    expect(parseBundleId('t/ns/0x40000000_0x00000000')).toBeUndefined();
    expect(parseBundleId('t/0x00000000_0x40000000')).toBeUndefined();
    expect(parseBundleId('t/ns/0x0_0x40000000')).toBeUndefined();
  });

  test('malformed policies are typed errors', () => {
    expect(() => namespaceBundles('t/ns', { bundles: 0 })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => namespaceBundles('t/ns', { bundleBoundaries: [0, 5, 5, 0xffffffff] })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => namespaceBundles('t/ns', { bundleBoundaries: [1, 0xffffffff] })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});

describe('chooseBroker', () => {
  test('least loaded wins; within the slack band the fewest bundles win; draining brokers never', () => {
    const brokers = new Map([broker('a', 50), broker('b', 5), broker('c', 12), broker('d', 0, { draining: true })]);
    const counts = new Map([['a', 0], ['b', 3], ['c', 1], ['d', 0]]);
    expect(chooseBroker(brokers, counts, { loadSlackPercent: 10 }, new Random(1))).toBe('c');
    expect(chooseBroker(brokers, counts, { loadSlackPercent: 1 }, new Random(1))).toBe('b');
  });

  test('ties are broken by the seeded random, reproducibly', () => {
    const brokers = new Map([broker('a'), broker('b'), broker('c')]);
    const counts = new Map([['a', 0], ['b', 0], ['c', 0]]);
    const picks = (seed: number) => Array.from({ length: 20 }, (_, i) => chooseBroker(brokers, counts, { loadSlackPercent: 10 }, new Random(seed + i)));
    expect(picks(5)).toEqual(picks(5));
    expect(new Set(picks(5)).size).toBe(3);
  });

  test('excluded brokers are used only when nothing else is left', () => {
    expect(chooseBroker(new Map([broker('a'), broker('b', 90)]), new Map(), { loadSlackPercent: 10 }, new Random(1), new Set(['a']))).toBe('b');
    expect(chooseBroker(new Map([broker('a')]), new Map(), { loadSlackPercent: 10 }, new Random(1), new Set(['a']))).toBe('a');
    expect(chooseBroker(new Map(), new Map(), { loadSlackPercent: 10 }, new Random(1))).toBeUndefined();
  });
});

describe('planAssignments', () => {
  test('every unowned bundle is assigned, spread evenly over equally loaded brokers', () => {
    const actions = planAssignments(snapshot({ bundles, brokers: new Map([broker('a'), broker('b')]) }), DEFAULT_PLACEMENT_OPTIONS, new Random(3));
    expect(actions).toHaveLength(8);
    expect(actions.every((a) => a.kind === 'assign' && a.expectedVersion === 0 && a.reason === 'unowned')).toBe(true);
    const per = new Map<string, number>();
    for (const a of actions) if (a.kind === 'assign') per.set(a.brokerId, (per.get(a.brokerId) ?? 0) + 1);
    expect(per).toEqual(new Map([['a', 4], ['b', 4]]));
  });

  test('owned bundles and bundles on their way to a live broker are left alone', () => {
    const owners = new Map(bundles.slice(0, 4).map((b) => [b, 'a']));
    const assignments = new Map<string, AssignmentView>(bundles.slice(4).map((b) => [b, { brokerId: 'b', atMs: 99_000, version: 1 }]));
    expect(planAssignments(snapshot({ bundles, brokers: new Map([broker('a'), broker('b')]), owners, assignments }), DEFAULT_PLACEMENT_OPTIONS, new Random(3))).toEqual([]);
  });

  test('bundles of a dead broker (its session ended: no owner, assignment to a broker not live) go to live ones at once', () => {
    const assignments = new Map<string, AssignmentView>(bundles.map((b) => [b, { brokerId: 'dead', atMs: 99_999, version: 2 }]));
    const owners = new Map(bundles.slice(0, 2).map((b) => [b, 'a']));
    const actions = planAssignments(snapshot({ bundles, brokers: new Map([broker('a'), broker('b')]), owners, assignments }), DEFAULT_PLACEMENT_OPTIONS, new Random(3));
    // Two are owned by a (their assignment to a dead broker is cancelled back to a); six go out, mostly to b.
    const assigns = actions.filter((a) => a.kind === 'assign');
    expect(assigns.filter((a) => a.kind === 'assign' && a.reason === 'unowned')).toHaveLength(6);
    expect(assigns.every((a) => a.expectedVersion === 2)).toBe(true);
    const final = bundleCounts(snapshot({
      bundles, brokers: new Map([broker('a'), broker('b')]), owners,
      assignments: new Map(assigns.map((a) => [a.bundle, { brokerId: (a as { brokerId: string }).brokerId, atMs: 0, version: 3 }])),
    }));
    expect(final).toEqual(new Map([['a', 4], ['b', 4]]));
  });

  test('an assignment not taken up within the timeout goes to another broker', () => {
    const assignments = new Map<string, AssignmentView>([[bundles[0]!, { brokerId: 'a', atMs: 100_000 - 10_000, version: 4 }]]);
    const owners = new Map(bundles.slice(1).map((b) => [b, 'b']));
    const actions = planAssignments(snapshot({ bundles, brokers: new Map([broker('a'), broker('b')]), owners, assignments }), DEFAULT_PLACEMENT_OPTIONS, new Random(3));
    expect(actions).toEqual([{ kind: 'assign', bundle: bundles[0], brokerId: 'b', reason: 'timeout', expectedVersion: 4 }]);
  });

  test('no live broker: nothing to do; assignments of bundles that no longer exist are removed', () => {
    const assignments = new Map<string, AssignmentView>([['gone/ns/0x00000000_0xffffffff', { brokerId: 'a', atMs: 0, version: 7 }]]);
    expect(planAssignments(snapshot({ bundles, assignments }), DEFAULT_PLACEMENT_OPTIONS, new Random(3))).toEqual([
      { kind: 'unassign', bundle: 'gone/ns/0x00000000_0xffffffff', expectedVersion: 7 },
    ]);
  });

  test('at most maxActionsPerRound writes per round', () => {
    const actions = planAssignments(snapshot({ bundles, brokers: new Map([broker('a')]) }), { ...DEFAULT_PLACEMENT_OPTIONS, maxActionsPerRound: 3 }, new Random(3));
    expect(actions).toHaveLength(3);
  });
});

describe('LoadShedder', () => {
  const options = { thresholdPercent: 20, consecutiveReports: 3, cooldownMs: 60_000 };
  const owners = new Map(bundles.map((b, i) => [b, i < 6 ? 'hot' : 'cool']));
  const at = (now: number, hotCpu: number, seq: number) => snapshot({
    now, bundles, owners,
    brokers: new Map([
      ['hot', { id: 'hot', url: 'hot:1', draining: false, load: load(hotCpu, seq) }],
      ['cool', { id: 'cool', url: 'cool:1', draining: false, load: load(10, seq) }],
      ['warm', { id: 'warm', url: 'warm:1', draining: false, load: load(30, seq) }],
    ]),
  });

  test('moves one bundle only after N consecutive overloaded reports, then waits for the cooldown', () => {
    const shedder = new LoadShedder(options, new Random(9));
    const s1 = at(0, 90, 1);
    shedder.observe(s1.brokers);
    expect(shedder.plan(s1, DEFAULT_PLACEMENT_OPTIONS)).toBeUndefined();
    // The same report seen again does not count twice.
    shedder.observe(s1.brokers);
    expect(shedder.plan(s1, DEFAULT_PLACEMENT_OPTIONS)).toBeUndefined();
    const s2 = at(1000, 90, 2);
    shedder.observe(s2.brokers);
    expect(shedder.plan(s2, DEFAULT_PLACEMENT_OPTIONS)).toBeUndefined();
    const s3 = at(2000, 90, 3);
    shedder.observe(s3.brokers);
    const move = shedder.plan(s3, DEFAULT_PLACEMENT_OPTIONS);
    expect(move).toMatchObject({ kind: 'assign', brokerId: 'cool', reason: 'shed' });
    expect(owners.get((move as { bundle: string }).bundle)).toBe('hot');
    for (let seq = 4; seq < 10; seq++) {
      const s = at(2000 + seq * 1000, 90, seq);
      shedder.observe(s.brokers);
      expect(shedder.plan(s, DEFAULT_PLACEMENT_OPTIONS)).toBeUndefined();
    }
    const later = at(70_000, 90, 10);
    shedder.observe(later.brokers);
    expect(shedder.plan(later, DEFAULT_PLACEMENT_OPTIONS)).toMatchObject({ brokerId: 'cool', reason: 'shed' });
  });

  test('hysteresis: a report back under the threshold resets the count', () => {
    const shedder = new LoadShedder(options, new Random(9));
    for (const [seq, cpu] of [[1, 90], [2, 90], [3, 40], [4, 90], [5, 90]] as const) {
      const s = at(seq * 1000, cpu, seq);
      shedder.observe(s.brokers);
      expect(shedder.plan(s, DEFAULT_PLACEMENT_OPTIONS)).toBeUndefined();
    }
  });

  test('no move while another move is in flight', () => {
    const shedder = new LoadShedder(options, new Random(9));
    const inFlight = new Map<string, AssignmentView>([[bundles[0]!, { brokerId: 'cool', atMs: 0, version: 1 }]]);
    for (let seq = 1; seq <= 4; seq++) {
      const s = { ...at(seq * 1000, 90, seq), assignments: inFlight };
      shedder.observe(s.brokers);
      expect(shedder.plan(s, DEFAULT_PLACEMENT_OPTIONS)).toBeUndefined();
    }
  });
});
