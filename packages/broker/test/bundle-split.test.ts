// Hot bundle splitting end to end (docs/ownership.md, decision 0068): a real etcd, two brokers (in
// process, each with its own etcd connection and session, sharing in-memory ledgers), the real
// BundleAssigner under a real LeaderElector with a low message-rate limit, and the SDK client. Producers
// drive one bundle above the limit; the leader splits it; the old owner unloads it; the halves are
// owned again; producing and consuming across the split lose nothing. Also the admin SplitBundle,
// which writes the same policy through the shared splitBundlePolicy.
// bundle-split-processes.test.ts runs the same scenario over broker and bookie processes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InMemoryLedgerCluster } from '@strata/bookie/testing';
import { BundleAssigner, createMetadataStore, LeaderElector, namespaceBundles, type MetadataStore, type SplitAction } from '@strata/coordinator';
import { EtcdCluster } from '@strata/coordinator/testing';
import { Random, silentLogger } from '@strata/runtime';
import type { Client } from '@strata/client';
import { startTestBroker, type TestBroker } from '../src/testing/index.js';
import { adminClient, call } from './helpers.js';
import { expectHotBundleSplit, splitClient, SplitView, topicIn, until, type SdkEvent } from './split-helpers.js';

const NS = 'public/default';
const CLUSTER = `split-${Date.now().toString(36)}`;
const logger = silentLogger();

let etcd: EtcdCluster;
const stores: MetadataStore[] = [];
const brokers: TestBroker[] = [];
let elector: LeaderElector;
let client: Client;
let view: SplitView;
const splits: SplitAction[] = [];
const sdkEvents: SdkEvent[] = [];

async function store(): Promise<MetadataStore> {
  const s = await createMetadataStore(etcd.url, { logger, cluster: CLUSTER });
  stores.push(s);
  return s;
}

beforeAll(async () => {
  etcd = await EtcdCluster.start({ members: 1 });
  const ledgerCluster = new InMemoryLedgerCluster();
  const coordinatorStore = await store();
  view = new SplitView(await store(), NS);
  await view.start();
  // The leader: only the message-rate limit is on, and low; one split per namespace for the whole test.
  elector = new LeaderElector({
    store: coordinatorStore, election: 'coordinator', candidate: 'split-test-leader', sessionTtlMs: 3_000, logger,
    duties: [new BundleAssigner({
      random: new Random(7), shedding: false, onSplit: (s) => splits.push(s),
      splitting: { maxMsgRate: 50, maxTopics: 0, maxSessions: 0, maxBandwidthBytes: 0, cooldownMs: 600_000 },
    })],
  });
  elector.start();
  for (let i = 0; i < 2; i++) {
    brokers.push(await startTestBroker({
      metadata: await store(), ledgerCluster, assigner: false, config: { loadReportIntervalMs: 300, sessionTtlMs: 3_000 },
    }));
  }
  await view.waitOwned((await view.bundles()).map((b) => b.id), 20_000);
  client = splitClient((brokers[0] as TestBroker).address, sdkEvents);
}, 60_000);

afterAll(async () => {
  await client?.close().catch(() => undefined);
  await elector?.stop().catch(() => undefined);
  for (const b of brokers) await b.stop().catch(() => undefined);
  for (const s of stores) await s.close().catch(() => undefined);
  await etcd?.stop();
});

describe('automatic split of a hot bundle', () => {
  it('the leader splits the bundle above the limit; the halves are owned again; nothing is lost across the split', async () => {
    const hot = (await view.bundles())[0]!;
    const { ownedMs, firstAckMs } = await expectHotBundleSplit({
      client, view, sdkEvents, prefix: 'hot', pauseMs: 100,
      splitTime: async () => {
        const split = await until('the leader to split the hot bundle', () => splits[0], 30_000);
        expect(split.bundle).toBe(hot.id);
        expect(split.reasons[0]).toMatch(/^msgRate /);
        expect(split.load.topics).toBe(2);
        return Date.now();
      },
    });
    console.log(`split -> both halves owned: ${ownedMs} ms; first ack after the split: ${firstAckMs.map((ms) => `${ms} ms`).join(', ')}`);
    // One split only: the halves have one topic each (a single topic is never split), and the cooldown holds.
    expect(splits).toHaveLength(1);
  }, 90_000);
});

describe('admin SplitBundle', () => {
  it('halves the range through the shared split, the halves get owned, a producer of the old range keeps going', async () => {
    const before = await view.bundles();
    const target = before[before.length - 1]!;
    const topic = topicIn(NS, 'admin-split', target.start, target.end);
    const consumer = await client.subscribe({ topic, subscription: 'sub', subscriptionInitialPosition: 'Earliest' });
    const producer = await client.createProducer({ topic, sendTimeoutMs: 30_000 });
    await producer.send({ data: Buffer.from('before') });

    const admin = adminClient((brokers[1] as TestBroker).address);
    await call(admin, 'SplitBundle', { namespace: NS, range: target.id.slice(NS.length + 1) });
    admin.close();
    const p = await view.policy();
    expect(p.bundles).toBe(before.length + 1);
    expect(p.retentionTimeMinutes).toBeDefined(); // other policy fields kept
    const halves = namespaceBundles(NS, p).filter((b) => b.start >= target.start && b.end <= target.end);
    expect(halves).toHaveLength(2);
    await view.waitOwned(halves.map((h) => h.id), 20_000);

    await producer.send({ data: Buffer.from('after') });
    const got = [(await consumer.receive(15_000)).getData().toString(), (await consumer.receive(15_000)).getData().toString()];
    expect(got).toEqual(['before', 'after']);
    await Promise.all([producer.close(), consumer.close()]);
  }, 60_000);
});
