/**
 * Definitive death detection (decision 0065): BrokerLiveness with a scripted probe (the rules), the TCP
 * probe against real sockets, revokeSession on both stores, and end to end on a real etcd with the real
 * BundleAssigner and broker stand-ins in processes of their own: SIGKILL frees the bundles long before
 * the session TTL could expire; SIGSTOP does not (they move only after the TTL).
 */
import { createServer, type Server } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { Random, silentLogger } from '@strata/runtime';
import { Registry } from 'prom-client';
import {
  BundleAssigner, createMetadataStore, EmbeddedMetadataStore, LeaderElector, listAll, namespaceBundles, SessionLostError,
  type AssignmentRecord, type MetadataStore, type OwnershipRecord, type Session,
} from '../src/index.js';
import { BrokerLiveness, tcpProbe, type ProbeOutcome } from '../src/assignment/liveness.js';
import type { BrokerRegistration } from '../src/assignment/protocol.js';
import { EtcdCluster } from '../src/testing/index.js';
import { Child, sleep, unique, waitFor } from './contract.js';

const cleanups: Array<() => Promise<unknown> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await Promise.resolve(c()).catch(() => undefined);
});

async function listen(): Promise<{ server: Server; address: string }> {
  const server = createServer((s) => s.on('error', () => undefined));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise((r) => server.close(r)));
  return { server, address: `127.0.0.1:${(server.address() as { port: number }).port}` };
}

describe('BrokerLiveness rules (scripted probe)', () => {
  function harness(script: (url: string) => ProbeOutcome, options: { intervalMs?: number; confirmAfterMs?: number } = {}) {
    const regs: BrokerRegistration[] = [];
    const revoked: string[] = [];
    const probed: string[] = [];
    const liveness = new BrokerLiveness({
      registrations: () => regs,
      revoke: async (sessionId) => {
        revoked.push(sessionId);
        return true;
      },
      probe: async (url) => {
        probed.push(url);
        return script(url);
      },
      logger: silentLogger(),
      options: { intervalMs: 10, failuresToRevoke: 2, ...options },
    });
    cleanups.push(() => liveness.stop());
    return { regs, revoked, probed, liveness };
  }
  const reg = (id: string, sessionId: string | undefined, url = `${id}:1`): BrokerRegistration => ({ id, url, startedAtMs: 0, sessionId });

  test('refusals after the broker was seen alive revoke its session; only the session probed', async () => {
    let state: ProbeOutcome = 'alive';
    const h = harness(() => state);
    h.regs.push(reg('a', 's1'));
    h.liveness.start();
    await waitFor('a probed alive', () => h.probed.length >= 2 || undefined);
    state = 'refused';
    await waitFor('revocation', () => h.revoked.length > 0 || undefined, 2_000);
    await sleep(100);
    expect(h.revoked).toEqual(['s1']); // once
  });

  test('an address never reached, timeouts in between, and brokers without a session id never revoke', async () => {
    let n = 0;
    const h = harness((url) => {
      if (url.startsWith('never')) return 'refused';
      // alive, then refused / unknown alternating: never two refusals in a row.
      n++;
      return n === 1 ? 'alive' : n % 2 === 0 ? 'refused' : 'unknown';
    });
    h.regs.push(reg('never', 's-never'), reg('flaky', 's-flaky'), reg('old', undefined));
    h.liveness.start();
    await waitFor('many probes', () => h.probed.filter((u) => u.startsWith('flaky')).length >= 20 || undefined, 5_000);
    expect(h.revoked).toEqual([]);
    expect(h.probed.some((u) => u.startsWith('old'))).toBe(false);
  });

  test('a refusal is confirmed by a probe confirmAfterMs later, not at the next round', async () => {
    let state: ProbeOutcome = 'alive';
    const refusedAt: number[] = [];
    const h = harness(() => {
      if (state === 'refused') refusedAt.push(Date.now());
      return state;
    }, { intervalMs: 1_000, confirmAfterMs: 10 });
    h.regs.push(reg('a', 's1'));
    h.liveness.start();
    await waitFor('a probed alive', () => h.probed.length >= 1 || undefined);
    state = 'refused';
    await waitFor('revocation', () => h.revoked.length > 0 || undefined, 5_000);
    expect(h.revoked).toEqual(['s1']);
    expect(refusedAt).toHaveLength(2);
    // The confirmation did not wait for the next round (a second away).
    expect(refusedAt[1]! - refusedAt[0]!).toBeLessThan(500);
  });

  test('a new session (restart) starts over: it must be seen alive again', async () => {
    let state: ProbeOutcome = 'alive';
    const h = harness(() => state);
    h.regs.push(reg('a', 's1'));
    h.liveness.start();
    await waitFor('a probed', () => h.probed.length >= 2 || undefined);
    state = 'refused';
    h.regs[0] = reg('a', 's2');
    await sleep(200);
    expect(h.revoked).toEqual([]);
  });
});

describe('tcpProbe', () => {
  test('alive when something listens, refused when nothing does, unknown for what it cannot tell', async () => {
    const { server, address } = await listen();
    expect(await tcpProbe(address, 1_000)).toBe('alive');
    await new Promise((r) => server.close(r));
    expect(await tcpProbe(address, 1_000)).toBe('refused');
    expect(await tcpProbe('not-an-address', 1_000)).toBe('unknown');
    expect(await tcpProbe(`${unique('nohost')}.invalid:6650`, 1_000)).toBe('unknown');
  });
});

async function revokeContract(store: MetadataStore): Promise<void> {
  const session: Session = await store.createSession({ ttlMs: 10_000 });
  const key = unique('revoked-key');
  await store.put(key, 'v', { session });
  expect(await store.revokeSession!(session.id)).toBe(true);
  await waitFor('the key to vanish', async () => ((await store.get(key)) === undefined) || undefined, 5_000);
  // The holder learns (etcd: on its next keep-alive, within a third of the TTL).
  await waitFor('the holder to learn', () => session.signal.aborted || undefined, 8_000);
  expect(session.signal.reason).toBeInstanceOf(SessionLostError);
  expect(await store.revokeSession!(session.id)).toBe(false);
}

describe('revokeSession', () => {
  test('embedded: keys vanish at once, the holder sees its session lost', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'strata-revoke-'));
    const store = await EmbeddedMetadataStore.open({ dir, logger: silentLogger() });
    cleanups.push(async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    });
    await revokeContract(store);
  });
});

describe('liveness end to end (real etcd, broker stand-ins as processes)', () => {
  let etcd: EtcdCluster;
  // Long, so that "moved before the TTL could have expired" is unambiguous: a keep-alive goes every
  // (10 s - 2.5 s margin) / 3 = 2.5 s, so the lease cannot expire earlier than 7.5 s after a kill.
  const VICTIM_TTL_MS = 10_000;
  const EARLIEST_EXPIRY_MS = 7_500;

  beforeAll(async () => {
    etcd = await EtcdCluster.start({ members: 1 });
  }, 60_000);
  afterAll(async () => {
    await etcd?.stop();
  });

  test('etcd: revokeSession ends a session of another client', async () => {
    const a = await createMetadataStore(etcd.url, { logger: silentLogger(), cluster: unique('c') });
    cleanups.push(() => a.close());
    await revokeContract(a);
  });

  /** The cluster: a namespace of 4 bundles owned by a stand-in process, a live survivor, the assigner leading. */
  async function setup() {
    const cluster = unique('c');
    const ns = `${unique('t')}/ns`;
    const specs = namespaceBundles(ns, { bundles: 4 });
    const store = await createMetadataStore(etcd.url, { logger: silentLogger(), cluster });
    cleanups.push(() => store.close());
    await store.put(`admin/policies/${ns}`, JSON.stringify({ bundles: 4 }));
    const victim = new Child('broker-stand-in.mjs', [etcd.url, cluster, 'victim', String(VICTIM_TTL_MS), ...specs.map((s) => s.id)]);
    cleanups.push(async () => {
      victim.proc.kill('SIGCONT');
      await victim.kill();
    });
    await victim.line(/^READY /, 20_000);

    // The survivor: registered with a listening address, acquires whatever is assigned to it.
    const { address } = await listen();
    const session = await store.createSession({ ttlMs: 3_000 });
    await store.put('brokers/survivor', JSON.stringify({ id: 'survivor', url: address, startedAtMs: Date.now(), sessionId: session.id }), { session });
    const follow = setInterval(() => void (async () => {
      for (const kv of (await listAll(store, 'assignments/')).items) {
        const a = JSON.parse(kv.value.toString()) as AssignmentRecord;
        if (a.brokerId !== 'survivor') continue;
        const bundle = kv.key.slice('assignments/'.length);
        await store.put(`ownership/${bundle}`, JSON.stringify({ brokerId: 'survivor', url: address, acquiredAtMs: Date.now() }), { expectedVersion: 0, session }).catch(() => undefined);
      }
    })().catch(() => undefined), 50);
    cleanups.push(() => clearInterval(follow));

    const metrics = new Registry();
    const elector = new LeaderElector({
      store, election: 'coordinator', candidate: 'c1', sessionTtlMs: 5_000, logger: silentLogger(), metrics,
      duties: [new BundleAssigner({ random: new Random(3), tickMs: 200, shedding: false, splitting: false, liveness: { intervalMs: 250 } })],
    });
    elector.start();
    cleanups.push(() => elector.stop());
    await waitFor('leadership', () => elector.leader || undefined);
    // Let the leader see the victim alive (a broker never reached is never revoked).
    await sleep(1_000);
    const owners = async () => {
      const out = new Map<string, string>();
      for (const s of specs) {
        const kv = await store.get(`ownership/${s.id}`);
        if (kv) out.set(s.id, (JSON.parse(kv.value.toString()) as OwnershipRecord).brokerId);
      }
      return out;
    };
    const all = async (brokerId: string) => {
      const o = await owners();
      return specs.every((s) => o.get(s.id) === brokerId) || undefined;
    };
    expect(await all('victim')).toBe(true);
    /** A counter of the duty on the coordinator's registry, summed over its labels. */
    const count = async (name: string) => ((await metrics.getSingleMetric(name)?.get())?.values ?? []).reduce((sum, v) => sum + v.value, 0);
    return { store, victim, all, specs, count };
  }

  test('SIGKILL: the leader revokes the dead broker\'s session and its bundles move long before its TTL could expire', async () => {
    const { store, victim, all, specs, count } = await setup();
    const killedAt = Date.now();
    await victim.kill();
    await waitFor('the survivor to own every bundle', () => all('survivor'), VICTIM_TTL_MS + 5_000, 20);
    const movedMs = Date.now() - killedAt;
    console.log(`liveness: bundles of a SIGKILLed broker owned by the survivor ${movedMs} ms after the kill (session TTL ${VICTIM_TTL_MS} ms)`);
    // Correctness, not speed: only a revocation can free them this early (the lease was still valid).
    expect(movedMs).toBeLessThan(EARLIEST_EXPIRY_MS);
    expect(await store.get('brokers/victim')).toBeUndefined();
    // On the coordinator's /metrics: one revocation, and an assignment for each of the victim's bundles.
    expect(await count('strata_coordinator_broker_sessions_revoked_total')).toBe(1);
    expect(await count('strata_coordinator_bundle_assignments_total')).toBeGreaterThanOrEqual(specs.length);
  }, 40_000);

  test('SIGSTOP: a paused broker is not revoked; its bundles move only after its TTL, and it learns it lost them', async () => {
    const { store, victim, all, count } = await setup();
    const stoppedAt = Date.now();
    victim.proc.kill('SIGSTOP');
    // Probes connect (the kernel accepts for a paused process): nothing moves before the lease expires.
    await waitFor('the survivor to own every bundle', () => all('survivor'), VICTIM_TTL_MS + 10_000, 50);
    const movedMs = Date.now() - stoppedAt;
    console.log(`liveness: bundles of a SIGSTOPped broker moved ${movedMs} ms after the stop (session TTL ${VICTIM_TTL_MS} ms)`);
    // Not revoked: the lease ran out. (It expires at its last renewal + 10 s; 5 s is a bound that holds
    // even if the stand-in's keep-alives ran late on a loaded machine before the stop.)
    expect(movedMs).toBeGreaterThanOrEqual(5_000);
    expect(await store.get('brokers/victim')).toBeUndefined();
    expect(await count('strata_coordinator_broker_sessions_revoked_total')).toBe(0);
    victim.proc.kill('SIGCONT');
    await victim.line(/^LOST$/, 10_000);
  }, 60_000);
});
