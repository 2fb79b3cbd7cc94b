// End to end against a real `strata standalone` process (broker, two bookies with fsync, embedded metadata).
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StandaloneProcess } from '@strata/runtime/testing';
import Pulsar, { Client, type Message } from '../src/index.js';

let broker: StandaloneProcess;
let client: Client;
const unique = () => `e2e-${randomBytes(4).toString('hex')}`;

beforeAll(async () => {
  broker = await StandaloneProcess.start();
  client = new Pulsar.Client({ serviceUrl: `pulsar://${broker.address}`, operationTimeoutSeconds: 10 });
});

afterAll(async () => {
  await client?.close();
  await broker?.stop();
});

describe('produce and consume', () => {
  it('delivers batched, compressed messages in order with their metadata', async () => {
    const topic = unique();
    const consumer = await client.subscribe({ topic, subscription: 'sub', subscriptionInitialPosition: 'Earliest' });
    const producer = await client.createProducer({ topic, compressionType: 'LZ4', batchingMaxMessages: 10 });
    expect(producer.isConnected()).toBe(true);
    const ids = await Promise.all(Array.from({ length: 25 }, (_, i) => producer.send({
      data: Buffer.from(`m-${i}`), properties: { i: String(i) }, partitionKey: `k${i % 3}`, eventTimestamp: 1000 + i,
    })));
    expect(new Set(ids.map((id) => `${id.ledgerId}:${id.entryId}`)).size).toBe(3); // 10 + 10 + 5
    const got: Message[] = [];
    for (let i = 0; i < 25; i++) got.push(await consumer.receive(5000));
    expect(got.map((m) => m.getData().toString())).toEqual(Array.from({ length: 25 }, (_, i) => `m-${i}`));
    expect(got[7]!.getProperties()).toEqual({ i: '7' });
    expect(got[7]!.getPartitionKey()).toBe('k1');
    expect(got[7]!.getEventTimestamp()).toBe(1007);
    expect(got[7]!.getProducerName()).toBe(producer.getProducerName());
    expect(got[7]!.getPublishTimestamp()).toBeGreaterThan(Date.now() - 60_000);
    expect(got[7]!.getMessageId().toString()).toBe(ids[7]!.toString());
    for (const m of got) await consumer.acknowledge(m);
    await expect(consumer.receive(200)).rejects.toThrow('Failed to receive message: TimeOut');
    await producer.close();
    await consumer.close();
  });

  it.each(['Zlib', 'ZSTD', 'SNAPPY', 'None'] as const)('round-trips %s compression', async (compressionType) => {
    const topic = unique();
    const consumer = await client.subscribe({ topic, subscription: 'sub' });
    const producer = await client.createProducer({ topic, compressionType });
    const payload = Buffer.from('x'.repeat(10_000));
    await producer.send({ data: payload });
    expect((await consumer.receive(5000)).getData().equals(payload)).toBe(true);
    await producer.close();
    await consumer.close();
  });

  it('batchReceive and a listener', async () => {
    const topic = unique();
    const batchConsumer = await client.subscribe({ topic, subscription: 'batch', batchReceivePolicy: { maxNumMessages: 4, timeoutMs: 200 } });
    const got: string[] = [];
    const listening = await client.subscribe({
      topic, subscription: 'listen',
      listener: async (m, c) => {
        got.push(m.getData().toString());
        await c.acknowledge(m);
      },
    });
    const producer = await client.createProducer({ topic });
    await Promise.all(Array.from({ length: 6 }, (_, i) => producer.send({ data: Buffer.from(String(i)) })));
    const first = await batchConsumer.batchReceive();
    expect(first.map((m) => m.getData().toString())).toEqual(['0', '1', '2', '3']);
    const second = await batchConsumer.batchReceive();
    expect(second.map((m) => m.getData().toString())).toEqual(['4', '5']);
    for (const m of [...first, ...second]) await batchConsumer.acknowledge(m);
    const deadline = Date.now() + 5000;
    while (got.length < 6 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(got).toEqual(['0', '1', '2', '3', '4', '5']);
    await Promise.all([batchConsumer.close(), listening.close(), producer.close()]);
  });

  it('non-persistent topics deliver to connected consumers', async () => {
    const topic = `non-persistent://public/default/${unique()}`;
    const consumer = await client.subscribe({ topic, subscription: 'np' });
    const producer = await client.createProducer({ topic });
    await producer.send({ data: Buffer.from('fleeting') });
    const m = await consumer.receive(5000);
    expect(m.getData().toString()).toBe('fleeting');
    expect(m.getTopicName()).toBe(topic);
    await consumer.acknowledge(m);
    await Promise.all([consumer.close(), producer.close()]);
  });
});
