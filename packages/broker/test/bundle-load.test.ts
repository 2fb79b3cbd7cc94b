import { namespaceBundles } from '@strata/coordinator';
import { describe, expect, test } from 'vitest';
import { bundleLoads, type TopicLoad } from '../src/ownership/bundle-load.js';

const topic = (namespace: string, hash: number, extra: Partial<TopicLoad> = {}): TopicLoad => ({
  namespace, hash, producers: 1, consumers: 2, msgRateIn: 10, msgRateOut: 20, msgThroughputIn: 100, msgThroughputOut: 200, ...extra,
});

describe('bundleLoads', () => {
  const [b0, b1, b2, b3] = namespaceBundles('t/ns', { bundles: 4 });

  test('sums topics per owned bundle; topics of bundles not owned here are left out', () => {
    const loads = bundleLoads([b0!, b1!, b3!], [
      topic('t/ns', 0), topic('t/ns', 0x3fffffff), topic('t/ns', 0x40000000, { msgRateIn: 1 }), topic('t/ns', 0x80000000),
      topic('t/ns', 0xffffffff, { producers: 0, consumers: 0, msgRateIn: 0, msgRateOut: 0, msgThroughputIn: 0, msgThroughputOut: 0 }),
      topic('t/other', 0),
    ]);
    expect(loads).toEqual([
      { bundle: b0!.id, topics: 2, producers: 2, consumers: 4, msgRateIn: 20, msgRateOut: 40, msgThroughputIn: 200, msgThroughputOut: 400 },
      { bundle: b1!.id, topics: 1, producers: 1, consumers: 2, msgRateIn: 1, msgRateOut: 20, msgThroughputIn: 100, msgThroughputOut: 200 },
      { bundle: b3!.id, topics: 1, producers: 0, consumers: 0, msgRateIn: 0, msgRateOut: 0, msgThroughputIn: 0, msgThroughputOut: 0 },
    ]);
    expect(b2).toBeDefined();
  });

  test('bounded: busiest first, cut at the limit', () => {
    const owned = namespaceBundles('t/ns', { bundles: 64 });
    const topics = owned.map((b, i) => topic('t/ns', b.start, { msgRateIn: i }));
    const loads = bundleLoads(owned, topics, 5);
    expect(loads.map((l) => l.msgRateIn)).toEqual([63, 62, 61, 60, 59]);
  });
});
