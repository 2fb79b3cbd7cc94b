// pulsar-client compatibility, entry by entry of its typings (docs/client.md, "Compatibility"), against a
// real `strata standalone` process: what an app ported by changing its import relies on, down to the
// error texts pulsar-client's own tests match.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StandaloneProcess } from '@strata/runtime/testing';
import Pulsar, { Client } from '@strata/client';

let standalone: StandaloneProcess;
let client: Client;
const unique = (prefix: string) => `${prefix}-${randomBytes(4).toString('hex')}`;

beforeAll(async () => {
  standalone = await StandaloneProcess.start();
  client = new Pulsar.Client({ serviceUrl: `pulsar://${standalone.address}`, operationTimeoutSeconds: 10 });
}, 90_000);

afterAll(async () => {
  await client?.close();
  await standalone?.stop();
});

describe('Client', () => {
  it.each([
    [{ operationTimeoutSeconds: 30 }, 'Service URL is required and must be specified as a string unless serviceUrlProvider is configured'],
    [{ serviceUrl: 'invalid://localhost:6655' }, 'Invalid scheme: invalid'],
    [{ serviceUrl: 'pulsar://localhost:6650', serviceUrlProvider: { primary: 'pulsar://localhost:6650' } }, 'Only one of serviceUrl or serviceUrlProvider can be configured'],
  ])('new Client(%j) throws pulsar-client\'s error', (config, message) => {
    expect(() => new Pulsar.Client(config as never)).toThrow(message);
  });

  it('getPartitionsForTopic: InvalidTopicName for a bad name, the topic itself when not partitioned', async () => {
    await expect(client.getPartitionsForTopic('')).rejects.toThrow('Failed to GetPartitionsForTopic: InvalidTopicName');
    const topic = unique('plain');
    expect(await client.getPartitionsForTopic(topic)).toEqual([`persistent://public/default/${topic}`]);
  });
});

describe('Producer', () => {
  it.each([[{}], [{ topic: 0 }]])('createProducer(%j) needs a topic, in pulsar-client\'s words', async (config) => {
    await expect(client.createProducer(config as never)).rejects.toThrow('Topic is required and must be specified as a string when creating producer');
  });

  it("Exclusive: a second exclusive producer is refused with pulsar-client's ResultProducerFenced", async () => {
    const topic = unique('exclusive');
    const p1 = await client.createProducer({ topic, producerName: 'p-1', accessMode: 'Exclusive' });
    await expect(client.createProducer({ topic, producerName: 'p-2', accessMode: 'Exclusive' })).rejects.toThrow('Failed to create producer: ResultProducerFenced');
    await expect(client.createProducer({ topic, producerName: 'p-3' })).rejects.toMatchObject({ code: 'FENCED', retriable: false });
    await p1.close();
  });

  it('WaitForExclusive: creation completes once the exclusive producer closes', async () => {
    const topic = unique('wait-exclusive');
    const p1 = await client.createProducer({ topic, producerName: 'p-1', accessMode: 'Exclusive' });
    let created = false;
    const waiting = client.createProducer({ topic, producerName: 'p-2', accessMode: 'WaitForExclusive' }).then((p) => { created = true; return p; });
    await new Promise((r) => setTimeout(r, 300));
    expect(created).toBe(false);
    await p1.close();
    const p2 = await waiting;
    expect(p2.getProducerName()).toBe('p-2');
    await p2.send({ data: Buffer.from('mine now') });
    await p2.close();
  });

  it('ExclusiveWithFencing: the fenced producer fails its sends with ResultProducerFenced and stays fenced', async () => {
    const topic = unique('fencing');
    const p1 = await client.createProducer({ topic, producerName: 'p-1', accessMode: 'Exclusive' });
    await p1.send({ data: Buffer.from('before') });
    const p2 = await client.createProducer({ topic, producerName: 'p-2', accessMode: 'ExclusiveWithFencing' });
    await expect(p1.send({ data: Buffer.from('after') })).rejects.toThrow('Failed to send message: ResultProducerFenced');
    await new Promise((r) => setTimeout(r, 300));
    await expect(p1.send({ data: Buffer.from('later') })).rejects.toMatchObject({ code: 'FENCED' });
    expect(p1.isConnected()).toBe(false);
    await p2.send({ data: Buffer.from('p2') });
    await p1.close();
    await p2.close();
  });
});

describe('Producer sequence ids', () => {
  it('getLastSequenceId: -1 before any send, then the last acknowledged one', async () => {
    const topic = unique('last-seq');
    const p1 = await client.createProducer({ topic, producerName: 'seq-producer', batchingEnabled: false });
    expect(p1.getLastSequenceId()).toBe(-1);
    for (let i = 0; i < 3; i++) await p1.send({ data: Buffer.from(String(i)) });
    expect(p1.getLastSequenceId()).toBe(2);
    await p1.send({ data: Buffer.from('own'), sequenceId: 10 });
    expect(p1.getLastSequenceId()).toBe(10);
    await p1.close();
  });
});

describe('Consumer', () => {
  it('getLastMessageId names the last stored entry', async () => {
    const topic = unique('last-id');
    const producer = await client.createProducer({ topic, batchingEnabled: false });
    const consumer = await client.subscribe({ topic, subscription: 's' });
    expect((await consumer.getLastMessageId()).ledgerId).toBe(-1);
    await producer.send({ data: Buffer.from('a') });
    const id = await producer.send({ data: Buffer.from('b') });
    const last = await consumer.getLastMessageId();
    expect([last.ledgerId, last.entryId]).toEqual([id.ledgerId, id.entryId]);
    await Promise.all([consumer.close(), producer.close()]);
  });

  it('seek(id) resumes after that message, as pulsar-client', async () => {
    const topic = unique('seek-id');
    const producer = await client.createProducer({ topic, batchingEnabled: false });
    const ids = [];
    for (let i = 0; i < 10; i++) ids.push(await producer.send({ data: Buffer.from(`m-${i}`) }));
    const consumer = await client.subscribe({ topic, subscription: 'sub' });
    await consumer.seek(ids[5]!);
    expect((await consumer.receive(5000)).getData().toString()).toBe('m-6');
    await Promise.all([consumer.close(), producer.close()]);
  });

  it('a listener that throws is reported to Client.setLogHandler at ERROR, also for a client made before', async () => {
    const lines: string[] = [];
    const early = new Pulsar.Client({ serviceUrl: `pulsar://${standalone.address}` });
    Pulsar.Client.setLogHandler((level, _file, _line, message) => { if (level === Pulsar.LogLevel.ERROR) lines.push(message); });
    try {
      const topic = unique('listener-error');
      const producer = await early.createProducer({ topic });
      await producer.send({ data: Buffer.from('x') });
      const consumer = await early.subscribe({
        topic, subscription: 's', subscriptionInitialPosition: 'Earliest',
        listener: () => { throw new Error('listener expected error'); },
      });
      await expect.poll(() => lines.some((l) => l.includes('listener expected error')), { timeout: 5000 }).toBe(true);
      await Promise.all([consumer.close(), producer.close()]);
    } finally {
      Pulsar.Client.setLogHandler(null);
      await early.close();
    }
  });
});

describe('Reader', () => {
  it('hundreds of readers created and closed at once all succeed (lookups are coalesced)', async () => {
    const topic = unique('many-readers');
    const producer = await client.createProducer({ topic });
    await producer.send({ data: Buffer.from('x') });
    await Promise.all(Array.from({ length: 300 }, async () => {
      const reader = await client.createReader({ topic, startMessageId: Pulsar.MessageId.earliest(), listener: () => {} });
      await reader.close();
    }));
    await producer.close();
  });

  it('hasNext() after send + flush, after seek(id) and after seekTimestamp', async () => {
    const topic = unique('reader-has-next');
    const producer = await client.createProducer({ topic, batchingEnabled: false });
    const reader = await client.createReader({ topic, startMessageId: Pulsar.MessageId.latest() });
    expect(reader.hasNext()).toBe(false);
    const ids = [];
    for (let i = 0; i < 10; i++) ids.push(await producer.send({ data: Buffer.from(`m-${i}`) }));
    await producer.flush();
    expect(reader.hasNext()).toBe(true);
    await reader.seek(ids[5]!);
    expect(reader.hasNext()).toBe(true);
    expect((await reader.readNext(5000)).getData().toString()).toBe('m-6');
    const now = Date.now() + 1;
    await reader.seekTimestamp(now);
    expect(reader.hasNext()).toBe(false);
    await reader.seekTimestamp(now - 100_000);
    expect(reader.hasNext()).toBe(true);
    expect((await reader.readNext(5000)).getData().toString()).toBe('m-0');
    await Promise.all([reader.close(), producer.close()]);
  });

  it.each([
    [{ startMessageId: Pulsar.MessageId.earliest() }, 'Topic is required and must be specified as a string when creating reader'],
    [{ topic: 0, startMessageId: Pulsar.MessageId.earliest() }, 'Topic is required and must be specified as a string when creating reader'],
    [{ topic: 't' }, 'StartMessageId is required and must be specified as a MessageId object when creating reader'],
    [{ topic: 't', startMessageId: 'not MessageId' }, 'StartMessageId is required and must be specified as a MessageId object when creating reader'],
  ])('createReader(%j) throws pulsar-client\'s error', async (config, message) => {
    await expect(client.createReader(config as never)).rejects.toThrow(message);
  });
});
