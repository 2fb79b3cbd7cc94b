// The container harness's etcd: three members of the locally built strata-etcd image on a user-defined
// network form a cluster with --pre-vote, keep serving with one member killed, and take it back.
// (The Strata roles join these tests once they run in the image: see containers-harness.ts.)
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Network, type StartedNetwork } from 'testcontainers';
import { etcdHealthy, startEtcdCluster, type EtcdCluster } from './containers-harness.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const dockerUp = spawnSync('docker', ['info'], { timeout: 20_000 }).status === 0;
if (!dockerUp) console.warn('SKIPPED test/cluster/containers-etcd.test.ts: no Docker engine answers `docker info` (bash scripts/setup.sh starts one)');

describe.skipIf(!dockerUp)('etcd in containers', () => {
  let network: StartedNetwork | undefined;
  let etcd: EtcdCluster | undefined;
  const dataDirs: string[] = [];
  const id = `strata-etcd-test-${process.pid}`;

  beforeAll(async () => {
    const built = spawnSync('bash', ['scripts/build-image.sh'], { cwd: root, encoding: 'utf8', env: { ...process.env, STRATA_IMAGE_ONLY_ETCD: '1' }, timeout: 300_000 });
    if (built.status !== 0) throw new Error(`build-image.sh failed: ${built.stderr}`);
    network = await new Network().start();
    etcd = await startEtcdCluster(network, id, 3, dataDirs);
  }, 120_000);

  afterAll(async () => {
    await Promise.allSettled((etcd?.members ?? []).map((c) => c.stop({ timeout: 1_000, remove: true })));
    await network?.stop().catch(() => undefined);
    for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
  });

  const etcdctl = (member: number, ...args: string[]) =>
    etcd!.members[member]!.exec(['/usr/local/bin/etcdctl', '--endpoints=http://127.0.0.1:2379', '--command-timeout=3s', ...args], { env: { ETCDCTL_API: '3' } });

  it('forms a healthy three-member cluster', async () => {
    expect(await etcdHealthy(etcd!, etcd!.members[0]!)).toBe(true);
    const members = await etcdctl(0, 'member', 'list');
    expect(members.output.trim().split('\n')).toHaveLength(3);
  });

  it('keeps serving with one member killed, and takes it back', async () => {
    expect((await etcdctl(0, 'put', 'drill-key', 'v1')).exitCode).toBe(0);
    const victim = etcd!.members[1]!;
    expect(spawnSync('docker', ['kill', victim.getId()]).status).toBe(0);
    expect(await etcdHealthy(etcd!, etcd!.members[0]!)).toBe(false);
    // A quorum (2 of 3) still commits.
    expect((await etcdctl(0, 'put', 'drill-key', 'v2')).exitCode).toBe(0);
    expect(spawnSync('docker', ['start', victim.getId()]).status).toBe(0);
    let healthy = false;
    for (let i = 0; i < 60 && !healthy; i++) {
      healthy = await etcdHealthy(etcd!, etcd!.members[0]!);
      if (!healthy) await new Promise((r) => setTimeout(r, 250));
    }
    expect(healthy).toBe(true);
    // The restarted member caught up: a local (serializable) read on it sees the write it missed.
    let value = '';
    for (let i = 0; i < 40 && value !== 'v2'; i++) {
      value = (await etcdctl(1, 'get', 'drill-key', '--print-value-only', '--consistency=s')).output.trim();
      if (value !== 'v2') await new Promise((r) => setTimeout(r, 250));
    }
    expect(value).toBe('v2');
  });
});
