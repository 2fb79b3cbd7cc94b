// Hot bundle splitting over real processes: etcd, two bookies (fsync'd journals), two brokers started
// from the built `strata` bin, and the coordinator's composition root (`startCoordinator`, in this
// process, configured with a low `splitMaxMsgRate` through its config fields). The split topics'
// ledgers are really recovered and fenced by their new owners; nothing acknowledged may be lost.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BookieProcesses } from '@strata/bookie/testing';
import type { Client } from '@strata/client';
import { coordinatorConfigSpec, createMetadataStore, startCoordinator, type CoordinatorConfig, type MetadataStore, type RunningCoordinator, type WatchEvent } from '@strata/coordinator';
import { EtcdCluster } from '@strata/coordinator/testing';
import { silentLogger } from '@strata/runtime';
import { freePorts, spawnRole, type ChildProcessHandle } from '@strata/runtime/testing';
import { expectHotBundleSplit, splitClient, SplitView, until, type SdkEvent } from './split-helpers.js';

const NS = 'public/default';
const CLUSTER = 'split-processes';
const logger = silentLogger();

let etcd: EtcdCluster;
let bookies: BookieProcesses;
const procs: ChildProcessHandle[] = [];
const addresses: string[] = [];
let coordinator: RunningCoordinator;
let store: MetadataStore;
let view: SplitView;
let client: Client;
const sdkEvents: SdkEvent[] = [];
const policyEvents: Array<{ at: number; event: WatchEvent }> = [];

beforeAll(async () => {
  etcd = await EtcdCluster.start();
  bookies = await BookieProcesses.create({ metadataUrl: etcd.url, cluster: CLUSTER });
  await Promise.all(['b1', 'b2'].map((id) => bookies.start(id)));
  const defaults = Object.fromEntries(Object.entries(coordinatorConfigSpec).map(([k, f]) => [k, f.default])) as CoordinatorConfig;
  coordinator = await startCoordinator({
    ...defaults, metadataUrl: etcd.url, cluster: CLUSTER, grpcHost: '127.0.0.1', grpcPort: 0, httpHost: '127.0.0.1', httpPort: 0,
    loadSheddingEnabled: false, splitMaxMsgRate: 50, splitMaxTopics: 0, splitMaxSessions: 0, splitMaxBandwidthMbytes: 0, splitCooldownMs: 600_000,
  }, { logger });
  for (let i = 0; i < 2; i++) {
    const [grpcPort, httpPort] = await freePorts(2);
    procs.push(await spawnRole('broker', {
      'metadata-url': etcd.url, cluster: CLUSTER, 'grpc-host': '127.0.0.1', 'grpc-port': grpcPort!, 'http-host': '127.0.0.1',
      'http-port': httpPort!, 'cursor-flush-interval-ms': 100, 'session-ttl-ms': 3000, 'load-report-interval-ms': 300, 'log-level': 'warn',
    }, { httpPort: httpPort! }));
    addresses.push(`127.0.0.1:${grpcPort}`);
  }
  store = await createMetadataStore(etcd.url, { logger, cluster: CLUSTER });
  view = new SplitView(store, NS);
  await view.start();
  await store.watch('admin/policies/', { onEvent: (event) => policyEvents.push({ at: Date.now(), event }) });
  await until('public/default to exist', async () => (await store.get(`admin/policies/${NS}`)) !== undefined, 30_000);
  await view.waitOwned((await view.bundles()).map((b) => b.id), 30_000);
  client = splitClient(addresses[0] as string, sdkEvents);
}, 120_000);

afterAll(async () => {
  await client?.close().catch(() => undefined);
  await store?.close().catch(() => undefined);
  for (const p of procs) await p.kill().catch(() => undefined);
  await coordinator?.stop().catch(() => undefined);
  await bookies?.stop();
  await etcd?.stop();
});

describe('automatic split over broker and bookie processes', () => {
  it('the coordinator splits the hot bundle; its topics are recovered by the halves\' owners; nothing is lost', async () => {
    const { ownedMs, firstAckMs } = await expectHotBundleSplit({
      client, view, sdkEvents, prefix: 'hot-proc', pauseMs: 100,
      splitTime: async () => {
        const seen = await until('the policy split', () => policyEvents.find((p) => p.event.type === 'put' && p.event.key === `admin/policies/${NS}`), 30_000);
        return seen.at;
      },
    });
    console.log(`processes: split -> both halves owned: ${ownedMs} ms; first ack after the split: ${firstAckMs.map((ms) => `${ms} ms`).join(', ')}`);
    // Exactly one split (cooldown; the halves hold one topic each).
    expect((await view.bundles()).length).toBe(5);
  }, 120_000);
});
