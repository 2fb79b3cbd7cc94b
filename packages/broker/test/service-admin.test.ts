import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestBroker, type TestBroker } from '../src/testing/index.js';
import { adminClient, brokerClient, call, errorCode, sleep, TestConsumer, TestProducer, uniqueTopic } from './helpers.js';
import type { AdminClient } from '../src/generated/strata/broker/v1/Admin.js';
import type { BrokerClient } from '../src/generated/strata/broker/v1/Broker.js';
import type { TopicStats__Output } from '../src/generated/strata/broker/v1/TopicStats.js';

describe('admin service, non-persistent topics, bad requests', () => {
  let tb: TestBroker;
  let client: BrokerClient;
  let admin: AdminClient;

  beforeAll(async () => {
    tb = await startTestBroker({ config: { maxMessageBytes: 64 * 1024, dispatchReadAheadEntries: 10 } });
    client = brokerClient(tb.address);
    admin = adminClient(tb.address);
  });
  afterAll(async () => {
    client?.close();
    admin?.close();
    await tb?.stop();
  });

  it('tenants and namespaces: defaults exist, create/list/policies, typed errors', async () => {
    expect((await call<object, { names: string[] }>(admin, 'ListTenants', {})).names).toContain('public');
    expect((await call<object, { names: string[] }>(admin, 'ListNamespaces', { tenant: 'public' })).names).toContain('public/default');
    const tenant = `t${Date.now()}`;
    await call(admin, 'CreateTenant', { tenant });
    expect(errorCode(await call(admin, 'CreateTenant', { tenant }).catch((e: unknown) => e))).toBe('ALREADY_EXISTS');
    await call(admin, 'CreateNamespace', { namespace: `${tenant}/ns`, bundles: 8 });
    const pol = await call<object, { bundles: number; deduplicationEnabled: boolean; ensembleSize: number }>(admin, 'GetNamespacePolicies', { namespace: `${tenant}/ns` });
    expect(pol).toMatchObject({ bundles: 8, deduplicationEnabled: false, ensembleSize: 0 });
    expect(errorCode(await call(admin, 'CreateNamespace', { namespace: `${tenant}/ns2`, policies: { ensembleSize: 2, writeQuorum: 3, ackQuorum: 1 } }).catch((e: unknown) => e))).toBe('INVALID_ARGUMENT');
    const bundles = await call<object, { bundles: Array<{ range: string }> }>(admin, 'ListBundles', { namespace: `${tenant}/ns` });
    expect(bundles.bundles.map((b) => b.range)[0]).toBe('0x00000000_0x20000000');
    expect(bundles.bundles).toHaveLength(8);
    expect(errorCode(await call(admin, 'CreateNamespace', { namespace: 'nope/ns' }).catch((e: unknown) => e))).toBe('NOT_FOUND');
    expect(errorCode(await call(admin, 'CreateNamespace', { namespace: 'bad name' }).catch((e: unknown) => e))).toBe('INVALID_ARGUMENT');
    expect(errorCode(await call(admin, 'UnloadBundle', { namespace: `${tenant}/ns`, range: 'x' }).catch((e: unknown) => e))).toBe('NOT_FOUND');
    // Topics in a namespace that does not exist are refused.
    const p = new TestProducer(client);
    expect((await p.open(`persistent://${tenant}/missing/t`)).error?.errorCode).toBe('NOT_FOUND');
    p.close();
    const brokers = await call<object, { brokers: Array<{ url: string }> }>(admin, 'ListBrokers', {});
    expect(brokers.brokers.map((b) => b.url)).toEqual([tb.address]);
  });

  it('set policies: turning deduplication on applies to a loaded topic at once', async () => {
    const ns = `public/live-${Date.now()}`;
    await call(admin, 'CreateNamespace', { namespace: ns });
    const topic = `persistent://${ns}/t`;
    const p = new TestProducer(client);
    await p.open(topic, { producerName: 'live' });
    expect((await p.sendAndWait('a', { sequenceId: 0 })).receipt!.messageId!.ledgerId).toBeGreaterThanOrEqual(0);
    expect((await p.sendAndWait('a', { sequenceId: 0 })).receipt!.messageId!.ledgerId).toBeGreaterThanOrEqual(0);
    const pol = await call<object, Record<string, unknown>>(admin, 'GetNamespacePolicies', { namespace: ns });
    await call(admin, 'SetNamespacePolicies', { namespace: ns, policies: { ...pol, deduplicationEnabled: true } });
    expect((await call<object, { deduplicationEnabled: boolean }>(admin, 'GetNamespacePolicies', { namespace: ns })).deduplicationEnabled).toBe(true);
    expect((await p.sendAndWait('b', { sequenceId: 1 })).receipt!.messageId!.ledgerId).toBeGreaterThanOrEqual(0);
    expect((await p.sendAndWait('b', { sequenceId: 1 })).receipt!.messageId!.ledgerId).toBe(-1);
    p.close();
  });

  it('partitioned topics: create, metadata, produce to partitions, list, delete', async () => {
    const topic = uniqueTopic('part');
    await call(admin, 'CreatePartitionedTopic', { topic, partitions: 3 });
    const meta = await call<object, { partitions: number }>(client, 'GetPartitionedTopicMetadata', { topic });
    expect(meta.partitions).toBe(3);
    const p = new TestProducer(client);
    expect((await p.open(topic)).error?.errorCode).toBe('INVALID_ARGUMENT');
    const p1 = new TestProducer(client);
    await p1.open(`${topic}-partition-1`);
    const r = await p1.sendAndWait('x');
    expect(r.receipt!.messageId!.partition).toBe(1);
    const p9 = new TestProducer(client);
    expect((await p9.open(`${topic}-partition-9`)).error?.errorCode).toBe('NOT_FOUND');
    const list = await call<object, { names: string[] }>(admin, 'ListPartitionedTopics', { namespace: 'public/default' });
    expect(list.names).toContain(topic);
    const stats = await call<object, TopicStats__Output>(admin, 'GetTopicStats', { topic });
    expect(Number(stats.entriesAdded)).toBe(1);
    p.close(); p1.close(); p9.close();
    await sleep(50);
    await call(admin, 'DeletePartitionedTopic', { topic, force: true });
    expect((await call<object, { partitions: number }>(client, 'GetPartitionedTopicMetadata', { topic })).partitions).toBe(0);
  });

  it('refuses a partitioned topic over a non-partitioned topic that holds data, with ALREADY_EXISTS', async () => {
    const topic = uniqueTopic('plain');
    const p = new TestProducer(client);
    await p.open(topic);
    await p.sendAndWait('kept');
    p.close();
    expect(errorCode(await call(admin, 'CreatePartitionedTopic', { topic, partitions: 2 }).catch((e: unknown) => e))).toBe('ALREADY_EXISTS');
    expect((await call<object, { partitions: number }>(client, 'GetPartitionedTopicMetadata', { topic })).partitions).toBe(0);
    expect(Number((await call<object, TopicStats__Output>(admin, 'GetTopicStats', { topic })).entriesAdded)).toBe(1);
  });

  it('topic stats, list and delete', async () => {
    const topic = uniqueTopic('stats');
    const p = new TestProducer(client);
    await p.open(topic);
    const c = new TestConsumer(client);
    await c.subscribe({ topic, subscription: 'st' }, 2);
    for (let i = 0; i < 5; i++) await p.sendAndWait(`m${i}`);
    await c.waitFor(2);
    const stats = await call<object, TopicStats__Output>(admin, 'GetTopicStats', { topic });
    expect(Number(stats.entriesAdded)).toBe(5);
    expect(Number(stats.storageSize)).toBeGreaterThan(0);
    expect(stats.publishers.map((x) => x.producerName)).toEqual([p.name]);
    const sub = stats.subscriptions.find((s) => s.name === 'st')!;
    expect(Number(sub.msgBacklog)).toBe(5);
    expect(Number(sub.unackedMessages)).toBe(2);
    expect(sub.consumers[0]!.availablePermits).toBe(0);
    const topics = await call<object, { names: string[] }>(admin, 'ListTopics', { namespace: 'public/default' });
    expect(topics.names).toContain(topic);
    expect(errorCode(await call(admin, 'DeleteTopic', { topic }).catch((e: unknown) => e))).toBe('CONSUMER_BUSY');
    await call(admin, 'DeleteTopic', { topic, force: true });
    // Its streams were told.
    expect((await c.events.take((e) => !!e.closed)).closed?.reason).toMatch(/deleted/);
    expect((await p.events.take((e) => !!e.closed)).closed?.reason).toMatch(/deleted/);
    expect((await call<object, { names: string[] }>(admin, 'ListTopics', { namespace: 'public/default' })).names).not.toContain(topic);
  });

  it('non-persistent: delivered to connected consumers with permits, dropped and counted otherwise', async () => {
    const topic = `non-persistent://public/default/np-${Date.now()}`;
    const c = new TestConsumer(client);
    await c.subscribe({ topic, subscription: 'np', type: 'SHARED_SUB' }, 3);
    const p = new TestProducer(client);
    await p.open(topic);
    for (let i = 0; i < 5; i++) expect((await p.sendAndWait(`m${i}`)).receipt!.messageId!.ledgerId).toBe(0);
    await c.waitFor(3);
    await sleep(50);
    expect(c.payloads()).toEqual(['m0', 'm1', 'm2']);
    const stats = await call<object, TopicStats__Output>(admin, 'GetTopicStats', { topic });
    expect(Number(stats.subscriptions[0]!.msgDropped)).toBe(2);
    expect(Number(stats.storageSize)).toBe(0);
    p.close(); c.close();
  });

  it('bad requests get typed errors and the streams survive', async () => {
    const topic = uniqueTopic('bad');
    const p = new TestProducer(client);
    // Send before open.
    const early = await p.sendAndWait('x', { sequenceId: 1 });
    expect(early.sendError?.errorCode).toBe('INVALID_ARGUMENT');
    await p.open(topic);
    // Too large (limit 64 KiB here).
    const big = await p.receipt(p.send('y'.repeat(70 * 1024)));
    expect(big.sendError?.errorCode).toBe('TOO_LARGE');
    // Insane metadata.
    p.stream.write({ send: { metadata: { sequenceId: 5, highestSequenceId: 2, numMessages: 1 }, batch: Buffer.from('z') } });
    expect((await p.events.take((e) => !!e.sendError)).sendError?.errorCode).toBe('INVALID_ARGUMENT');
    p.stream.write({ send: { metadata: { sequenceId: 6, numMessages: 0 }, batch: Buffer.from('z') } });
    expect((await p.events.take((e) => !!e.sendError)).sendError?.errorCode).toBe('INVALID_ARGUMENT');
    // Opening twice on one stream.
    expect((await p.open(topic)).error?.errorCode).toBe('INVALID_ARGUMENT');
    // Still works.
    expect((await p.sendAndWait('ok')).receipt).toBeTruthy();
    // Exclusive producer refused while another exists.
    const p2 = new TestProducer(client);
    expect((await p2.open(topic, { accessMode: 'EXCLUSIVE' })).error?.errorCode).toBe('FENCED');
    expect((await p2.open(topic, { producerName: p.name })).error?.errorCode).toBe('PRODUCER_BUSY');

    const c = new TestConsumer(client);
    // Commands before subscribe.
    const id = c.nextRequestId();
    expect((await c.request({ ack: { messageIds: [{ ledgerId: 1, entryId: 1 }], requestId: id } }, id)).error?.errorCode).toBe('INVALID_ARGUMENT');
    expect((await c.subscribe({ topic, subscription: '' })).error?.errorCode).toBe('INVALID_ARGUMENT');
    expect((await c.subscribe({ topic, subscription: 'strata.dedup' })).error?.errorCode).toBe('INVALID_ARGUMENT');
    expect((await c.subscribe({ topic, subscription: 'a/b' })).error?.errorCode).toBe('INVALID_ARGUMENT');
    expect((await c.subscribe({ topic: 'a/b', subscription: 's' })).error?.errorCode).toBe('INVALID_ARGUMENT');
    expect((await c.subscribe({ topic, subscription: 'ok' }, 10)).subscribed).toBeTruthy();
    const id2 = c.nextRequestId();
    expect((await c.request({ ack: { messageIds: [{ ledgerId: -5, entryId: 1 }], requestId: id2 } }, id2)).error?.errorCode).toBe('INVALID_ARGUMENT');
    const id3 = c.nextRequestId();
    expect((await c.request({ seek: { requestId: id3 } }, id3)).error?.errorCode).toBe('INVALID_ARGUMENT');
    await c.waitFor(1);
    expect(c.payloads()).toEqual(['ok']);
    p.close(); p2.close(); c.close();
  });

  it('WAIT_FOR_EXCLUSIVE: the open is answered when the current producer leaves', async () => {
    const topic = uniqueTopic('wait');
    const p1 = new TestProducer(client);
    expect((await p1.open(topic, { accessMode: 'EXCLUSIVE' })).opened).toBeTruthy();
    const p2 = new TestProducer(client);
    const opening = p2.open(topic, { accessMode: 'WAIT_FOR_EXCLUSIVE' });
    await sleep(200);
    expect(p2.events.items.length).toBe(0);
    expect((await p1.sendAndWait('from-p1')).receipt).toBeTruthy();
    p1.close();
    expect((await opening).opened).toBeTruthy();
    expect((await p2.sendAndWait('from-p2')).receipt).toBeTruthy();
    // While p2 holds it, a SHARED producer is refused.
    const p3 = new TestProducer(client);
    expect((await p3.open(topic)).error?.errorCode).toBe('FENCED');
    p2.close(); p3.close();
  });

  it('key_shared with a tiny read-ahead: a key held by a slow consumer does not stall other keys', async () => {
    const topic = uniqueTopic('ks');
    const ks = { mode: 'AUTO_SPLIT', ranges: [] };
    const slow = new TestConsumer(client);
    await slow.subscribe({ topic, subscription: 'k', type: 'KEY_SHARED_SUB', consumerName: 'slow', keySharedPolicy: ks }, 1000);
    const p = new TestProducer(client);
    await p.open(topic);
    for (let i = 0; i < 5; i++) p.send(`hot:${i}`, { key: 'hot' });
    await slow.waitFor(5);
    const fast = new TestConsumer(client);
    await fast.subscribe({ topic, subscription: 'k', type: 'KEY_SHARED_SUB', consumerName: 'fast', keySharedPolicy: ks }, 1000);
    // Far more "hot" entries than the read-ahead (10), then other keys.
    for (let i = 5; i < 60; i++) p.send(`hot:${i}`, { key: 'hot' });
    for (let i = 0; i < 60; i++) p.send(`k${i}:${i}`, { key: `k${i}` });
    const deadline = Date.now() + 5000;
    const others = () => [...slow.payloads(), ...fast.payloads()].filter((x) => !x.startsWith('hot:')).length;
    while (others() < 60 && Date.now() < deadline) await sleep(20);
    expect(others()).toBe(60);
    // Then the slow consumer acks and every hot entry arrives once, in order.
    await slow.ack(slow.received);
    const d2 = Date.now() + 5000;
    const hot = () => [...slow.payloads(), ...fast.payloads()].filter((x) => x.startsWith('hot:'));
    while (hot().length < 60 && Date.now() < d2) {
      await sleep(20);
      await slow.ack(slow.received);
    }
    expect(hot().length).toBe(60);
    for (const c of [slow, fast]) {
      const ns = c.payloads().filter((x) => x.startsWith('hot:')).map((x) => Number(x.split(':')[1]));
      expect(ns).toEqual([...ns].sort((a, b) => a - b));
    }
    p.close(); slow.close(); fast.close();
  });
});
