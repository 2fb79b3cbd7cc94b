import { describe, expect, it } from 'vitest';
import { Pacer, STAMP_BYTES, readStamp, stampPayload } from '../src/commands/pacing.js';
import {
  LatencyHistogram, PerfMeter, addOmbInterval, emptyOmbResult, finishOmbResult, formatInterval, formatOmbSummary, formatSummary,
} from '../src/commands/stats.js';
import { formatKeyValues, formatTable } from '../src/commands/table.js';
import { mergePolicies } from '../src/commands/admin.js';

describe('latency histogram', () => {
  it('reports percentiles in milliseconds from microsecond samples', () => {
    const h = new LatencyHistogram();
    for (let i = 1; i <= 1000; i++) h.recordMicros(i * 1000); // 1..1000 ms
    const s = h.summary();
    expect(s.count).toBe(1000);
    expect(s.p50Ms).toBeGreaterThan(495);
    expect(s.p50Ms).toBeLessThan(505);
    expect(s.p99Ms).toBeGreaterThan(985);
    expect(s.maxMs).toBeGreaterThanOrEqual(999);
    expect(h.distribution()).toContain('Percentile');
  });

  it('summarises an empty histogram as zeros', () => {
    expect(new LatencyHistogram().summary().p99Ms).toBe(0);
  });
});

describe('perf meter', () => {
  it('computes interval rates, backlog and a summary that excludes warm-up', () => {
    const m = new PerfMeter({ publish: true, consume: true, subscriptions: 1 }, 0);
    for (let i = 0; i < 100; i++) m.recordSend(1024, 2000); // warm-up sends
    m.restartTotals(1000);
    for (let i = 0; i < 1000; i++) m.recordSend(1024, 5000);
    for (let i = 0; i < 900; i++) m.recordReceive(1024, 8000);
    m.recordSendError();
    const r = m.takeInterval(2000);
    expect(r.publish?.messages).toBe(1100);
    expect(r.publish?.msgPerS).toBe(550);
    expect(r.consume?.messages).toBe(900);
    expect(r.backlog).toBe(200);
    expect(r.publish?.errors).toBe(1);
    const s = m.summary(2000);
    expect(s.durationS).toBe(1);
    expect(s.publish?.messages).toBe(1000);
    expect(s.publish?.msgPerS).toBe(1000);
    expect(s.publish?.mbPerS).toBeCloseTo(1000 / 1024, 3);
    expect(s.publish?.latency.p50Ms).toBeCloseTo(5, 1);
    expect(s.consume?.latency.p99Ms).toBeCloseTo(8, 1);
    // The next interval starts empty.
    expect(m.takeInterval(3000).publish?.messages).toBe(0);
  });

  it('leaves out the side it does not measure', () => {
    const m = new PerfMeter({ publish: false, consume: true, subscriptions: 1 }, 0);
    const r = m.takeInterval(1000);
    expect(r.publish).toBeUndefined();
    expect(r.backlog).toBeUndefined();
    expect(r.consume?.messages).toBe(0);
  });

  it('formats interval lines, the summary and the OMB result', () => {
    const m = new PerfMeter({ publish: true, consume: true, subscriptions: 1 }, 0);
    for (let i = 0; i < 10; i++) {
      m.recordSend(100, 1500);
      m.recordReceive(100, 2500);
    }
    const r = m.takeInterval(1000);
    const line = formatInterval(r);
    expect(line).toMatch(/produce\s+10\.0 msg\/s/);
    expect(line).toMatch(/publish latency ms p50 1\.50\d p99 1\.50\d p99\.9 1\.50\d max 1\.50\d/);
    expect(line).toMatch(/consume\s+10\.0 msg\/s/);
    const summary = formatSummary(m.summary(1000), { publish: m.publishHistogram(), endToEnd: m.endToEndHistogram() });
    expect(summary).toContain('HDR histogram (ms)');
    expect(summary).toContain('published (publish latency): 10 messages');

    const omb = emptyOmbResult({ workload: 'w', messageSize: 100, topics: 1, partitions: 1, producersPerTopic: 1, consumersPerTopic: 1 });
    addOmbInterval(omb, r);
    finishOmbResult(omb, m.summary(1000));
    expect(omb.publishRate).toEqual([10]);
    expect(omb.aggregatedPublishLatency50pct).toBeCloseTo(1.5, 2);
    expect(omb.aggregatedEndToEndLatency99pct).toBeCloseTo(2.5, 2);
    expect(formatOmbSummary(omb)).toMatch(/Aggregated Pub Latency \(ms\) avg: 1\.50\d - 50%: 1\.50\d/);
  });
});

describe('pacing and stamps', () => {
  it('spaces sends at the rate and bounds the catch-up burst', () => {
    const p = new Pacer(1000, 0, 5); // 1 ms apart
    expect(p.delayMs(0)).toBe(0);
    expect(p.delayMs(0)).toBeCloseTo(1);
    expect(p.delayMs(1)).toBe(0);
    // 100 ms late: at most 5 ms worth (6 sends incl. the one due now) go at once.
    let burst = 0;
    while (p.delayMs(101) === 0) burst++;
    expect(burst).toBe(6);
  });

  it('never delays at rate 0', () => {
    const p = new Pacer(0, 0);
    for (let i = 0; i < 10; i++) expect(p.delayMs(0)).toBe(0);
  });

  it('round-trips a send-time stamp and leaves the rest of the payload', () => {
    const payload = Buffer.alloc(64, 7);
    const stamped = stampPayload(payload, 1_700_000_000_123_456.5);
    expect(readStamp(stamped)).toBe(1_700_000_000_123_456.5);
    expect(stamped.subarray(STAMP_BYTES)).toEqual(payload.subarray(STAMP_BYTES));
    expect(payload[0]).toBe(7); // the pool payload is not changed
    expect(readStamp(payload)).toBeUndefined();
    const tiny = Buffer.from('hi');
    expect(stampPayload(tiny, 1)).toBe(tiny);
  });
});

describe('tables and policies', () => {
  it('aligns columns and right-aligns numbers', () => {
    const t = formatTable(['name', 'count'], [['a', 1], ['bbbb', 100]]);
    expect(t.split('\n')).toEqual(['NAME  COUNT', 'a         1', 'bbbb    100']);
    expect(formatKeyValues([['k', 'v'], ['longer', 2]])).toBe('k       v\nlonger  2');
  });

  it('changes only the policies given and checks quorums', () => {
    const current = {
      deduplicationEnabled: false, retentionTimeMinutes: 0, retentionSizeMb: 0, messageTtlSeconds: 0, bundles: 4,
      ensembleSize: 2, writeQuorum: 2, ackQuorum: 2, publishRateMsgsPerSecond: 0, publishRateBytesPerSecond: 0,
      subscriptionDispatchRateMsgsPerSecond: 0, subscriptionDispatchRateBytesPerSecond: 0,
      maxProducersPerTopic: 0, maxConsumersPerSubscription: 0, maxSubscriptionsPerTopic: 0,
      delayedDeliveryDisabled: false, maxDeliveryDelayMs: 0,
    };
    const next = mergePolicies(current, { retentionTimeMinutes: '-1', deduplication: 'true' });
    expect(next).toEqual({ ...current, retentionTimeMinutes: -1, deduplicationEnabled: true });
    expect(mergePolicies(current, { msgPublishRate: '500' })).toEqual({ ...current, publishRateMsgsPerSecond: 500 });
    expect(() => mergePolicies(current, { bytePublishRate: '-5' })).toThrow(/--byte-publish-rate must be >= 0/);
    expect(() => mergePolicies(current, {})).toThrow(/at least one policy/);
    expect(() => mergePolicies(current, { ackQuorum: '3' })).toThrow(/ensemble >= write quorum >= ack quorum/);
    expect(() => mergePolicies(current, { deduplication: 'yes' })).toThrow(/true or false/);
  });
});
