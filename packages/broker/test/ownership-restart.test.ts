/**
 * Same-id restart (decision 0066): a broker process holding bundles on a long session is SIGKILLed and
 * a new OwnershipManager with the same broker id starts. It revokes the earlier process's session when
 * it registers, so the bundles are free (and assigned back) at once instead of after the old TTL.
 * The coordinator's liveness probe is off here, so only the restart path can free them early.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { BundleAssigner, createMetadataStore, LeaderElector, namespaceBundles } from '@strata/coordinator';
import { EtcdCluster } from '@strata/coordinator/testing';
import { Random, silentLogger } from '@strata/runtime';
import { OwnershipManager } from '../src/ownership/index.js';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');
const unique = (what: string) => `${what}-${randomBytes(4).toString('hex')}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('broker restarted with the same id (real etcd, real process)', () => {
  let etcd: EtcdCluster;
  const stops: (() => Promise<unknown>)[] = [];
  // Long, so that the difference is unambiguous: keep-alives go every (10 s - 2.5 s) / 3 = 2.5 s, so
  // the killed process's lease cannot expire earlier than 7.5 s after the kill.
  const OLD_TTL_MS = 10_000;
  const EARLIEST_EXPIRY_MS = 7_500;

  beforeAll(async () => {
    etcd = await EtcdCluster.start({ members: 1 });
  }, 60_000);
  afterEach(async () => {
    for (const s of stops.splice(0).reverse()) await s().catch(() => undefined);
  });
  afterAll(async () => {
    await etcd?.stop();
  });

  test('the new process revokes the old session and owns the bundles again without waiting for it', async () => {
    const cluster = unique('c');
    const ns = `${unique('t')}/ns`;
    const specs = namespaceBundles(ns, { bundles: 4 });
    const store = await createMetadataStore(etcd.url, { logger: silentLogger(), cluster });
    stops.push(() => store.close());
    await store.put(`admin/policies/${ns}`, JSON.stringify({ bundles: 4 }));

    const brokerId = unique('b');
    const child: ChildProcess = spawn(process.execPath, [join(FIXTURES, 'ownership-holder.mjs'), etcd.url, cluster, brokerId, String(OLD_TTL_MS), ...specs.map((s) => s.id)], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    stops.push(async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    });
    const lines: string[] = [];
    createInterface({ input: child.stdout! }).on('line', (l) => lines.push(l));
    expect(await waitFor('OWNED', () => lines.find((l) => l.startsWith('OWNED ')), 20_000)).toBe('OWNED 4');
    const old = await store.get(`brokers/${brokerId}`);
    expect(old?.sessionId).toBeDefined();

    const elector = new LeaderElector({
      store, election: 'coordinator', candidate: 'c1', sessionTtlMs: 5_000, logger: silentLogger(),
      duties: [new BundleAssigner({ random: new Random(5), tickMs: 200, shedding: false, splitting: false, liveness: false })],
    });
    elector.start();
    stops.push(() => elector.stop());
    await waitFor('leadership', () => elector.leader, 10_000);

    const killedAt = Date.now();
    child.kill('SIGKILL');
    await exited;
    const restarted = new OwnershipManager({ store, self: { brokerId, url: `${brokerId}:6650` }, sessionTtlMs: 3_000, logger: silentLogger() });
    await restarted.start();
    stops.push(() => restarted.stop({ drain: false }));
    await waitFor('the restarted broker to own every bundle', () => specs.every((s) => restarted.isOwned(s.id)), OLD_TTL_MS + 5_000);
    const ownedMs = Date.now() - killedAt;
    console.log(`same-id restart: bundles owned again ${ownedMs} ms after the kill (old session TTL ${OLD_TTL_MS} ms)`);
    expect(ownedMs).toBeLessThan(EARLIEST_EXPIRY_MS);
    const now = await store.get(`brokers/${brokerId}`);
    expect(now?.sessionId).not.toBe(old?.sessionId);
  }, 60_000);
});
