import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadConfig, loadProtos, silentLogger } from '@strata/runtime';
import {
  coordinatorConfigSpec, createMetadataStore, EmbeddedMetadataStore, resolveMetadataUrl, startCoordinator,
  type LeaderContext, type MetadataStore, type RunningCoordinator,
} from '../src/index.js';
import type { ProtoGrpcType } from '../src/generated/coordinator.js';
import type { CoordinatorStatus__Output } from '../src/generated/strata/coordinator/v1/CoordinatorStatus.js';
import { EtcdCluster } from '../src/testing/index.js';
import { unique, waitFor } from './contract.js';

const proto = loadProtos<ProtoGrpcType>(['strata/coordinator/v1/coordinator.proto']);

function status(port: number): Promise<CoordinatorStatus__Output> {
  const client = new proto.strata.coordinator.v1.Coordinator(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return new Promise<CoordinatorStatus__Output>((resolve, reject) =>
    client.GetStatus({}, { deadline: Date.now() + 5_000 }, (err, res) => (err || !res ? reject(err) : resolve(res))),
  ).finally(() => client.close());
}

const config = (over: Record<string, string>) =>
  loadConfig(coordinatorConfigSpec, {
    argv: Object.entries({ 'grpc-host': '127.0.0.1', 'grpc-port': '0', 'http-host': '127.0.0.1', 'http-port': '0', 'session-ttl-ms': '2000', ...over })
      .flatMap(([k, v]) => [`--${k}`, v]),
    env: {},
  });

describe('coordinator role', () => {
  let dir: string;
  let store: MetadataStore;
  const running: RunningCoordinator[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'strata-coordinator-'));
    store = await EmbeddedMetadataStore.open({ dir: join(dir, 'metadata'), logger: silentLogger() });
  });
  afterAll(async () => {
    for (const r of running) await r.stop().catch(() => undefined);
    await store?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('two coordinators: one leads (GetStatus, metric, duty); when it stops the other takes over within TTL + 1 s', async () => {
    const duties: string[] = [];
    const ended: string[] = [];
    const duty = (id: string) => ({
      name: 'probe',
      run: async (ctx: LeaderContext) => {
        duties.push(id);
        await new Promise<void>((r) => ctx.signal.addEventListener('abort', () => r(), { once: true }));
        ended.push(id);
      },
    });
    const a = await startCoordinator(config({ 'coordinator-id': 'a' }), { logger: silentLogger(), metadata: store, leaderDuties: [duty('a')] });
    running.push(a);
    const b = await startCoordinator(config({ 'coordinator-id': 'b' }), { logger: silentLogger(), metadata: store, leaderDuties: [duty('b')] });
    running.push(b);
    await waitFor('a leader', () => (a.isLeader() || b.isLeader()) || undefined);
    await new Promise((r) => setTimeout(r, 300));
    const [leader, follower] = a.isLeader() ? [a, b] : [b, a];
    expect(follower.isLeader()).toBe(false);
    expect(duties).toEqual([leader.coordinatorId]);

    const s = await status(leader.grpcPort);
    expect(s).toMatchObject({ coordinatorId: leader.coordinatorId, isLeader: true, leaderId: leader.coordinatorId });
    expect(await status(follower.grpcPort)).toMatchObject({ isLeader: false, leaderId: leader.coordinatorId });
    const ready = await fetch(`http://127.0.0.1:${follower.httpPort}/readyz`);
    expect(ready.status).toBe(200);
    const metrics = await (await fetch(`http://127.0.0.1:${leader.httpPort}/metrics`)).text();
    expect(metrics).toMatch(/strata_coordinator_is_leader\{[^}]*\} 1/);
    expect(await (await fetch(`http://127.0.0.1:${follower.httpPort}/metrics`)).text()).toMatch(/strata_coordinator_is_leader\{[^}]*\} 0/);

    const stoppedAt = Date.now();
    await leader.stop();
    running.splice(running.indexOf(leader), 1);
    expect(ended).toEqual([leader.coordinatorId]);
    await waitFor('the follower to lead', () => follower.isLeader() || undefined, 5_000, 20);
    expect(Date.now() - stoppedAt).toBeLessThanOrEqual(2_000 + 1_000);
    expect(duties).toEqual([leader.coordinatorId, follower.coordinatorId]);
    expect(await status(follower.grpcPort)).toMatchObject({ isLeader: true, leaderId: follower.coordinatorId });
  });

  test('relative embedded URLs resolve against the working directory', () => {
    expect(resolveMetadataUrl('embedded://./data/metadata')).toBe(`embedded://${join(process.cwd(), 'data/metadata')}`);
    expect(resolveMetadataUrl('embedded:///abs/x')).toBe('embedded:///abs/x');
    expect(resolveMetadataUrl('etcd://h:1')).toBe('etcd://h:1');
  });

  test('bad metadata URLs are CONFIG errors', async () => {
    for (const url of ['zk://x:1', 'etcd://', 'etcd://nohostport', 'embedded://relative/dir']) {
      await expect(createMetadataStore(url, { logger: silentLogger() })).rejects.toMatchObject({ code: 'CONFIG' });
    }
  });
});

describe('coordinator role on etcd', () => {
  let etcd: EtcdCluster;
  let coordinator: RunningCoordinator | undefined;
  beforeAll(async () => {
    etcd = await EtcdCluster.start({ members: 1 });
  });
  afterAll(async () => {
    await coordinator?.stop().catch(() => undefined);
    await etcd?.stop();
  });

  test('becomes ready and leader; loses readiness and leadership while etcd is paused, regains them after', async () => {
    coordinator = await startCoordinator(config({ 'metadata-url': etcd.url, cluster: unique('c') }), { logger: silentLogger() });
    const port = coordinator.httpPort;
    await waitFor('ready', async () => ((await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200) || undefined);
    await waitFor('leader', () => coordinator!.isLeader() || undefined);
    const pausedAt = Date.now();
    etcd.pause(0);
    try {
      // Both within 5 s of the pause. Leadership may go a moment before the session is declared lost
      // (the elector steps down on its own clock first), so readiness is waited for, not sampled once.
      await waitFor('leadership lost', () => !coordinator!.isLeader() || undefined, 5_000, 20);
      await waitFor('not ready', async () => ((await fetch(`http://127.0.0.1:${port}/readyz`)).status === 503) || undefined, Math.max(1, pausedAt + 5_000 - Date.now()), 20);
    } finally {
      etcd.resume(0);
    }
    await waitFor('leader again', () => coordinator!.isLeader() || undefined, 20_000);
    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
  });
});
