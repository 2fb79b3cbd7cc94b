// End to end against a real broker (in-process, real gRPC, embedded metadata, in-memory ledgers).
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestBroker, type TestBroker } from '@strata/broker/testing';
import Pulsar, { Client, type Message } from '../src/index.js';

let broker: TestBroker;
let client: Client;
const unique = () => `e2e-${randomBytes(4).toString('hex')}`;

beforeAll(async () => {
  broker = await startTestBroker();
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
});
