import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestBroker, type TestBroker } from '../src/testing/index.js';
import { keyHashOf } from '../src/topics/subscription.js';
import { brokerClient, sleep, TestConsumer, TestProducer, uniqueTopic } from './helpers.js';
import type { BrokerClient } from '../src/generated/strata/broker/v1/Broker.js';

describe('subscription types over gRPC', () => {
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

  async function produce(topic: string, n: number, key?: (i: number) => string): Promise<TestProducer> {
    const p = new TestProducer(client);
    expect((await p.open(topic)).opened).toBeTruthy();
    const seqs = Array.from({ length: n }, (_, i) => p.send(`m${i}`, { key: key?.(i) }));
    for (const s of seqs) expect((await p.receipt(s)).receipt).toBeTruthy();
    return p;
  }

  it('exclusive: a second consumer is refused with CONSUMER_BUSY', async () => {
    const topic = uniqueTopic();
    const a = new TestConsumer(client);
    expect((await a.subscribe({ topic, subscription: 'x' })).subscribed).toBeTruthy();
    const b = new TestConsumer(client);
    expect((await b.subscribe({ topic, subscription: 'x' })).error?.errorCode).toBe('CONSUMER_BUSY');
    // A different type on the same subscription is refused too.
    const c = new TestConsumer(client);
    expect((await c.subscribe({ topic, subscription: 'x', type: 'SHARED_SUB' })).error?.errorCode).toBe('CONSUMER_BUSY');
    a.close(); b.close(); c.close();
  });

  it('shared: spreads by permits, every message once, cumulative ack refused', async () => {
    const topic = uniqueTopic();
    const a = new TestConsumer(client);
    const b = new TestConsumer(client);
    await a.subscribe({ topic, subscription: 's', type: 'SHARED_SUB' }, 1000);
    await b.subscribe({ topic, subscription: 's', type: 'SHARED_SUB' }, 1000);
    const p = await produce(topic, 100);
    const deadline = Date.now() + 5000;
    while (a.received.length + b.received.length < 100 && Date.now() < deadline) await sleep(10);
    expect(a.received.length).toBeGreaterThan(10);
    expect(b.received.length).toBeGreaterThan(10);
    expect([...a.payloads(), ...b.payloads()].sort()).toEqual(Array.from({ length: 100 }, (_, i) => `m${i}`).sort());
    const res = await a.ack(a.received.slice(-1), true);
    expect(res.error?.errorCode).toBe('INVALID_ARGUMENT');
    // The stream survives: an individual ack works.
    expect((await a.ack(a.received)).success).toBeTruthy();
    p.close(); a.close(); b.close();
  });

  it('shared: permits bound delivery; the unacked of a departed consumer go to the other', async () => {
    const topic = uniqueTopic();
    const a = new TestConsumer(client);
    await a.subscribe({ topic, subscription: 's', type: 'SHARED_SUB' }, 5);
    const p = await produce(topic, 20);
    await a.waitFor(5);
    await sleep(100);
    expect(a.received.length).toBe(5);
    const b = new TestConsumer(client);
    await b.subscribe({ topic, subscription: 's', type: 'SHARED_SUB' }, 100);
    await b.waitFor(15);
    a.close();
    await b.waitFor(20);
    const redelivered = b.received.filter((e) => e.redeliveryCount > 0);
    expect(redelivered.length).toBe(5);
    expect(b.payloads().sort()).toEqual(Array.from({ length: 20 }, (_, i) => `m${i}`).sort());
    p.close(); b.close();
  });

  it('failover: active by priority then name, fails over when it leaves, ActiveConsumerChange events', async () => {
    const topic = uniqueTopic();
    const b = new TestConsumer(client);
    await b.subscribe({ topic, subscription: 'f', type: 'FAILOVER_SUB', consumerName: 'b' }, 100);
    expect((await b.events.take((e) => !!e.activeConsumerChange)).activeConsumerChange?.isActive).toBe(true);
    const a = new TestConsumer(client);
    await a.subscribe({ topic, subscription: 'f', type: 'FAILOVER_SUB', consumerName: 'a' }, 100);
    // "a" sorts first at the same priority: it becomes active, b inactive.
    expect((await a.events.take((e) => !!e.activeConsumerChange)).activeConsumerChange?.isActive).toBe(true);
    expect((await b.events.take((e) => !!e.activeConsumerChange)).activeConsumerChange?.isActive).toBe(false);
    const p = await produce(topic, 10);
    await a.waitFor(10);
    expect(b.received.length).toBe(0);
    await a.ack(a.received.slice(0, 4));
    a.close();
    expect((await b.events.take((e) => !!e.activeConsumerChange)).activeConsumerChange?.isActive).toBe(true);
    await b.waitFor(6);
    expect(b.payloads()).toEqual(['m4', 'm5', 'm6', 'm7', 'm8', 'm9']);
    // A lower priority level number wins over the name.
    const z = new TestConsumer(client);
    await z.subscribe({ topic, subscription: 'f', type: 'FAILOVER_SUB', consumerName: 'z', priorityLevel: 0 }, 10);
    p.close(); b.close(); z.close();
  });

  it('key_shared: same key always to one consumer, in order, while consumers join and leave', async () => {
    const topic = uniqueTopic();
    const keys = Array.from({ length: 16 }, (_, i) => `key-${i}`);
    const consumers: TestConsumer[] = [];
    const join = async (name: string) => {
      const c = new TestConsumer(client);
      await c.subscribe({ topic, subscription: 'k', type: 'KEY_SHARED_SUB', consumerName: name, keySharedPolicy: { mode: 'AUTO_SPLIT', ranges: [] } }, 1000);
      consumers.push(c);
      return c;
    };
    await join('c1');
    const p = new TestProducer(client);
    await p.open(topic);
    let sent = 0;
    const sendSome = async (n: number) => {
      const seqs = [];
      for (let i = 0; i < n; i++, sent++) seqs.push(p.send(`${keys[sent % keys.length]}:${sent}`, { key: keys[sent % keys.length] }));
      for (const s of seqs) await p.receipt(s);
    };
    await sendSome(100);
    await join('c2');
    await sendSome(100);
    await join('c3');
    await sendSome(100);
    // Acking lets held keys move to their new owners.
    for (const c of consumers) await c.ack(c.received);
    consumers[0]!.close();
    await sendSome(100);
    const deadline = Date.now() + 5000;
    for (;;) {
      for (const c of consumers.slice(1)) if (c.received.length) await c.ack(c.received);
      const got = new Set(consumers.flatMap((c) => c.payloads()));
      if (got.size >= sent || Date.now() > deadline) break;
      await sleep(50);
    }
    const all = new Set(consumers.flatMap((c) => c.payloads()));
    expect(all.size).toBe(sent);
    // Per key, deliveries across all consumers (first deliveries only) are in send order.
    for (const c of consumers) {
      const byKey = new Map<string, number[]>();
      for (const e of c.received.filter((x) => x.redeliveryCount === 0)) {
        const [k, n] = Buffer.from(e.envelope!.batch).toString().split(':');
        const list = byKey.get(k!) ?? [];
        list.push(Number(n));
        byKey.set(k!, list);
      }
      for (const list of byKey.values()) expect(list).toEqual([...list].sort((x, y) => x - y));
    }
    // Keys are spread, and each key's hash is what the broker routes on.
    expect(consumers.filter((c) => c.received.length > 0).length).toBeGreaterThan(1);
    expect(keyHashOf('key-1')).toBeLessThan(65536);
    p.close();
    for (const c of consumers) c.close();
  });

  it('key_shared: a joining consumer gets a key only after the old owner acked it; other keys never wait', async () => {
    const topic = uniqueTopic();
    const ks = { mode: 'AUTO_SPLIT', ranges: [] };
    const c1 = new TestConsumer(client);
    await c1.subscribe({ topic, subscription: 'k', type: 'KEY_SHARED_SUB', consumerName: 'c1', keySharedPolicy: ks }, 10_000);
    const p = new TestProducer(client);
    await p.open(topic);
    const old = Array.from({ length: 10 }, (_, i) => `old-${i}`);
    for (let i = 0; i < 50; i++) p.send(`${old[i % 10]}:${i}`, { key: old[i % 10] });
    await c1.waitFor(50);
    const c2 = new TestConsumer(client);
    await c2.subscribe({ topic, subscription: 'k', type: 'KEY_SHARED_SUB', consumerName: 'c2', keySharedPolicy: ks }, 10_000);
    for (let i = 50; i < 100; i++) p.send(`${old[i % 10]}:${i}`, { key: old[i % 10] });
    // Fresh keys nobody holds flow at once, to whichever consumer owns them.
    const fresh = Array.from({ length: 40 }, (_, i) => `fresh-${i}`);
    for (let i = 0; i < 40; i++) p.send(`${fresh[i]}:${100 + i}`, { key: fresh[i] });
    // Fresh keys are never held back: all 40 arrive (sent after the old ones) while c1 acks nothing.
    const freshCount = () => [...c1.payloads(), ...c2.payloads()].filter((x) => x.startsWith('fresh-')).length;
    const until = Date.now() + 5000;
    while (freshCount() < 40 && Date.now() < until) await sleep(20);
    expect(freshCount()).toBe(40);
    const c2keys = new Set(c2.payloads().map((x) => x.split(':')[0]));
    for (const k of old) expect(c2keys.has(k)).toBe(false);
    expect([...c2keys].filter((k) => k!.startsWith('fresh-')).length).toBeGreaterThan(0);
    // Once c1 acks, the held keys move to c2, and everything arrives exactly once.
    await c1.ack(c1.received);
    const deadline = Date.now() + 5000;
    while (new Set([...c1.payloads(), ...c2.payloads()]).size < 140 && Date.now() < deadline) {
      await sleep(20);
      if (c1.received.length) await c1.ack(c1.received);
    }
    const all = [...c1.payloads(), ...c2.payloads()];
    expect(new Set(all).size).toBe(140);
    expect(all.length).toBe(140);
    for (const c of [c1, c2]) {
      const byKey = new Map<string, number[]>();
      for (const x of c.payloads()) {
        const [k, n] = x.split(':');
        byKey.set(k!, [...(byKey.get(k!) ?? []), Number(n)]);
      }
      for (const list of byKey.values()) expect(list).toEqual([...list].sort((a, b) => a - b));
    }
    p.close(); c1.close(); c2.close();
  });

  it('nack: redelivered after the delay with a redelivery count', async () => {
    const topic = uniqueTopic();
    const c = new TestConsumer(client);
    await c.subscribe({ topic, subscription: 'n', type: 'SHARED_SUB', negativeAckRedeliveryDelayMs: 200 }, 100);
    const p = await produce(topic, 3);
    await c.waitFor(3);
    const t0 = Date.now();
    c.nack([c.received[1]!]);
    await c.waitFor(4, 3000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(150);
    const again = c.received[3]!;
    expect(Buffer.from(again.envelope!.batch).toString()).toBe('m1');
    expect(again.redeliveryCount).toBe(1);
    // RedeliverUnacknowledged hands back everything not acked.
    await c.ack([c.received[0]!, c.received[2]!, c.received[3]!]);
    await p.sendAndWait('m3');
    await c.waitFor(5);
    c.stream.write({ redeliver: { messageIds: [] } });
    await c.waitFor(6);
    expect(Buffer.from(c.received[5]!.envelope!.batch).toString()).toBe('m3');
    expect(c.received[5]!.redeliveryCount).toBe(1);
    p.close(); c.close();
  });

  it('delayed delivery on shared: an entry with deliver_at_time waits until then; exclusive ignores it', async () => {
    const topic = uniqueTopic();
    const c = new TestConsumer(client);
    await c.subscribe({ topic, subscription: 'd', type: 'SHARED_SUB' }, 100);
    const ex = new TestConsumer(client);
    await ex.subscribe({ topic, subscription: 'e', type: 'EXCLUSIVE_SUB' }, 100);
    const p = new TestProducer(client);
    await p.open(topic);
    const t0 = Date.now();
    p.stream.write({ send: { metadata: { sequenceId: 0, numMessages: 1, deliverAtTime: t0 + 400 }, batch: Buffer.from('later') } });
    p.stream.write({ send: { metadata: { sequenceId: 1, numMessages: 1 }, batch: Buffer.from('now') } });
    await p.receipt(1);
    await c.waitFor(1);
    expect(c.payloads()[0]).toBe('now');
    await c.waitFor(2, 3000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(350);
    expect(c.payloads()).toEqual(['now', 'later']);
    expect(c.received[1]!.redeliveryCount).toBe(0);
    await ex.waitFor(2);
    expect(ex.payloads()).toEqual(['later', 'now']);
    p.close(); c.close(); ex.close();
  });

  it('seek by message id and by timestamp; initial position latest', async () => {
    const topic = uniqueTopic();
    const p = await produce(topic, 10);
    const late = new TestConsumer(client);
    await late.subscribe({ topic, subscription: 'late', initialPosition: 'LATEST' }, 100);
    const c = new TestConsumer(client);
    await c.subscribe({ topic, subscription: 'seek' }, 100);
    await c.waitFor(10);
    await c.ack([c.received[9]!], true);
    const target = c.received[4]!.messageId!;
    const id = c.nextRequestId();
    // inclusive: from the message itself (the default, pulsar-client's, is the entry after it).
    const answer = await c.request({ seek: { messageId: target, inclusive: true, requestId: id } }, id);
    expect(answer.success?.readPosition).toMatchObject({ ledgerId: target.ledgerId, entryId: target.entryId });
    await c.waitFor(16);
    expect(c.payloads().slice(10)).toEqual(['m4', 'm5', 'm6', 'm7', 'm8', 'm9']);
    // By time: everything published at or after t0.
    const t0 = Date.now();
    await sleep(5);
    await p.sendAndWait('m10');
    const id2 = c.nextRequestId();
    expect((await c.request({ seek: { timestamp: t0, requestId: id2 } }, id2)).success).toBeTruthy();
    // m10 once before the seek, once again after it.
    await c.waitFor(18);
    expect(c.payloads().slice(-2)).toEqual(['m10', 'm10']);
    // The latest subscription saw only what came after it subscribed.
    await late.waitFor(1);
    expect(late.payloads()).toEqual(['m10']);
    p.close(); c.close(); late.close();
  });

  it('reader (non-durable) from a message id, inclusive and exclusive', async () => {
    const topic = uniqueTopic();
    const p = await produce(topic, 5);
    const c = new TestConsumer(client);
    await c.subscribe({ topic, subscription: 'ids' }, 100);
    await c.waitFor(5);
    const start = c.received[2]!.messageId!;
    const r1 = new TestConsumer(client);
    await r1.subscribe({ topic, subscription: '', durable: false, startMessageId: start, startInclusive: true }, 100);
    await r1.waitFor(3);
    expect(r1.payloads()).toEqual(['m2', 'm3', 'm4']);
    const r2 = new TestConsumer(client);
    await r2.subscribe({ topic, subscription: '', durable: false, startMessageId: start, startInclusive: false }, 100);
    await r2.waitFor(2);
    expect(r2.payloads()).toEqual(['m3', 'm4']);
    p.close(); c.close(); r1.close(); r2.close();
  });

  it('unsubscribe is refused while another consumer is attached, then deletes the cursor', async () => {
    const topic = uniqueTopic();
    const a = new TestConsumer(client);
    const b = new TestConsumer(client);
    await a.subscribe({ topic, subscription: 'u', type: 'SHARED_SUB' });
    await b.subscribe({ topic, subscription: 'u', type: 'SHARED_SUB' });
    let id = a.nextRequestId();
    expect((await a.request({ unsubscribe: { requestId: id } }, id)).error?.errorCode).toBe('CONSUMER_BUSY');
    b.close();
    // The broker sees b go shortly; until then unsubscribe is still refused.
    let un;
    for (const until = Date.now() + 5000; ;) {
      id = a.nextRequestId();
      un = await a.request({ unsubscribe: { requestId: id } }, id);
      if (!un.error || Date.now() > until) break;
      await sleep(50);
    }
    expect(un.error).toBeFalsy();
    expect(un.success).toBeTruthy();
    const p = await produce(topic, 2);
    // A new subscription of that name starts fresh at LATEST.
    const c = new TestConsumer(client);
    await c.subscribe({ topic, subscription: 'u', initialPosition: 'LATEST' }, 10);
    await sleep(100);
    expect(c.received.length).toBe(0);
    p.close(); c.close();
  });
});
