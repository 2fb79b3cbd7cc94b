// Reconnection across a broker restart: stop the broker while producers and consumers run, start a
// new one on the same metadata, ledgers and port; nothing acknowledged is lost and order is kept.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InMemoryLedgerCluster } from '@strata/bookie/testing';
import { EmbeddedMetadataStore, type MetadataStore } from '@strata/coordinator';
import { startTestBroker, type TestBroker } from '@strata/broker/testing';
import { silentLogger } from '@strata/runtime';
import { Client, MessageId, type Logger } from '../src/index.js';
import { createDedupNamespace, unique } from './e2e-helpers.js';

let dir: string;
let metadata: MetadataStore;
let ledgerCluster: InMemoryLedgerCluster;
let broker: TestBroker | undefined;
let port: number;
let client: Client;
/** What the SDK logged: proves the streams really dropped and came back. */
const events: { msg: string; fields: Record<string, unknown> }[] = [];
const capture = (bindings: Record<string, unknown>): Logger => {
  const log = (obj: object, msg?: string) => events.push({ msg: msg ?? '', fields: { ...bindings, ...obj } });
  return { debug: log, info: log, warn: log, error: log, child: (more) => capture({ ...bindings, ...more }) };
};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'strata-client-reconnect-'));
  metadata = await EmbeddedMetadataStore.open({ dir, logger: silentLogger() });
  ledgerCluster = new InMemoryLedgerCluster();
  broker = await startTestBroker({ metadata, ledgerCluster });
  port = broker.broker.grpcPort;
  client = new Client({ serviceUrl: `pulsar://127.0.0.1:${port}`, operationTimeoutSeconds: 10, initialBackoffIntervalMs: 50, maxBackoffIntervalMs: 500, logger: capture({}) });
});

afterAll(async () => {
  await client?.close();
  await broker?.stop();
  await metadata?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function restartBroker(downMs: number): Promise<void> {
  await broker!.stop();
  broker = undefined;
  await new Promise((r) => setTimeout(r, downMs));
  broker = await startTestBroker({ metadata, ledgerCluster, config: { grpcPort: port } });
}

async function until(cond: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('broker restart', () => {
  it('producer resends pending messages in order; consumer resubscribes; nothing acknowledged is lost', async () => {
    const topic = unique('restart');
    const consumer = await client.subscribe({ topic, subscription: 'sub', subscriptionType: 'Failover', subscriptionInitialPosition: 'Earliest' });
    const producer = await client.createProducer({ topic, batchingMaxPublishDelayMs: 2, sendTimeoutMs: 60_000 });
    const reader = await client.createReader({ topic, startMessageId: MessageId.earliest() });
    const total = 600;
    const acked: number[] = [];
    const failed: unknown[] = [];
    let sent = 0;
    // Produce continuously, a bounded window at a time, while the broker goes away and comes back.
    const produce = (async () => {
      while (sent < total) {
        const window = Array.from({ length: Math.min(20, total - sent) }, () => sent++);
        await Promise.all(window.map((n) => producer.send({ data: Buffer.from(String(n)) }).then(() => acked.push(n), (err: unknown) => failed.push(err))));
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const received: number[] = [];
    const consume = (async () => {
      while (received.length === 0 || received[received.length - 1]! < total - 1 || new Set(received).size < total) {
        const m = await consumer.receive(30_000);
        received.push(Number(m.getData().toString()));
        await consumer.acknowledge(m).catch(() => undefined);
      }
    })();
    await until(() => acked.length >= 150, 20_000);
    const ackedBeforeRestart = acked.length;
    await restartBroker(300);
    await produce;
    expect(ackedBeforeRestart).toBeLessThan(total);
    await consume;
    expect(failed).toEqual([]);
    expect(acked).toHaveLength(total);
    // Every acknowledged message was delivered, and the first deliveries are in send order.
    const firsts: number[] = [];
    const seen = new Set<number>();
    for (const n of received) {
      if (!seen.has(n)) firsts.push(n);
      seen.add(n);
    }
    expect(firsts).toEqual(Array.from({ length: total }, (_, i) => i));
    await until(() => producer.isConnected() && consumer.isConnected() && reader.isConnected(), 10_000);
    // The reader resumed after the last entry it had: it reads every message, in order.
    const readBack: number[] = [];
    while (readBack.length < total) readBack.push(Number((await reader.readNext(10_000)).getData().toString()));
    const readFirsts = readBack.filter((n, i) => readBack.indexOf(n) === i);
    expect(readFirsts).toEqual(Array.from({ length: total }, (_, i) => i).slice(0, readFirsts.length));
    const about = (msg: string) => events.filter((e) => e.msg === msg && String(e.fields.topic).endsWith(topic));
    expect(about('producer disconnected').length).toBeGreaterThanOrEqual(1);
    expect(about('consumer disconnected').length).toBeGreaterThanOrEqual(2); // the consumer and the reader
    expect(about('producer connected').length).toBeGreaterThanOrEqual(2);
    await Promise.all([producer.close(), consumer.close(), reader.close()]);
  });

  it('isConnected() is false while the broker is down and true again after', async () => {
    const topic = unique('conn');
    const producer = await client.createProducer({ topic });
    const consumer = await client.subscribe({ topic, subscription: 's' });
    expect(producer.isConnected()).toBe(true);
    expect(consumer.isConnected()).toBe(true);
    await broker!.stop();
    broker = undefined;
    await until(() => !producer.isConnected() && !consumer.isConnected(), 5000);
    broker = await startTestBroker({ metadata, ledgerCluster, config: { grpcPort: port } });
    await until(() => producer.isConnected() && consumer.isConnected(), 10_000);
    const id = await producer.send({ data: Buffer.from('after') });
    expect(id.ledgerId).toBeGreaterThanOrEqual(0);
    expect((await consumer.receive(5000)).getData().toString()).toBe('after');
    await Promise.all([producer.close(), consumer.close()]);
  });

  it('with deduplication on, resends after a restart are stored exactly once, in order', async () => {
    const namespace = `public/${unique('dedup')}`;
    await createDedupNamespace(`127.0.0.1:${port}`, namespace);
    const topic = `persistent://${namespace}/${unique('t')}`;
    const producer = await client.createProducer({ topic, producerName: unique('p'), batchingMaxPublishDelayMs: 2, sendTimeoutMs: 60_000 });
    const total = 400;
    let sent = 0;
    let acked = 0;
    const produce = (async () => {
      while (sent < total) {
        const window = Array.from({ length: Math.min(20, total - sent) }, () => sent++);
        await Promise.all(window.map((n) => producer.send({ data: Buffer.from(String(n)) }).then(() => acked++)));
      }
    })();
    await until(() => acked >= 100, 20_000);
    await restartBroker(200);
    await produce;
    const reader = await client.createReader({ topic, startMessageId: MessageId.earliest() });
    const stored: number[] = [];
    while (stored.length < total) stored.push(Number((await reader.readNext(10_000)).getData().toString()));
    expect(stored).toEqual(Array.from({ length: total }, (_, i) => i));
    expect(await reader.hasMessageAvailable()).toBe(false);
    // The producer did reconnect (and resent what it had in flight, if anything).
    expect(events.filter((e) => e.msg === 'producer connected' && String(e.fields.topic) === topic)).toHaveLength(2);
    await Promise.all([producer.close(), reader.close()]);
  });
});
