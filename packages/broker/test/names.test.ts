import { describe, expect, it } from 'vitest';
import { bundleOf, computeBundles, formatRange, SingleBrokerOwnership } from '../src/ownership/bundles.js';
import { parseNamespace, topicHash, TopicName } from '../src/names.js';
import { PublishLimiter } from '../src/transport/producer-stream.js';
import { RateMeter } from '../src/topics/rate.js';
import { keyHashOf } from '../src/topics/subscription.js';

describe('topic names', () => {
  it('parses full, three-part and short names', () => {
    const full = TopicName.parse('persistent://acme/orders/created');
    expect([full.domain, full.tenant, full.namespace, full.localName, full.partitionIndex]).toEqual(['persistent', 'acme', 'orders', 'created', -1]);
    expect(full.toString()).toBe('persistent://acme/orders/created');
    expect(full.path).toBe('acme/orders/persistent/created');
    expect(TopicName.parse('my-topic').toString()).toBe('persistent://public/default/my-topic');
    expect(TopicName.parse('a/b/c').toString()).toBe('persistent://a/b/c');
    const np = TopicName.parse('non-persistent://a/b/c');
    expect(np.isPersistent).toBe(false);
    expect(np.path).toBe('a/b/non-persistent/c');
  });

  it('understands partitions', () => {
    const p = TopicName.parse('persistent://a/b/t-partition-12');
    expect(p.partitionIndex).toBe(12);
    expect(p.partitionedTopic.toString()).toBe('persistent://a/b/t');
    expect(TopicName.parse('a/b/t').partition(3).toString()).toBe('persistent://a/b/t-partition-3');
    // Leading zeros are not a partition suffix.
    expect(TopicName.parse('a/b/t-partition-01').partitionIndex).toBe(-1);
  });

  it.each([
    '', 'bogus://a/b/c', 'persistent://a/b', 'persistent://a/b/c/d', 'a/b', 'persistent://a//c', 'x y', 'persistent://a/b/c?',
    'persistent://../b/c', 'persistent://a/b/' + 'x'.repeat(256), 'persistent://a/b/-partition-1', 'persistent://t',
  ])('refuses %j with INVALID_ARGUMENT', (name) => {
    expect(() => TopicName.parse(name)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });

  it('validates namespaces', () => {
    expect(parseNamespace('public/default').name).toBe('public/default');
    for (const bad of ['public', 'a/b/c', '/x', 'a b/c']) expect(() => parseNamespace(bad)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});

describe('bundles', () => {
  it('splits the 32-bit space evenly and covers it', () => {
    const b = computeBundles('a/b', 4);
    expect(b.map(formatRange)).toEqual(['0x00000000_0x40000000', '0x40000000_0x80000000', '0x80000000_0xc0000000', '0xc0000000_0xffffffff']);
    expect(() => computeBundles('a/b', 0)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });

  it('places a topic by the CRC32C of its full name, partitions separately', () => {
    const t = TopicName.parse('persistent://a/b/t');
    const h = topicHash(t);
    expect(h).toBe(topicHash(TopicName.parse('a/b/t')));
    const bundle = bundleOf(t, 4);
    expect(h >= bundle.start && h <= bundle.end).toBe(true);
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 400; i++) {
      const r = bundleOf(t.partition(i), 4);
      counts[Math.round(r.start / 0x40000000)]!++;
    }
    for (const c of counts) expect(c).toBeGreaterThan(50);
  });

  it('the single-broker ownership view owns everything', async () => {
    const o = new SingleBrokerOwnership({ brokerId: 'b1', url: 'h:1' });
    expect(await o.ownerOf()).toEqual({ brokerId: 'b1', url: 'h:1', isMine: true });
  });

  it('key hashes fall in 0..65535', () => {
    for (const k of ['', 'a', 'key-1', 'ü']) expect(keyHashOf(k)).toBeGreaterThanOrEqual(0);
    expect(keyHashOf('x')).toBe(keyHashOf('x'));
  });
});

describe('limits and rates', () => {
  it('the publish limiter wakes waiters only below the limit', () => {
    const l = new PublishLimiter(2);
    l.acquire();
    l.acquire();
    expect(l.full()).toBe(true);
    let woken = 0;
    l.whenFree(() => woken++);
    l.acquire();
    l.release();
    expect(woken).toBe(0);
    l.release();
    expect(woken).toBe(1);
    expect(l.inFlight).toBe(1);
  });

  it('rate meter averages complete seconds of a 10 s window', () => {
    let now = 1_000_000;
    const r = new RateMeter({ now: () => now, monotonic: () => now });
    r.record(10, 100);
    now += 1000;
    r.record(20, 200);
    now += 1000;
    expect(r.rates()).toEqual({ msgRate: 15, byteRate: 150 });
    now += 60_000;
    expect(r.rates()).toEqual({ msgRate: 0, byteRate: 0 });
    expect(r.totalMsgs).toBe(30);
  });
});
