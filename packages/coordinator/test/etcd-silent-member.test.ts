// Regression test for docs/robustness.md "publishing stalled after an etcd container was killed"
// (decision 0014): the member a client talks to stops answering without closing its connections (a
// killed container's address drops packets; here the member is SIGSTOPped, which looks the same from
// the client: an open connection that never replies). A session with the broker's default TTL (3 s)
// must survive it, and every call must settle, with a result or a typed error, within its deadline.
// Before the fix each keep-alive waited up to the whole call timeout on the silent member, which used
// up the session's budget: the session was lost at the first keep-alive after the member fell silent.
import { silentLogger, StrataError } from '@strata/runtime';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BadVersionError, createMetadataStore, type MetadataStore, type WatchEvent } from '../src/index.js';
import { certainlyNotSent } from '../src/metadata/etcd.js';
import { EtcdCluster } from '../src/testing/index.js';
import { unique } from './contract.js';

const SESSION_TTL_MS = 3_000; // the broker's default (packages/broker/src/main.ts)
const SILENT_MS = 8_000;

describe('etcd: the member in use falls silent (no reply, connection left open)', () => {
  let etcd: EtcdCluster;
  let store: MetadataStore | undefined;
  let victim = -1;

  beforeAll(async () => {
    etcd = await EtcdCluster.start({ members: 3 });
  }, 60_000);

  afterAll(async () => {
    if (victim >= 0) etcd.resume(victim);
    await store?.close().catch(() => undefined);
    await etcd?.stop();
  }, 30_000);

  it(`a ${SESSION_TTL_MS} ms session survives, calls settle within their deadline, the watch goes on`, async () => {
    // A follower: its silence is then the client's problem alone, with no raft election in the way
    // (an election can by itself outlast a 3 s session's budget, whatever the client does).
    const leader = await etcd.leaderIndex();
    expect(leader, 'the etcd cluster has a leader').toBeDefined();
    victim = [0, 1, 2].find((i) => i !== leader)!;
    const others = [0, 1, 2].filter((i) => i !== victim);
    const cluster = unique('silent');
    // The victim first: the client starts on it.
    store = await createMetadataStore(etcd.urlOf(victim, ...others), { logger: silentLogger(), cluster });
    const s = store;
    const callTimeoutMs = 2_000;

    const session = await s.createSession({ ttlMs: SESSION_TTL_MS });
    await s.put('owned/key', 'mine', { session });
    const events: WatchEvent[] = [];
    const watcher = await s.watch('w/', { onEvent: (e) => events.push(e) });
    let version = (await s.put('cas', 'v0')).version;

    etcd.pause(victim);
    const pausedAt = Date.now();
    let lostAt: number | undefined;
    session.signal.addEventListener('abort', () => (lostAt = Date.now()), { once: true });

    const slowest = { ms: 0, what: '' };
    const failures: string[] = [];
    const settle = async <T>(what: string, op: () => Promise<T>): Promise<T | undefined> => {
      const t0 = Date.now();
      try {
        return await op();
      } catch (err) {
        // A typed error, never a raw gRPC one. An ambiguous write is MetadataUnavailableError
        // (decision 0012); a CAS whose first try was applied after all may then see BadVersionError.
        expect(err, `${what}: ${String(err)}`).toBeInstanceOf(StrataError);
        failures.push(`${what}: ${(err as StrataError).code}`);
        if (err instanceof BadVersionError) version = (await s.get('cas'))!.version;
        return undefined;
      } finally {
        const ms = Date.now() - t0;
        if (ms > slowest.ms) Object.assign(slowest, { ms, what });
      }
    };

    let n = 0;
    while (Date.now() - pausedAt < SILENT_MS) {
      n++;
      await settle(`get #${n}`, () => s.get('owned/key'));
      const put = await settle(`cas #${n}`, () => s.put('cas', `v${n}`, { expectedVersion: version }));
      if (put) version = put.version;
      await settle(`watched put #${n}`, () => s.put(`w/${n}`, String(n)));
      await settle(`list #${n}`, () => s.list('w/'));
      expect(session.isAlive(), `session lost ${lostAt! - pausedAt} ms after the member fell silent`).toBe(true);
      await new Promise((r) => setTimeout(r, 200));
    }
    const written = (await s.list('w/')).items.map((kv) => kv.key);

    // Reads fail over; a write may fail once (ambiguous) and then goes to a live member.
    expect(slowest.ms, `slowest call: ${slowest.what} (${failures.join(', ')})`).toBeLessThan(callTimeoutMs * 2 + 1_000);
    expect(failures.length, `failed calls: ${failures.join(', ')}`).toBeLessThanOrEqual(3);
    expect(session.isAlive()).toBe(true);
    expect((await s.get('owned/key'))?.sessionId).toBe(session.id);
    // The watch saw every put that was applied (its stream moved to a live member).
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && !written.every((k) => events.some((e) => e.key === k))) await new Promise((r) => setTimeout(r, 100));
    expect(written.filter((k) => !events.some((e) => e.key === k)), 'watch events missing').toEqual([]);

    etcd.resume(victim);
    victim = -1;
    await watcher.close();
    await session.close();
  }, 60_000);
});

describe('etcd: which failed writes may be retried on another member (decision 0014)', () => {
  it('a write that never got a connection may be; one that was sent and timed out may not', () => {
    // grpc-js's messages (1.14): the deadline passed while the call waited for a connection...
    expect(certainlyNotSent('4 DEADLINE_EXCEEDED: Deadline exceeded after 2.001s,Waiting for LB pick')).toBe(true);
    expect(certainlyNotSent('4 DEADLINE_EXCEEDED: Deadline exceeded after 2.000s,waiting for name resolution')).toBe(true);
    expect(certainlyNotSent('14 UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED 127.0.0.1:1')).toBe(true);
    // ... or after it was written to a member: ambiguous.
    expect(certainlyNotSent('4 DEADLINE_EXCEEDED: Deadline exceeded after 1.998s,LB pick: 0.001s,remote_addr=10.234.241.11:2379')).toBe(false);
    expect(certainlyNotSent('14 UNAVAILABLE: Connection dropped')).toBe(false);
  });
});
