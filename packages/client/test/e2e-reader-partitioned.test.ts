// Readers and partitioned topics against a real `strata standalone` process.
import { describe, expect, it } from 'vitest';
import { MessageId, partitionForKey, type Reader } from '../src/index.js';
import { createPartitionedTopic, takeUntilTimeout, unique, useStandalone } from './e2e-helpers.js';

const env = useStandalone();

const readAll = (r: Reader, timeoutMs?: number) => takeUntilTimeout((t) => r.readNext(t), timeoutMs);

describe('Reader', () => {
  it('reads from earliest, latest, or after a stored id; hasNext tells whether more exists', async () => {
    const topic = unique();
    const producer = await env.client.createProducer({ topic, batchingEnabled: false });
    const ids: MessageId[] = [];
    for (let i = 0; i < 5; i++) ids.push(await producer.send({ data: Buffer.from(String(i)) }));

    const fromStart = await env.client.createReader({ topic, startMessageId: MessageId.earliest() });
    expect(fromStart.hasNext()).toBe(true);
    expect((await readAll(fromStart)).map((m) => m.getData().toString())).toEqual(['0', '1', '2', '3', '4']);
    expect(await fromStart.hasMessageAvailable()).toBe(false);
    expect(fromStart.hasNext()).toBe(false);

    const stored = MessageId.deserialize(ids[1]!.serialize());
    const afterId = await env.client.createReader({ topic, startMessageId: stored });
    expect((await readAll(afterId)).map((m) => m.getData().toString())).toEqual(['2', '3', '4']);

    const fromEnd = await env.client.createReader({ topic, startMessageId: MessageId.latest() });
    expect(await fromEnd.hasMessageAvailable()).toBe(false);
    await producer.send({ data: Buffer.from('new') });
    expect((await fromEnd.readNext(3000)).getData().toString()).toBe('new');

    await fromStart.seek(MessageId.earliest());
    expect((await fromStart.readNext(3000)).getData().toString()).toBe('0');
    await expect(fromEnd.readNext(100)).rejects.toThrow('Failed to receive message: TimeOut');
    await Promise.all([fromStart.close(), afterId.close(), fromEnd.close(), producer.close()]);
  });

  it('for-await over a reader', async () => {
    const topic = unique();
    const producer = await env.client.createProducer({ topic });
    await Promise.all(['a', 'b'].map((d) => producer.send({ data: Buffer.from(d) })));
    const reader = await env.client.createReader({ topic, startMessageId: MessageId.earliest() });
    const got: string[] = [];
    for await (const m of reader) {
      got.push(m.getData().toString());
      if (got.length === 2) break;
    }
    expect(got).toEqual(['a', 'b']);
    await Promise.all([reader.close(), producer.close()]);
  });
});

describe('partitioned topics', () => {
  it('getPartitionsForTopic lists the partitions', async () => {
    const topic = `persistent://public/default/${unique()}`;
    await createPartitionedTopic(env.standalone.address, topic, 3);
    expect(await env.client.getPartitionsForTopic(topic)).toEqual([0, 1, 2].map((i) => `${topic}-partition-${i}`));
    const plain = unique();
    expect(await env.client.getPartitionsForTopic(plain)).toEqual([`persistent://public/default/${plain}`]);
  });

  it('keyed messages go to the hash partition (JavaStringHash and Murmur3_32Hash), order per key kept', async () => {
    for (const hashingScheme of ['JavaStringHash', 'Murmur3_32Hash'] as const) {
      const topic = `persistent://public/default/${unique()}`;
      await createPartitionedTopic(env.standalone.address, topic, 4);
      const consumer = await env.client.subscribe({ topic, subscription: 's', subscriptionType: 'Shared' });
      const producer = await env.client.createProducer({ topic, hashingScheme, batchingMaxPublishDelayMs: 5 });
      const ids = await Promise.all(Array.from({ length: 40 }, (_, i) => producer.send({ data: Buffer.from(String(i)), partitionKey: `key-${i % 8}` })));
      ids.forEach((id, i) => expect(id.partition).toBe(partitionForKey(hashingScheme, `key-${i % 8}`, 4)));
      const last = new Map<string, number>();
      for (let i = 0; i < 40; i++) {
        const m = await consumer.receive(3000);
        const key = m.getPartitionKey();
        expect(m.getTopicName()).toBe(`${topic}-partition-${partitionForKey(hashingScheme, key, 4)}`);
        expect(Number(m.getData().toString())).toBeGreaterThan(last.get(key) ?? -1);
        last.set(key, Number(m.getData().toString()));
        await consumer.acknowledge(m);
      }
      await Promise.all([consumer.close(), producer.close()]);
    }
  });

  it('RoundRobinDistribution spreads unkeyed messages; CustomPartition uses the router', async () => {
    const topic = `persistent://public/default/${unique()}`;
    await createPartitionedTopic(env.standalone.address, topic, 3);
    const rr = await env.client.createProducer({ topic, messageRoutingMode: 'RoundRobinDistribution', batchingEnabled: false });
    const rrIds = await Promise.all(Array.from({ length: 9 }, (_, i) => rr.send({ data: Buffer.from(String(i)) })));
    expect(new Set(rrIds.map((id) => id.partition))).toEqual(new Set([0, 1, 2]));
    const custom = await env.client.createProducer({
      topic, messageRoutingMode: 'CustomPartition',
      messageRouter: (message, meta) => Number(message.getProperties().target) % meta.numPartitions,
    });
    const id = await custom.send({ data: Buffer.from('x'), properties: { target: '5' } });
    expect(id.partition).toBe(2);
    const bad = await env.client.createProducer({ topic, messageRoutingMode: 'CustomPartition', messageRouter: () => 7 });
    await expect(bad.send({ data: Buffer.from('x') })).rejects.toThrow(/messageRouter returned 7/);
    const single = await env.client.createProducer({ topic, messageRoutingMode: 'UseSinglePartition', batchingEnabled: false });
    const singleIds = await Promise.all(Array.from({ length: 6 }, () => single.send({ data: Buffer.from('s') })));
    expect(new Set(singleIds.map((i) => i.partition)).size).toBe(1);
    await Promise.all([rr.close(), custom.close(), bad.close(), single.close()]);
  });

  it('a reader reads every partition of a partitioned topic', async () => {
    const topic = `persistent://public/default/${unique()}`;
    await createPartitionedTopic(env.standalone.address, topic, 2);
    const producer = await env.client.createProducer({ topic, messageRoutingMode: 'RoundRobinDistribution', batchingEnabled: false });
    await Promise.all(Array.from({ length: 6 }, (_, i) => producer.send({ data: Buffer.from(String(i)) })));
    const reader = await env.client.createReader({ topic, startMessageId: MessageId.earliest() });
    const got = await readAll(reader);
    expect(got.map((m) => m.getData().toString()).sort()).toEqual(['0', '1', '2', '3', '4', '5']);
    await Promise.all([reader.close(), producer.close()]);
  });
});
