import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestBroker, type TestBroker } from '../src/testing/index.js';
import { brokerClient, call, errorCode, TestConsumer, TestProducer, uniqueTopic } from './helpers.js';
import type { BrokerClient } from '../src/generated/strata/broker/v1/Broker.js';

describe('broker service: produce and consume over gRPC', () => {
  let tb: TestBroker;
  let client: BrokerClient;

  beforeAll(async () => {
    tb = await startTestBroker();
    client = brokerClient(tb.address);
  });
  afterAll(async () => {
    client?.close();
    await tb?.stop();
  });

  it('keeps per-producer order end to end on an exclusive subscription, with acks', async () => {
    const topic = uniqueTopic();
    const consumer = new TestConsumer(client);
    expect((await consumer.subscribe({ topic, subscription: 's1' }, 1000)).subscribed).toBeTruthy();
    const producer = new TestProducer(client);
    const opened = await producer.open(topic);
    expect(opened.opened?.producerName).toMatch(/^standalone-/);
    const seqs = Array.from({ length: 200 }, (_, i) => producer.send(`m${i}`));
    const receipts = [];
    for (const s of seqs) receipts.push(await producer.receipt(s));
    // Receipts arrive in order with increasing ids.
    const ids = receipts.map((r) => r.receipt!.messageId!);
    for (let i = 1; i < ids.length; i++) {
      const [a, b] = [ids[i - 1]!, ids[i]!];
      expect(a.ledgerId < b.ledgerId || (a.ledgerId === b.ledgerId && a.entryId < b.entryId)).toBe(true);
    }
    await consumer.waitFor(200);
    expect(consumer.payloads()).toEqual(seqs.map((i) => `m${i}`));
    const e = consumer.received[0]!;
    expect(e.envelope!.metadata!.producerName).toBe(opened.opened!.producerName);
    expect(e.envelope!.metadata!.publishTime).toBeGreaterThan(0);
    expect(e.redeliveryCount).toBe(0);
    expect((await consumer.ack(consumer.received)).success).toBeTruthy();

    const last = await call<{ topic: string }, { messageId: { entryId: number } }>(client, 'GetLastMessageId', { topic });
    expect(last.messageId.entryId).toBe(ids[ids.length - 1]!.entryId);
    const metrics = await (await fetch(`http://127.0.0.1:${tb.broker.httpPort}/metrics`)).text();
    expect(Number(/broker_publish_entries_total\{result="stored",role="broker"\} (\d+)/.exec(metrics)?.[1])).toBeGreaterThanOrEqual(200);
    expect(Number(/broker_dispatch_entries_total\{role="broker"\} (\d+)/.exec(metrics)?.[1])).toBeGreaterThanOrEqual(200);
    // Topic-level metrics of this topic and its subscription (Pulsar's pulsar_storage_size, msg_backlog, ...).
    const value = (name: string, labels: string) => Number(new RegExp(`^${name}\\{${labels},role="broker"\\} (\\S+)$`, 'm').exec(metrics)?.[1]);
    expect(value('broker_topic_storage_size_bytes', `topic="${topic}"`)).toBeGreaterThan(0);
    expect(value('broker_topic_producers', `topic="${topic}"`)).toBe(1);
    expect(value('broker_topic_consumers', `topic="${topic}"`)).toBe(1);
    expect(value('broker_topic_subscriptions', `topic="${topic}"`)).toBe(1);
    expect(value('broker_subscription_msg_backlog', `topic="${topic}",subscription="s1"`)).toBeGreaterThanOrEqual(0);
    producer.close();
    consumer.close();
  });

  it('sends pipelined right behind OpenProducer wait for it; a half-close still gets every receipt', async () => {
    const topic = uniqueTopic('pipe');
    const p = new TestProducer(client);
    p.stream.write({ open: { topic, producerName: 'pipelined', requestId: 77 } });
    for (let i = 0; i < 50; i++) p.stream.write({ send: { metadata: { sequenceId: i, numMessages: 1 }, batch: Buffer.from(`m${i}`) } });
    p.stream.end();
    expect((await p.events.take((e) => !!e.opened)).opened?.producerName).toBe('pipelined');
    for (let i = 0; i < 50; i++) expect((await p.receipt(i)).receipt).toBeTruthy();
    const c = new TestConsumer(client);
    await c.subscribe({ topic, subscription: 's' }, 100);
    await c.waitFor(50);
    expect(c.payloads()).toEqual(Array.from({ length: 50 }, (_, i) => `m${i}`));
    c.close();
  });

  it('large entries are delivered in several stream messages, never over the gRPC message limit', async () => {
    const topic = uniqueTopic('big');
    const p = new TestProducer(client);
    await p.open(topic);
    const big = (ch: string) => ch.repeat(3 * 1024 * 1024);
    for (const ch of ['a', 'b', 'c']) expect((await p.sendAndWait(big(ch))).receipt).toBeTruthy();
    const c = new TestConsumer(client);
    await c.subscribe({ topic, subscription: 's' }, 10);
    await c.waitFor(3, 15_000);
    expect(c.payloads().map((x) => [x[0], x.length])).toEqual([['a', 3 * 1024 * 1024], ['b', 3 * 1024 * 1024], ['c', 3 * 1024 * 1024]]);
    p.close();
    c.close();
  });

  it('unloadTopics closes streams with a redirect; the topic reloads with its data and cursor', async () => {
    const topic = uniqueTopic('unload');
    const p = new TestProducer(client);
    await p.open(topic);
    const c = new TestConsumer(client);
    await c.subscribe({ topic, subscription: 's' }, 100);
    for (let i = 0; i < 3; i++) await p.sendAndWait(`m${i}`);
    await c.waitFor(3);
    await c.ack([c.received[0]!]);
    const n = await tb.broker.service.unloadTopics((t) => t.toString() === topic, { reason: 'bundle moved', redirectBrokerUrl: 'elsewhere:6650' });
    expect(n).toBe(1);
    expect((await p.events.take((e) => !!e.closed)).closed).toMatchObject({ reason: 'bundle moved', redirectBrokerUrl: 'elsewhere:6650' });
    expect((await c.events.take((e) => !!e.closed)).closed).toMatchObject({ reason: 'bundle moved', redirectBrokerUrl: 'elsewhere:6650' });
    const c2 = new TestConsumer(client);
    await c2.subscribe({ topic, subscription: 's' }, 100);
    await c2.waitFor(2);
    expect(c2.payloads()).toEqual(['m1', 'm2']);
    c2.close();
  });

  it('lookup answers this broker; partitioned metadata is 0 for a plain topic', async () => {
    const topic = uniqueTopic();
    const res = await call<{ topic: string }, { brokerUrl: string; authoritative: boolean }>(client, 'Lookup', { topic });
    expect(res.brokerUrl).toBe(tb.address);
    const meta = await call<{ topic: string }, { partitions: number }>(client, 'GetPartitionedTopicMetadata', { topic });
    expect(meta.partitions).toBe(0);
  });

  it('bad names get INVALID_ARGUMENT and the broker keeps serving', async () => {
    const err = await call(client, 'Lookup', { topic: 'bogus://a/b/c' }).catch((e: unknown) => e);
    expect(errorCode(err)).toBe('INVALID_ARGUMENT');
    const p = new TestProducer(client);
    const opened = await p.open('persistent://public/default/a/b');
    expect(opened.error?.errorCode).toBe('INVALID_ARGUMENT');
    // Same stream can still open a good producer.
    const ok = await p.open(uniqueTopic());
    expect(ok.opened).toBeTruthy();
    p.close();
  });

  it('tiny pending-publish limits delay producers (paused streams) but lose and reorder nothing', async () => {
    const small = await startTestBroker({ config: { maxPendingPublishesPerProducer: 2, maxPendingPublishesPerBroker: 3 } });
    const c2 = brokerClient(small.address);
    try {
      const topic = uniqueTopic('bp');
      const producers = [new TestProducer(c2), new TestProducer(c2)];
      for (const p of producers) await p.open(topic);
      const sent = producers.map((p, j) => Array.from({ length: 300 }, (_, i) => p.send(`p${j}-${i}`)));
      for (const [j, p] of producers.entries()) {
        let prev = -1;
        for (const s of sent[j]!) {
          const r = await p.receipt(s);
          expect(r.receipt).toBeTruthy();
          expect(r.receipt!.messageId!.entryId).toBeGreaterThan(prev);
          prev = r.receipt!.messageId!.entryId;
        }
      }
      const c = new TestConsumer(c2);
      await c.subscribe({ topic, subscription: 'all' }, 1000);
      await c.waitFor(600);
      for (const j of [0, 1]) {
        expect(c.payloads().filter((x) => x.startsWith(`p${j}-`))).toEqual(Array.from({ length: 300 }, (_, i) => `p${j}-${i}`));
      }
      for (const p of producers) p.close();
      c.close();
    } finally {
      c2.close();
      await small.stop();
    }
  });

  it('stopping the broker ends open streams with a Closed event', async () => {
    const other = await startTestBroker();
    const c2 = brokerClient(other.address);
    try {
      const topic = uniqueTopic('stop');
      const p = new TestProducer(c2);
      await p.open(topic);
      const c = new TestConsumer(c2);
      await c.subscribe({ topic, subscription: 's' }, 10);
      await other.stop();
      expect((await p.events.take((e) => !!e.closed)).closed?.reason).toMatch(/stopping/);
      expect((await c.events.take((e) => !!e.closed)).closed?.reason).toMatch(/stopping/);
    } finally {
      c2.close();
    }
  });
});
