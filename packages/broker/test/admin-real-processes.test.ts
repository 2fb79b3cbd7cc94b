// The admin view of a real cluster: etcd, two bookies, a coordinator and two brokers, each a process
// started from the built `strata` bin. ListBrokers reports real bundle counts and CPU; a subscription's
// type survives a broker restart in the topic stats (it is persisted with the cursor).
import { BookieProcesses } from '@strata/bookie/testing';
import { createMetadataStore, type MetadataStore } from '@strata/coordinator';
import { EtcdCluster } from '@strata/coordinator/testing';
import { silentLogger } from '@strata/runtime';
import { freePorts, spawnRole, type ChildProcessHandle } from '@strata/runtime/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TopicStats__Output } from '../src/generated/strata/broker/v1/TopicStats.js';
import { adminClient, brokerClient, call, sleep, TestConsumer, TestProducer } from './helpers.js';

const CLUSTER = 'admin-real';
let etcd: EtcdCluster;
let bookies: BookieProcesses;
let store: MetadataStore;
const procs: ChildProcessHandle[] = [];
const brokers: Array<{ proc: ChildProcessHandle; address: string }> = [];

interface BrokerInfo { brokerId: string; url: string; bundleCount: number; cpuPercent: number }

async function startBrokerProcess(): Promise<{ proc: ChildProcessHandle; address: string }> {
  const [grpcPort, httpPort] = await freePorts(2);
  const proc = await spawnRole('broker', {
    'metadata-url': etcd.url, cluster: CLUSTER, 'grpc-host': '127.0.0.1', 'grpc-port': grpcPort!, 'http-host': '127.0.0.1',
    'http-port': httpPort!, 'cursor-flush-interval-ms': 100, 'session-ttl-ms': 2000, 'load-report-interval-ms': 300, 'log-level': 'warn',
  }, { httpPort: httpPort! });
  procs.push(proc);
  const b = { proc, address: `127.0.0.1:${grpcPort}` };
  brokers.push(b);
  return b;
}

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** The address of the broker that owns `topic` now (asked of `via`). */
async function ownerOf(via: string, topic: string): Promise<string> {
  const client = brokerClient(via);
  try {
    return await until(`an owner of ${topic}`, async () => (await call<{ topic: string }, { brokerUrl: string }>(client, 'Lookup', { topic })).brokerUrl || undefined);
  } finally {
    client.close();
  }
}

/** Ownership keys in etcd, counted per broker id (the truth the admin view must match). */
async function ownedPerBroker(): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  const page = await store.list('ownership/', { limit: 10_000 });
  for (const kv of page.items) {
    const id = (JSON.parse(kv.value.toString('utf8')) as { brokerId: string }).brokerId;
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

beforeAll(async () => {
  etcd = await EtcdCluster.start();
  bookies = await BookieProcesses.create({ metadataUrl: etcd.url, cluster: CLUSTER });
  await Promise.all(['b1', 'b2'].map((id) => bookies.start(id)));
  const [grpcPort, httpPort] = await freePorts(2);
  procs.push(await spawnRole('coordinator', {
    'metadata-url': etcd.url, cluster: CLUSTER, 'grpc-host': '127.0.0.1', 'grpc-port': grpcPort!, 'http-host': '127.0.0.1',
    'http-port': httpPort!, 'log-level': 'warn',
  }, { httpPort: httpPort! }));
  await startBrokerProcess();
  await startBrokerProcess();
  store = await createMetadataStore(etcd.url, { logger: silentLogger(), cluster: CLUSTER });
}, 120_000);

afterAll(async () => {
  await store?.close().catch(() => undefined);
  for (const p of procs) await p.kill().catch(() => undefined);
  await bookies?.stop();
  await etcd?.stop();
});

describe('admin over real broker processes', () => {
  it('brokers list: bundle counts match the ownership keys, and CPU is measured', async () => {
    const admin = adminClient(brokers[0]!.address);
    const ns = `public/counts-${Date.now().toString(36)}`;
    await call(admin, 'CreateNamespace', { namespace: ns, bundles: 4 });
    const topics = Array.from({ length: 8 }, (_, i) => `persistent://${ns}/t${i}`);
    for (const topic of topics) {
      const owner = await ownerOf(brokers[0]!.address, topic);
      const client = brokerClient(owner);
      const p = new TestProducer(client);
      expect((await p.open(topic)).opened).toBeTruthy();
      expect((await p.sendAndWait('x')).receipt).toBeTruthy();
      p.close();
      client.close();
    }
    const owner0 = await ownerOf(brokers[0]!.address, topics[0]!);
    const truth = await ownedPerBroker();
    // Asked of either broker, the counts are the ownership keys' (the other broker's too).
    for (const b of brokers) {
      const a = adminClient(b.address);
      const list = (await call<object, { brokers: BrokerInfo[] }>(a, 'ListBrokers', {})).brokers;
      a.close();
      expect(list).toHaveLength(2);
      const byUrl = new Map(list.map((x) => [x.url, x]));
      expect(byUrl.get(owner0)!.bundleCount).toBeGreaterThan(0);
      expect(list.reduce((n, x) => n + x.bundleCount, 0)).toBe([...truth.values()].reduce((n, c) => n + c, 0));
      for (const x of list) expect(x.bundleCount).toBe(truth.get(x.brokerId) ?? 0);
    }
    // CPU comes from the load reports (one every 300 ms here); a busy-enough broker shows a value above 0.
    await until('a CPU reading above 0', async () => {
      const list = (await call<object, { brokers: BrokerInfo[] }>(admin, 'ListBrokers', {})).brokers;
      return list.some((x) => x.cpuPercent > 0);
    }, 15_000);
    admin.close();
  }, 120_000);

  it('a Shared subscription is reported as Shared, also after its broker was killed and replaced', async () => {
    const topic = `persistent://public/default/subtype-${Date.now().toString(36)}`;
    const owner = await ownerOf(brokers[0]!.address, topic);
    const client = brokerClient(owner);
    const p = new TestProducer(client);
    await p.open(topic);
    expect((await p.sendAndWait('m')).receipt).toBeTruthy();
    const c = new TestConsumer(client);
    expect((await c.subscribe({ topic, subscription: 'shared-sub', type: 'SHARED_SUB' }, 10)).subscribed).toBeTruthy();
    const admin = adminClient(owner);
    const before = await call<object, TopicStats__Output>(admin, 'GetTopicStats', { topic });
    expect(before.subscriptions.map((s) => [s.name, s.type])).toEqual([['shared-sub', 'Shared']]);
    admin.close();
    c.close();
    p.close();
    client.close();
    await sleep(300);

    // kill -9 the owner and start a replacement: no consumer reconnects before the stats are asked.
    const dead = brokers.find((b) => b.address === owner)!;
    await dead.proc.kill();
    brokers.splice(brokers.indexOf(dead), 1);
    await startBrokerProcess();
    const stats = await until('stats from the new owner', async () => {
      const next = await ownerOf(brokers[0]!.address, topic);
      if (next === owner) return undefined;
      const a = adminClient(next);
      try {
        return await call<object, TopicStats__Output>(a, 'GetTopicStats', { topic });
      } finally {
        a.close();
      }
    });
    expect(stats.subscriptions.map((s) => [s.name, s.type, s.consumers.length])).toEqual([['shared-sub', 'Shared', 0]]);
  }, 120_000);
});
