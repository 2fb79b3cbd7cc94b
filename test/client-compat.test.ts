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

describe('web service URL (HTTP lookup)', () => {
  it("produces and consumes with serviceUrl http://host:port, partitioned topics too", async () => {
    const web = new Pulsar.Client({ serviceUrl: standalone.webServiceUrl, operationTimeoutSeconds: 10 });
    try {
      const topic = unique('http-lookup');
      const consumer = await web.subscribe({ topic, subscription: 's' });
      const producer = await web.createProducer({ topic });
      await producer.send({ data: Buffer.from('over http lookup') });
      expect((await consumer.receive(5000)).getData().toString()).toBe('over http lookup');
      await Promise.all([consumer.close(), producer.close()]);
      const partitioned = unique('http-partitioned');
      const put = await fetch(`${standalone.webServiceUrl}/admin/v2/persistent/public/default/${partitioned}/partitions`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '3' });
      expect(put.status).toBe(204);
      expect(await web.getPartitionsForTopic(partitioned)).toHaveLength(3);
    } finally {
      await web.close();
    }
  });

  it('a dead web service host fails with a retriable ConnectError, not a hang', async () => {
    const dead = new Pulsar.Client({ serviceUrl: 'http://127.0.0.1:1', operationTimeoutSeconds: 1 });
    await expect(dead.createProducer({ topic: unique('nowhere') })).rejects.toMatchObject({ code: 'UNAVAILABLE', retriable: true });
    await dead.close();
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

describe('batch index acks (batchIndexAckEnabled)', () => {
  it('only the unacknowledged messages of a batch come back, after a resubscribe and after a broker restart', async () => {
    const own = await StandaloneProcess.start();
    const c = new Pulsar.Client({ serviceUrl: own.serviceUrl, operationTimeoutSeconds: 10 });
    try {
      const topic = unique('batch-index-ack');
      const producer = await c.createProducer({ topic, batchingMaxMessages: 100, batchingMaxPublishDelayMs: 10_000 });
      const subscribe = () => c.subscribe({ topic, subscription: 'sub', batchIndexAckEnabled: true, subscriptionInitialPosition: 'Earliest' });
      let consumer = await subscribe();
      const sent = Array.from({ length: 5 }, (_, i) => producer.send({ data: Buffer.from(`m-${i}`) }));
      await producer.flush();
      const ids = await Promise.all(sent);
      expect(new Set(ids.map((id) => id.entryId)).size).toBe(1); // one batch
      const got = [];
      for (let i = 0; i < 5; i++) got.push(await consumer.receive(5000));
      await consumer.acknowledge(got[0]!);
      await consumer.acknowledge(got[1]!);
      await consumer.close();
      consumer = await subscribe();
      const again = [];
      for (let i = 0; i < 3; i++) again.push((await consumer.receive(5000)).getData().toString());
      expect(again).toEqual(['m-2', 'm-3', 'm-4']);
      await expect(consumer.receive(500)).rejects.toThrow('Failed to receive message: TimeOut');
      await consumer.acknowledge((await Promise.resolve(got[2]!)));
      await consumer.close();
      await producer.close();
      // The broker keeps them with the cursor: a graceful restart forgets nothing.
      await own.terminate();
      await own.restart();
      consumer = await subscribe();
      const afterRestart = [];
      for (let i = 0; i < 2; i++) afterRestart.push((await consumer.receive(10_000)).getData().toString());
      expect(afterRestart).toEqual(['m-3', 'm-4']);
      await expect(consumer.receive(500)).rejects.toThrow('Failed to receive message: TimeOut');
      await consumer.close();
    } finally {
      await c.close();
      await own.stop();
    }
  }, 90_000);
});

describe('Consumer topicsPattern', () => {
  it("regexSubscriptionMode 'AllTopics' matches persistent and non-persistent topics; the default only persistent ones", async () => {
    const prefix = unique('regex');
    const persistent = await client.createProducer({ topic: `persistent://public/default/${prefix}-p` });
    const nonPersistent = await client.createProducer({ topic: `non-persistent://public/default/${prefix}-np` });
    const all = await client.subscribe({ topicsPattern: `persistent://public/default/${prefix}-.*`, subscription: 'all', regexSubscriptionMode: 'AllTopics' });
    const persistentOnly = await client.subscribe({ topicsPattern: `persistent://public/default/${prefix}-.*`, subscription: 'p-only' });
    expect(all.getTopics().sort()).toEqual([`non-persistent://public/default/${prefix}-np`, `persistent://public/default/${prefix}-p`]);
    expect(persistentOnly.getTopics()).toEqual([`persistent://public/default/${prefix}-p`]);
    await persistent.send({ data: Buffer.from('p') });
    await nonPersistent.send({ data: Buffer.from('np') });
    const got = [(await all.receive(5000)).getData().toString(), (await all.receive(5000)).getData().toString()].sort();
    expect(got).toEqual(['np', 'p']);
    await Promise.all([all.close(), persistentOnly.close(), persistent.close(), nonPersistent.close()]);
  });
});

describe('features not built yet fail typed, never silently', () => {
  it('a CryptoKeyReader subclass loads; using it is refused with UNSUPPORTED', async () => {
    class Keys extends Pulsar.CryptoKeyReader {}
    await expect(client.createProducer({ topic: unique('enc'), cryptoKeyReader: new Keys(), encryptionKey: 'k' } as never)).rejects.toMatchObject({ code: 'UNSUPPORTED' });
    await expect(client.subscribe({ topic: unique('enc'), subscription: 's', cryptoKeyReader: new Keys() } as never)).rejects.toMatchObject({ code: 'UNSUPPORTED' });
    await expect(client.createProducer({ topic: unique('chunk'), chunkingEnabled: true } as never)).rejects.toMatchObject({ code: 'UNSUPPORTED' });
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
