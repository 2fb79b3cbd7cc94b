// Subscription types, acks, nacks, seek and DLQ against a real `strata standalone` process.
import { describe, expect, it } from 'vitest';
import { MessageId, type Consumer } from '../src/index.js';
import { takeUntilTimeout, unique, useStandalone } from './e2e-helpers.js';

const env = useStandalone();

const drain = (c: Consumer, timeoutMs?: number) => takeUntilTimeout((t) => c.receive(t), timeoutMs);

describe('subscription types', () => {
  it('Exclusive refuses a second consumer with ConsumerBusy', async () => {
    const topic = unique();
    const c1 = await env.client.subscribe({ topic, subscription: 'ex', subscriptionType: 'Exclusive' });
    await expect(env.client.subscribe({ topic, subscription: 'ex', subscriptionType: 'Exclusive' }))
      .rejects.toMatchObject({ code: 'CONSUMER_BUSY', message: expect.stringMatching(/^Failed to create consumer: ConsumerBusy/) });
    await c1.close();
  });

  it('Shared spreads messages over consumers; together they get everything once acked', async () => {
    const topic = unique();
    const c1 = await env.client.subscribe({ topic, subscription: 'sh', subscriptionType: 'Shared', receiverQueueSize: 2 });
    const c2 = await env.client.subscribe({ topic, subscription: 'sh', subscriptionType: 'Shared', receiverQueueSize: 2 });
    const producer = await env.client.createProducer({ topic, batchingEnabled: false });
    await Promise.all(Array.from({ length: 40 }, (_, i) => producer.send({ data: Buffer.from(String(i)) })));
    const seen = new Map<string, number>();
    const counts = await Promise.all([c1, c2].map(async (c) => {
      let mine = 0;
      for (const m of await drain(c, 500)) {
        seen.set(m.getData().toString(), (seen.get(m.getData().toString()) ?? 0) + 1);
        mine++;
        await c.acknowledge(m);
      }
      return mine;
    }));
    expect(seen.size).toBe(40);
    expect([...seen.values()].every((n) => n === 1)).toBe(true);
    expect(counts.every((n) => n > 0)).toBe(true);
    await Promise.all([c1.close(), c2.close(), producer.close()]);
  });

  it('Failover gives everything to one active consumer', async () => {
    const topic = unique();
    const c1 = await env.client.subscribe({ topic, subscription: 'fo', subscriptionType: 'Failover', consumerName: 'a' });
    const c2 = await env.client.subscribe({ topic, subscription: 'fo', subscriptionType: 'Failover', consumerName: 'b' });
    const producer = await env.client.createProducer({ topic });
    await Promise.all(Array.from({ length: 10 }, (_, i) => producer.send({ data: Buffer.from(String(i)) })));
    const [g1, g2] = await Promise.all([drain(c1), drain(c2)]);
    expect([g1.length, g2.length].sort()).toEqual([0, 10]);
    await Promise.all([c1.close(), c2.close(), producer.close()]);
  });

  it.each([
    ['without batching', { batchingEnabled: false }],
    ['with key-based batching', { batchingType: 'KeyBasedBatching' as const, batchingMaxPublishDelayMs: 20 }],
  ])('KeyShared keeps each key on one consumer, in order (%s)', async (_name, producerOptions) => {
    const topic = unique();
    const c1 = await env.client.subscribe({ topic, subscription: 'ks', subscriptionType: 'KeyShared' });
    const c2 = await env.client.subscribe({ topic, subscription: 'ks', subscriptionType: 'KeyShared' });
    const producer = await env.client.createProducer({ topic, ...producerOptions });
    await Promise.all(Array.from({ length: 60 }, (_, i) => producer.send({ data: Buffer.from(String(i)), partitionKey: `key-${i % 6}` })));
    const owner = new Map<string, number>();
    const lastByKey = new Map<string, number>();
    let total = 0;
    await Promise.all([c1, c2].map(async (c, idx) => {
      for (const m of await drain(c, 500)) {
        const key = m.getPartitionKey();
        expect(owner.get(key) ?? idx).toBe(idx);
        owner.set(key, idx);
        const n = Number(m.getData().toString());
        expect(n).toBeGreaterThan(lastByKey.get(key) ?? -1);
        lastByKey.set(key, n);
        total++;
        await c.acknowledge(m);
      }
    }));
    expect(total).toBe(60);
    await Promise.all([c1.close(), c2.close(), producer.close()]);
  });
});

describe('producer access modes', () => {
  it('Exclusive refuses a second producer; ExclusiveWithFencing takes over', async () => {
    const topic = unique();
    const first = await env.client.createProducer({ topic, accessMode: 'Exclusive' });
    await expect(env.client.createProducer({ topic, accessMode: 'Exclusive' })).rejects.toMatchObject({ message: expect.stringMatching(/^Failed to create producer: /) });
    await expect(env.client.createProducer({ topic })).rejects.toThrow(/^Failed to create producer: /);
    const fencing = await env.client.createProducer({ topic, accessMode: 'ExclusiveWithFencing' });
    await fencing.send({ data: Buffer.from('mine') });
    await Promise.all([first.close(), fencing.close()]);
  });
});

describe('acknowledgement', () => {
  it('unacked messages come back to the next consumer with a redelivery count; acked ones do not', async () => {
    const topic = unique();
    const producer = await env.client.createProducer({ topic });
    const c1 = await env.client.subscribe({ topic, subscription: 'redeliver', subscriptionType: 'Shared' });
    await Promise.all([0, 1, 2, 3].map((i) => producer.send({ data: Buffer.from(String(i)) })));
    const got = [await c1.receive(3000), await c1.receive(3000), await c1.receive(3000), await c1.receive(3000)];
    // The four messages share one batch: acking three of them must not ack the entry.
    await c1.acknowledge(got[0]!);
    await c1.acknowledge(got[1]!);
    await c1.acknowledge(got[3]!);
    await c1.close();
    const c2 = await env.client.subscribe({ topic, subscription: 'redeliver', subscriptionType: 'Shared' });
    const again = await drain(c2, 500);
    expect(again.map((m) => m.getData().toString())).toEqual(['0', '1', '2', '3']);
    expect(again[0]!.getRedeliveryCount()).toBeGreaterThanOrEqual(1);
    for (const m of again) await c2.acknowledge(m);
    await c2.close();
    const c3 = await env.client.subscribe({ topic, subscription: 'redeliver', subscriptionType: 'Shared' });
    expect(await drain(c3, 300)).toEqual([]);
    await Promise.all([c3.close(), producer.close()]);
  });

  it('cumulative ack acks everything up to the message', async () => {
    const topic = unique();
    const producer = await env.client.createProducer({ topic, batchingEnabled: false });
    const c = await env.client.subscribe({ topic, subscription: 'cum' });
    for (let i = 0; i < 5; i++) await producer.send({ data: Buffer.from(String(i)) });
    const got = await drain(c);
    await c.acknowledgeCumulative(got[2]!);
    await c.close();
    const again = await env.client.subscribe({ topic, subscription: 'cum' });
    expect((await drain(again)).map((m) => m.getData().toString())).toEqual(['3', '4']);
    await Promise.all([again.close(), producer.close()]);
  });

  it('a negatively acknowledged message is redelivered after nAckRedeliverTimeoutMs', async () => {
    const topic = unique();
    const producer = await env.client.createProducer({ topic });
    const c = await env.client.subscribe({ topic, subscription: 'nack', subscriptionType: 'Shared', nAckRedeliverTimeoutMs: 100 });
    await producer.send({ data: Buffer.from('again') });
    const first = await c.receive(3000);
    c.negativeAcknowledge(first);
    const second = await c.receive(3000);
    expect(second.getData().toString()).toBe('again');
    expect(second.getRedeliveryCount()).toBe(1);
    await c.acknowledge(second);
    await Promise.all([c.close(), producer.close()]);
  });

  it('dead-letters a message after maxRedeliverCount and acks it on the original subscription', async () => {
    const topic = unique();
    const dlqTopic = `${topic}-dead`;
    const dlqConsumer = await env.client.subscribe({ topic: dlqTopic, subscription: 'inspect', subscriptionInitialPosition: 'Earliest' });
    const c = await env.client.subscribe({
      topic, subscription: 'dlq', subscriptionType: 'Shared', nAckRedeliverTimeoutMs: 50,
      deadLetterPolicy: { deadLetterTopic: dlqTopic, maxRedeliverCount: 2 },
    });
    const producer = await env.client.createProducer({ topic });
    await producer.send({ data: Buffer.from('poison'), properties: { a: 'b' } });
    const counts: number[] = [];
    for (let i = 0; i < 3; i++) {
      const m = await c.receive(3000);
      counts.push(m.getRedeliveryCount());
      c.negativeAcknowledge(m);
    }
    expect(counts).toEqual([0, 1, 2]);
    const dead = await dlqConsumer.receive(5000);
    expect(dead.getData().toString()).toBe('poison');
    expect(dead.getProperties()).toMatchObject({ a: 'b', REAL_TOPIC: `persistent://public/default/${topic}` });
    await expect(c.receive(500)).rejects.toThrow(/TimeOut/);
    await c.close();
    // Acked on the original subscription: a new consumer gets nothing.
    const again = await env.client.subscribe({ topic, subscription: 'dlq', subscriptionType: 'Shared' });
    expect(await drain(again, 300)).toEqual([]);
    await Promise.all([again.close(), dlqConsumer.close(), producer.close()]);
  });
});

describe('position', () => {
  it('seek to a message id and to a timestamp replays from there', async () => {
    const topic = unique();
    const producer = await env.client.createProducer({ topic, batchingEnabled: false });
    const c = await env.client.subscribe({ topic, subscription: 'seek', subscriptionInitialPosition: 'Earliest' });
    const ids: MessageId[] = [];
    for (let i = 0; i < 5; i++) ids.push(await producer.send({ data: Buffer.from(String(i)) }));
    for (const m of await drain(c)) await c.acknowledge(m);
    await c.seek(MessageId.deserialize(ids[2]!.serialize()));
    const after = await drain(c);
    // As pulsar-client: the message after the id comes next.
    expect(after.map((m) => m.getData().toString())).toEqual(['3', '4']);
    await c.seekTimestamp(0);
    expect((await drain(c)).map((m) => m.getData().toString())).toEqual(['0', '1', '2', '3', '4']);
    await Promise.all([c.close(), producer.close()]);
  });

  it('unsubscribe removes the subscription', async () => {
    const topic = unique();
    const producer = await env.client.createProducer({ topic });
    const c = await env.client.subscribe({ topic, subscription: 'gone' });
    await producer.send({ data: Buffer.from('1') });
    await c.unsubscribe();
    expect(c.isConnected()).toBe(false);
    await producer.send({ data: Buffer.from('2') });
    const fresh = await env.client.subscribe({ topic, subscription: 'gone' });
    expect(await drain(fresh)).toEqual([]); // a new subscription starts at Latest
    await Promise.all([fresh.close(), producer.close()]);
  });

  it('topics lists several topics in one consumer and for-await reads them', async () => {
    const [a, b] = [unique(), unique()];
    const c = await env.client.subscribe({ topics: [a, b], subscription: 'multi' });
    const pa = await env.client.createProducer({ topic: a });
    const pb = await env.client.createProducer({ topic: b });
    await Promise.all([pa.send({ data: Buffer.from('a') }), pb.send({ data: Buffer.from('b') })]);
    const got: string[] = [];
    for await (const m of c) {
      got.push(`${m.getTopicName().split('/').pop()}:${m.getData().toString()}`);
      await c.acknowledge(m);
      if (got.length === 2) break;
    }
    expect(got.sort()).toEqual([`${a}:a`, `${b}:b`].sort());
    await Promise.all([c.close(), pa.close(), pb.close()]);
  });

  it('topicsPattern subscribes to matching topics and discovers new ones', async () => {
    const prefix = unique('pat');
    const p1 = await env.client.createProducer({ topic: `${prefix}-one` });
    const c = await env.client.subscribe({ topicsPattern: `persistent://public/default/${prefix}-.*`, subscription: 'pat', patternAutoDiscoveryPeriodMs: 200, subscriptionInitialPosition: 'Earliest' });
    await p1.send({ data: Buffer.from('one') });
    expect((await c.receive(3000)).getData().toString()).toBe('one');
    const p2 = await env.client.createProducer({ topic: `${prefix}-two` });
    await p2.send({ data: Buffer.from('two') });
    expect((await c.receive(5000)).getData().toString()).toBe('two');
    await Promise.all([c.close(), p1.close(), p2.close()]);
  });
});
