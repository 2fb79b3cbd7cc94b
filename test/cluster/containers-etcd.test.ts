// The container harness's etcd: three members of the locally built strata-etcd image on a user-defined
// network form a cluster with --pre-vote, keep serving with one member killed, and take it back.
// The last test is the regression test of docs/robustness.md "publishing stalled after an etcd
// container was killed" (decision 0014): Strata's metadata store, on the host, keeps a 3 s session
// and its calls going when the member it talks to is `docker kill`ed (its connections reset, and
// its address then drops whatever is sent to it: reconnecting hangs).
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Network, type StartedNetwork } from 'testcontainers';
import { createMetadataStore, type MetadataStore } from '@strata/coordinator';
import { silentLogger, StrataError } from '@strata/runtime';
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

  /** Index of the raft leader, asked of the members' JSON gateway from the host. */
  async function leaderIndex(ips: string[]): Promise<number | undefined> {
    const status = async (ip: string) =>
      (await (await fetch(`http://${ip}:2379/v3/maintenance/status`, { method: 'POST', body: '{}', signal: AbortSignal.timeout(2_000) })).json()) as {
        header: { member_id: string }; leader: string;
      };
    const all = await Promise.all(ips.map(status));
    return all.findIndex((s) => s.header.member_id === s.leader);
  }

  it('the metadata store rides through `docker kill` of the member it uses: a 3 s session survives, calls settle', async () => {
    const ips = etcd!.members.map((c) => c.getIpAddress(network!.getName()));
    const leader = await leaderIndex(ips);
    // A follower: a leader's death adds a raft election, which alone can outlast a 3 s session.
    const victim = [0, 1, 2].find((i) => i !== leader)!;
    const order = [victim, ...[0, 1, 2].filter((i) => i !== victim)];
    const url = `etcd://${order.map((i) => `${ips[i]}:2379`).join(',')}`;
    const stores: MetadataStore[] = [];
    try {
      // Two clients, as two processes: one only keeps its session alive (a broker with nothing else to
      // write, whose keep-alives alone must notice the member is gone), one makes calls.
      const holder = await createMetadataStore(url, { logger: silentLogger(), cluster: `kill-${process.pid}` });
      stores.push(holder);
      const s = await createMetadataStore(url, { logger: silentLogger(), cluster: `kill-${process.pid}` });
      stores.push(s);
      const session = await holder.createSession({ ttlMs: 3_000 });
      await holder.put('owned', 'x', { session });
      // The holder's session key, read through the other client.
      let lostAfter = -1;
      expect(spawnSync('docker', ['kill', etcd!.members[victim]!.getId()]).status).toBe(0);
      const killedAt = Date.now();
      session.signal.addEventListener('abort', () => (lostAfter = Date.now() - killedAt), { once: true });
      let slowest = 0;
      const failures: string[] = [];
      for (let n = 0; Date.now() - killedAt < 6_000; n++) {
        for (const [what, op] of [['get', () => s.get('owned')], ['put', () => s.put(`k/${n}`, 'v')]] as const) {
          const t0 = Date.now();
          try {
            await op();
          } catch (err) {
            expect(err, `${what}: ${String(err)}`).toBeInstanceOf(StrataError);
            failures.push(`${what}: ${String(err)}`);
          }
          slowest = Math.max(slowest, Date.now() - t0);
        }
        expect(lostAfter, 'session lost (ms after the kill)').toBe(-1);
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(slowest, failures.join('\n')).toBeLessThan(5_000);
      expect(failures.length, failures.join('\n')).toBeLessThanOrEqual(2);
      expect(session.isAlive()).toBe(true);
      expect((await s.get('owned'))?.sessionId).toBe(session.id);
      await session.close();
    } finally {
      await Promise.allSettled(stores.map((st) => st.close()));
      spawnSync('docker', ['start', etcd!.members[victim]!.getId()]);
      for (let i = 0; i < 60 && !(await etcdHealthy(etcd!, etcd!.members[(victim + 1) % 3]!)); i++) await new Promise((r) => setTimeout(r, 250));
    }
  }, 60_000);

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
