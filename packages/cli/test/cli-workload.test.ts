import { describe, expect, it } from 'vitest';
import { UsageError } from '../src/commands/errors.js';
import { buildPayloads, parseWorkload } from '../src/commands/workload.js';

// The shape of OMB's published workload files (field names as in openmessaging/benchmark).
const OMB_ONE_TOPIC = `
name: one topic one partition 1 KB

topics: 1
partitionsPerTopic: 1
keyDistributor: "NO_KEY"
messageSize: 1024
payloadFile: "payload/payload-1Kb.data"
subscriptionsPerTopic: 1
consumerPerSubscription: 1
producersPerTopic: 1
producerRate: 50000
consumerBacklogSizeGB: 0
testDurationMinutes: 15
`;

describe('OMB workload files', () => {
  it('reads a published-style workload as is', () => {
    const w = parseWorkload(OMB_ONE_TOPIC);
    expect(w).toMatchObject({
      name: 'one topic one partition 1 KB', topics: 1, partitionsPerTopic: 1, keyDistributor: 'NO_KEY', messageSize: 1024,
      payloadFile: 'payload/payload-1Kb.data', subscriptionsPerTopic: 1, consumerPerSubscription: 1, producersPerTopic: 1,
      producerRate: 50000, consumerBacklogSizeGB: 0, testDurationMinutes: 15, warmupDurationMinutes: 1, useRandomizedPayloads: false,
    });
  });

  it('refuses a backlog workload with a clear error', () => {
    expect(() => parseWorkload(OMB_ONE_TOPIC.replace('consumerBacklogSizeGB: 0', 'consumerBacklogSizeGB: 64')))
      .toThrow(/consumerBacklogSizeGB > 0 .* not supported/);
  });

  it('refuses unknown fields instead of ignoring them', () => {
    expect(() => parseWorkload(`${OMB_ONE_TOPIC}\nproducerRat: 5\n`)).toThrow(/unknown field\(s\) 'producerRat'/);
  });

  it('names missing and mistyped fields', () => {
    expect(() => parseWorkload(OMB_ONE_TOPIC.replace('topics: 1\n', ''))).toThrow(/'topics' is required/);
    expect(() => parseWorkload(OMB_ONE_TOPIC.replace('messageSize: 1024', 'messageSize: big'))).toThrow(/'messageSize' must be an integer/);
    expect(() => parseWorkload(OMB_ONE_TOPIC.replace('"NO_KEY"', 'SOME_KEY'))).toThrow(/keyDistributor/);
    expect(() => parseWorkload(OMB_ONE_TOPIC.replace('testDurationMinutes: 15', ''))).toThrow(/testDurationMinutes' is required/);
    expect(() => parseWorkload('topics: [1')).toThrow(/not valid YAML/);
    expect(() => parseWorkload('- a\n- b')).toThrow(UsageError);
  });

  it('accepts fork fields only at their neutral value', () => {
    expect(parseWorkload(`${OMB_ONE_TOPIC}producerIncrementRate: 0\nwarmupDurationMinutes: 2\n`).warmupDurationMinutes).toBe(2);
    expect(() => parseWorkload(`${OMB_ONE_TOPIC}producerIncrementRate: 1000\n`)).toThrow(/producerIncrementRate' is not supported/);
  });

  it('builds payloads by OMB rules', () => {
    const w = parseWorkload(OMB_ONE_TOPIC);
    expect(buildPayloads(w, undefined)[0]?.length).toBe(1024);
    const file = Buffer.from('x'.repeat(1000));
    expect(buildPayloads(w, file)).toEqual([file]);
    const r = parseWorkload(`${OMB_ONE_TOPIC}useRandomizedPayloads: true\nrandomBytesRatio: 0.5\nrandomizedPayloadPoolSize: 3\n`);
    const pool = buildPayloads(r, undefined, () => 0.999);
    expect(pool).toHaveLength(3);
    expect(pool[0]?.[0]).toBe(255);
    expect(pool[0]?.[600]).toBe(0x61);
  });
});
