import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InMemoryLedgerCluster } from '@strata/bookie/testing';
import { EmbeddedMetadataStore } from '@strata/coordinator';
import { silentLogger } from '@strata/runtime';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startTestBroker, type TestBroker } from '../src/testing/index.js';
import { adminClient, brokerClient, call, sleep, TestConsumer, TestProducer } from './helpers.js';

describe('state across a broker restart (new broker instance, same metadata and ledgers)', () => {
  let dir: string;
  let metadata: EmbeddedMetadataStore;
  let cluster: InMemoryLedgerCluster;
  const brokers: TestBroker[] = [];
  const clients: Array<{ close(): void }> = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'strata-broker-restart-'));
    metadata = await EmbeddedMetadataStore.open({ dir, logger: silentLogger() });
    cluster = new InMemoryLedgerCluster();
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    for (const b of brokers.splice(0)) await b.stop().catch(() => undefined);
    await metadata.close();
    await rm(dir, { recursive: true, force: true });
  });

  const start = async () => {
    const b = await startTestBroker({ metadata, ledgerCluster: cluster });
    brokers.push(b);
    const client = brokerClient(b.address);
    clients.push(client);
    return { b, client };
  };

  it('a durable cursor keeps its individual acknowledgements across a restart', async () => {
    const topic = `persistent://public/default/restart-${Date.now()}`;
    const { b, client } = await start();
    const p = new TestProducer(client);
    await p.open(topic);
    const c = new TestConsumer(client);
    await c.subscribe({ topic, subscription: 'durable', type: 'SHARED_SUB' }, 100);
    for (let i = 0; i < 20; i++) p.send(`m${i}`);
    await c.waitFor(20);
    const byPayload = new Map(c.received.map((e) => [Buffer.from(e.envelope!.batch).toString(), e]));
    await c.ack(['m0', 'm1', 'm2', 'm3', 'm4', 'm7', 'm15'].map((m) => byPayload.get(m)!));
    p.close();
    c.close();
    await b.stop();
    brokers.splice(brokers.indexOf(b), 1);

    const { client: client2 } = await start();
    const c2 = new TestConsumer(client2);
    await c2.subscribe({ topic, subscription: 'durable', type: 'SHARED_SUB' }, 100);
    await c2.waitFor(13);
    await sleep(100);
    const expected = Array.from({ length: 20 }, (_, i) => `m${i}`).filter((m) => !['m0', 'm1', 'm2', 'm3', 'm4', 'm7', 'm15'].includes(m));
    expect(c2.payloads()).toEqual(expected);
    // New messages go after the old ones, on a new ledger.
    const p2 = new TestProducer(client2);
    await p2.open(topic);
    const r = await p2.sendAndWait('after');
    expect(r.receipt!.messageId!.ledgerId).toBeGreaterThan(c2.received[0]!.messageId!.ledgerId);
    await c2.waitFor(14);
    p2.close();
    c2.close();
  });

  it('dedup: a resend after a crash is not stored twice; lastSequenceId survives', async () => {
    const { client } = await start();
    const admin = adminClient(brokers[0]!.address);
    clients.push(admin);
    const ns = `public/dedup-${Date.now()}`;
    await call(admin, 'CreateNamespace', { namespace: ns, policies: { deduplicationEnabled: true } });
    const topic = `persistent://${ns}/t`;
    const p = new TestProducer(client);
    expect((await p.open(topic, { producerName: 'p1' })).opened!.lastSequenceId).toBe(-1);
    for (let i = 0; i < 10; i++) p.send(`m${i}`, { sequenceId: i });
    for (let i = 0; i < 10; i++) expect((await p.receipt(i)).receipt!.messageId!.ledgerId).toBeGreaterThanOrEqual(0);
    // Same broker: a duplicate is answered with id -1 and not stored.
    const dup = await p.sendAndWait('m9-again', { sequenceId: 9 });
    expect(dup.receipt!.messageId!.ledgerId).toBe(-1);

    // "Crash": the first broker's session ends without a drain (its bundles are dropped, not handed
    // over), and a second broker takes over the same topic.
    const { client: client2 } = await start();
    await brokers[0]!.broker.ownership.stop({ drain: false });
    const p2 = new TestProducer(client2);
    const opened = await p2.open(topic, { producerName: 'p1' });
    expect(opened.opened!.lastSequenceId).toBe(9);
    for (let i = 5; i < 13; i++) p2.send(`m${i}`, { sequenceId: i });
    for (let i = 5; i < 13; i++) {
      const r = await p2.receipt(i);
      expect(r.receipt!.messageId!.ledgerId === -1).toBe(i < 10);
    }
    const c = new TestConsumer(client2);
    await c.subscribe({ topic, subscription: 'all', initialPosition: 'EARLIEST' }, 100);
    await c.waitFor(13);
    await sleep(100);
    expect(c.payloads()).toEqual(Array.from({ length: 13 }, (_, i) => `m${i}`));
    p.close();
    p2.close();
    c.close();
  });
});
