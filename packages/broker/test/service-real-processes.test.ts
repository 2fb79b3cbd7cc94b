import { BookieProcesses } from '@strata/bookie/testing';
import { EtcdCluster } from '@strata/coordinator/testing';
import { freePorts, spawnRole, type ChildProcessHandle } from '@strata/runtime/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminClient, brokerClient, call, sleep, TestConsumer, TestProducer } from './helpers.js';

// Real processes: etcd, two bookies (fsync'd journals), a coordinator (assigns bundles), and the broker
// started from the built `strata` bin, then killed with SIGKILL and started again.
const CLUSTER = 'broker-real';
let etcd: EtcdCluster;
let bookies: BookieProcesses;
const procs: ChildProcessHandle[] = [];

async function startBrokerProcess(): Promise<{ proc: ChildProcessHandle; address: string }> {
  const [grpcPort, httpPort] = await freePorts(2);
  const proc = await spawnRole('broker', {
    'metadata-url': etcd.url, cluster: CLUSTER, 'grpc-host': '127.0.0.1', 'grpc-port': grpcPort!, 'http-host': '127.0.0.1',
    'http-port': httpPort!, 'cursor-flush-interval-ms': 100, 'session-ttl-ms': 2000, 'log-level': 'warn',
  }, { httpPort: httpPort! });
  procs.push(proc);
  return { proc, address: `127.0.0.1:${grpcPort}` };
}

/** Waits until the broker at `address` answers lookups of `topic` with itself (its bundle is assigned and acquired). */
async function waitOwned(address: string, topic: string): Promise<void> {
  const client = brokerClient(address);
  try {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const res = await call<{ topic: string }, { brokerUrl: string }>(client, 'Lookup', { topic }).catch(() => undefined);
      if (res?.brokerUrl === address) return;
      if (Date.now() > deadline) throw new Error(`${address} does not own ${topic} after 30 s`);
      await sleep(100);
    }
  } finally {
    client.close();
  }
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
}, 120_000);

afterAll(async () => {
  for (const p of procs) await p.kill().catch(() => undefined);
  await bookies?.stop();
  await etcd?.stop();
});

describe('broker as a real process over real bookies and etcd', () => {
  it('kill -9 the broker: every acknowledged message survives, acked ones stay acked, order kept', async () => {
    const topic = `persistent://public/default/kill9-${Date.now().toString(36)}`;
    const first = await startBrokerProcess();
    await waitOwned(first.address, topic);
    const client = brokerClient(first.address);
    const p = new TestProducer(client);
    expect((await p.open(topic)).opened).toBeTruthy();
    const c = new TestConsumer(client);
    await c.subscribe({ topic, subscription: 'durable', type: 'EXCLUSIVE_SUB' }, 1000);
    const seqs = Array.from({ length: 300 }, (_, i) => p.send(`m${i}`));
    for (const s of seqs) expect((await p.receipt(s)).receipt).toBeTruthy();
    await c.waitFor(300, 20_000);
    expect(c.payloads()).toEqual(seqs.map((i) => `m${i}`));
    // Ack the first 100 cumulatively and let the cursor flush (100 ms interval).
    expect((await c.ack([c.received[99]!], true)).success).toBeTruthy();
    await sleep(500);

    await first.proc.kill();
    client.close();

    const second = await startBrokerProcess();
    // The dead broker's bundles are reassigned once its session expires (2 s TTL).
    await waitOwned(second.address, topic);
    const client2 = brokerClient(second.address);
    const c2 = new TestConsumer(client2);
    await c2.subscribe({ topic, subscription: 'durable', type: 'EXCLUSIVE_SUB' }, 1000);
    await c2.waitFor(200, 20_000);
    await sleep(200);
    expect(c2.payloads()).toEqual(Array.from({ length: 200 }, (_, i) => `m${i + 100}`));
    // The topic takes new messages after the takeover.
    const p2 = new TestProducer(client2);
    await p2.open(topic);
    expect((await p2.sendAndWait('after')).receipt).toBeTruthy();
    await c2.waitFor(201, 20_000);
    expect(c2.payloads()[200]).toBe('after');
    p2.close();
    c2.close();
    client2.close();
    // Only this test's brokers may own bundles in the next test.
    await second.proc.stop();
  });

  it('kill -9 with deduplication on: resends after the restart are not stored twice', async () => {
    const first = await startBrokerProcess();
    const admin = adminClient(first.address);
    const ns = `public/dedup-real-${Date.now().toString(36)}`;
    await call(admin, 'CreateNamespace', { namespace: ns, policies: { deduplicationEnabled: true } });
    admin.close();
    const topic = `persistent://${ns}/t`;
    await waitOwned(first.address, topic);
    const client = brokerClient(first.address);
    const p = new TestProducer(client);
    await p.open(topic, { producerName: 'real-p' });
    for (let i = 0; i < 100; i++) p.send(`m${i}`, { sequenceId: i });
    for (let i = 0; i < 100; i++) expect((await p.receipt(i)).receipt).toBeTruthy();
    await first.proc.kill();
    client.close();

    const second = await startBrokerProcess();
    await waitOwned(second.address, topic);
    const client2 = brokerClient(second.address);
    const p2 = new TestProducer(client2);
    expect((await p2.open(topic, { producerName: 'real-p' })).opened!.lastSequenceId).toBe(99);
    for (let i = 50; i < 150; i++) p2.send(`m${i}`, { sequenceId: i });
    for (let i = 50; i < 150; i++) expect((await p2.receipt(i)).receipt!.messageId!.ledgerId === -1).toBe(i < 100);
    const c = new TestConsumer(client2);
    await c.subscribe({ topic, subscription: 'all', initialPosition: 'EARLIEST' }, 1000);
    await c.waitFor(150, 20_000);
    await sleep(200);
    expect(c.payloads()).toEqual(Array.from({ length: 150 }, (_, i) => `m${i}`));
    p2.close();
    c.close();
    client2.close();
  });
});
