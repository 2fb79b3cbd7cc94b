/**
 * The MetadataStore contract (store.ts), written once and run against every implementation:
 * embedded, a single etcd, and a 3-member etcd cluster that loses a member mid-suite.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFile, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { silentLogger } from '@strata/runtime';
import {
  BadVersionError, CompactedError, EmbeddedMetadataStore, MetadataUnavailableError, SessionLostError, listAll,
  type EmbeddedMetadataStoreOptions, type MetadataStore, type WatchEvent, type Watcher,
} from '../src/index.js';

export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');

export interface ContractTarget {
  kind: 'etcd' | 'embedded';
  /** A new client of the same data (embedded: the one store, shared; its close() is a no-op). */
  client(): Promise<MetadataStore>;
  /** etcd: the URL and cluster a child process uses to reach the same data. */
  url?: string;
  cluster?: string;
  /**
   * etcd: a client for the watch test, and a fault that breaks its connection (restart the member it
   * talks to). The writer uses `client()`.
   */
  watchClient?(): Promise<MetadataStore>;
  disruptWatchClient?(): Promise<void>;
  /** etcd: how many times watch streams of `watchClient()` stores were re-established (proves the fault bit). */
  watchResumes?(): number;
  /** Makes revisions up to now unavailable to watches (etcd: compact; embedded: overflow the history). */
  compact(store: MetadataStore): Promise<void>;
  /** etcd: stop (SIGSTOP) / continue every member. */
  pauseAll?(): void;
  resumeAll?(): void;
  /** A client that talks to the member `midSuite` kills first (and can fail over to the others). */
  victimClient?(): Promise<MetadataStore>;
  /** Called by a test in the middle of the suite (the 3-member cluster kills a member there). */
  midSuite?(): Promise<void>;
  stop(): Promise<void>;
}

export const unique = (what: string) => `${what}-${randomBytes(4).toString('hex')}`;

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Retries a write through transient unavailability (a member restarting); CAS losses are returned. */
async function retrying<T>(fn: () => Promise<T>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof MetadataUnavailableError) || Date.now() > deadline) throw err;
      await sleep(100);
    }
  }
}

/** A child node process with its stdout lines; killed by pid in `stopAll`. */
export class Child {
  readonly lines: string[] = [];
  private readonly waiters: { match: RegExp; resolve: (line: string) => void }[] = [];
  readonly proc: ChildProcess;
  readonly exited: Promise<void>;

  constructor(script: string, args: string[]) {
    this.proc = spawn(process.execPath, [join(FIXTURES, script), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    this.proc.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (process.env.STRATA_TEST_CHILD_LOGS) process.stderr.write(`[${script} ${this.proc.pid}] ${d.toString()}`);
    });
    this.exited = new Promise((resolve) => this.proc.once('exit', () => resolve()));
    this.proc.once('exit', (code, signal) => {
      if (code !== 0 && signal !== 'SIGKILL' && stderr) console.error(`${script} exited ${code ?? signal}: ${stderr}`);
    });
    createInterface({ input: this.proc.stdout! }).on('line', (line) => {
      this.lines.push(line);
      for (const w of [...this.waiters]) {
        if (w.match.test(line)) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    });
  }

  line(match: RegExp, timeoutMs = 15_000): Promise<string> {
    const seen = this.lines.find((l) => match.test(l));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no line ${match} from child; got ${this.lines.slice(-5).join(' | ')}`)), timeoutMs);
      this.waiters.push({ match, resolve: (l) => (clearTimeout(timer), resolve(l)) });
    });
  }

  async kill(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill('SIGKILL');
    await this.exited;
  }
}

/** Collects a watch's events; `until` waits for a condition on them. */
class Collector {
  readonly events: WatchEvent[] = [];
  errors: Error[] = [];
  onEvent = (e: WatchEvent) => void this.events.push(e);
  onError = (e: Error) => void this.errors.push(e);
  until(what: string, pred: (events: WatchEvent[]) => boolean, timeoutMs = 15_000): Promise<true> {
    return waitFor(what, () => pred(this.events) || undefined, timeoutMs);
  }
}

export function metadataContract(
  name: string,
  kind: ContractTarget['kind'],
  setup: () => Promise<ContractTarget>,
  options: { ttlMs?: number } = {},
): void {
  // 3 s rather than etcd's smallest useful 2 s: on a loaded 2-core machine a 1.5 s stall (the 2 s
  // session's loss window) happens, and a lost session is then correct but fails the timing asserts.
  const ttlMs = options.ttlMs ?? 3_000;

  describe(`MetadataStore contract: ${name}`, () => {
    let target: ContractTarget;
    let store: MetadataStore;
    const cleanups: (() => Promise<unknown>)[] = [];
    const children: Child[] = [];
    const client = async () => {
      const c = await target.client();
      cleanups.push(() => c.close());
      return c;
    };
    const child = (script: string, args: string[]) => {
      const c = new Child(script, args);
      children.push(c);
      return c;
    };

    beforeAll(async () => {
      target = await setup();
      store = await client();
    });

    afterAll(async () => {
      await Promise.allSettled(children.map((c) => c.kill()));
      for (const c of cleanups.reverse()) await c().catch(() => undefined);
      await target?.stop();
    });

    test('get, put, delete: versions and revisions', async () => {
      const key = unique('kv/basic');
      expect(await store.get(key)).toBeUndefined();
      const r1 = await store.put(key, 'one');
      expect(r1.version).toBe(1);
      const kv1 = await store.get(key);
      expect(kv1?.value.toString()).toBe('one');
      expect(kv1).toMatchObject({ key, version: 1, createRevision: r1.revision, modRevision: r1.revision });
      expect(kv1?.sessionId).toBeUndefined();
      const r2 = await store.put(key, Buffer.from([0, 1, 2, 255]));
      expect(r2.version).toBe(2);
      expect(r2.revision).toBeGreaterThan(r1.revision);
      const kv2 = await store.get(key);
      expect([...(kv2?.value ?? [])]).toEqual([0, 1, 2, 255]);
      expect(kv2).toMatchObject({ version: 2, createRevision: r1.revision, modRevision: r2.revision });
      expect(await store.currentRevision()).toBeGreaterThanOrEqual(r2.revision);
      expect(await store.delete(key)).toBe(true);
      expect(await store.get(key)).toBeUndefined();
      expect(await store.delete(key)).toBe(false);
      // Re-created: versions start over, the create revision is new.
      const r3 = await store.put(key, 'again');
      expect(r3.version).toBe(1);
      expect((await store.get(key))?.createRevision).toBe(r3.revision);
    });

    test('compare-and-swap on the version; a failed CAS changes nothing', async () => {
      const key = unique('kv/cas');
      await store.put(key, 'a', { expectedVersion: 0 });
      const err = await store.put(key, 'b', { expectedVersion: 0 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BadVersionError);
      expect(err).toMatchObject({ code: 'BAD_VERSION', expectedVersion: 0, actualVersion: 1 });
      await expect(store.put(key, 'b', { expectedVersion: 2 })).rejects.toBeInstanceOf(BadVersionError);
      expect((await store.get(key))?.value.toString()).toBe('a');
      expect((await store.put(key, 'b', { expectedVersion: 1 })).version).toBe(2);
      await expect(store.delete(key, { expectedVersion: 1 })).rejects.toBeInstanceOf(BadVersionError);
      expect((await store.get(key))?.value.toString()).toBe('b');
      expect(await store.delete(key, { expectedVersion: 2 })).toBe(true);
      await expect(store.put(key, 'c', { expectedVersion: 3 })).rejects.toMatchObject({ actualVersion: 0 });
      expect(await store.get(key)).toBeUndefined();
    });

    test('bad input gets a typed error', async () => {
      await expect(store.put('', 'x')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await expect(store.put(unique('kv/bad'), 'x', { expectedVersion: -1 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await expect(store.list('kv/', { limit: 0 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await expect(store.list('kv/', { limit: 10_001 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await expect(store.createSession({ ttlMs: 10 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      for (const size of [1.6 * 1024 * 1024, 3 * 1024 * 1024]) {
        await expect(store.put(unique('kv/big'), Buffer.alloc(size))).rejects.toMatchObject({ code: 'TOO_LARGE', retriable: false });
      }
      // Just under the limit is fine.
      const ok = unique('kv/big-ok');
      await store.put(ok, Buffer.alloc(1024 * 1024));
      expect((await store.get(ok))?.value.length).toBe(1024 * 1024);
      await store.delete(ok);
    });

    test('N concurrent CAS writers on one key: exactly one wins each round', async () => {
      const key = unique('kv/race');
      const writers = await Promise.all(Array.from({ length: 5 }, () => client()));
      const rounds = 15;
      const winners: number[] = [];
      for (let round = 0; round < rounds; round++) {
        const results = await Promise.allSettled(writers.map((w, i) => w.put(key, `w${i}-r${round}`, { expectedVersion: round })));
        const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
        expect(won).toHaveLength(1);
        for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(BadVersionError);
        winners.push(won[0] as number);
        const kv = await store.get(key);
        expect(kv?.version).toBe(round + 1);
        expect(kv?.value.toString()).toBe(`w${won[0]}-r${round}`);
      }
      expect(winners).toHaveLength(rounds);
    });

    test('list a prefix in pages, in key order, bounded by the prefix', async () => {
      const prefix = `${unique('kv/list')}/`;
      const keys = Array.from({ length: 25 }, (_, i) => `${prefix}${String(i).padStart(3, '0')}`);
      for (const k of [...keys].reverse()) await store.put(k, k);
      await store.put(`${prefix.slice(0, -1)}0`, 'sibling, not under the prefix');
      const seen: string[] = [];
      let startAfter: string | undefined;
      let pages = 0;
      for (;;) {
        const page = await store.list(prefix, { limit: 7, startAfter });
        pages++;
        expect(page.items.length).toBeLessThanOrEqual(7);
        expect(page.revision).toBeGreaterThan(0);
        seen.push(...page.items.map((i) => i.key));
        if (!page.more) break;
        startAfter = page.items[page.items.length - 1]?.key;
      }
      expect(pages).toBe(4);
      expect(seen).toEqual(keys);
      const all = await listAll(store, prefix, { pageSize: 4 });
      expect(all.items.map((i) => i.key)).toEqual(keys);
      expect(all.items[3]?.value.toString()).toBe(keys[3]);
      const empty = await store.list(`${unique('kv/none')}/`);
      expect(empty).toMatchObject({ items: [], more: false });
      // startAfter past the prefix's range, or before it.
      expect(await store.list(prefix, { startAfter: `${prefix.slice(0, -1)}1` })).toMatchObject({ items: [], more: false });
      expect((await store.list(prefix, { startAfter: 'a', limit: 2 })).items.map((i) => i.key)).toEqual(keys.slice(0, 2));
    });

    test('watch a prefix from a revision: every change once, in order, deletes included', async () => {
      const prefix = `${unique('w/basic')}/`;
      const before = await store.put(`${prefix}a`, '1');
      await store.put(`${prefix}b`, '2');
      await store.put(`${prefix.slice(0, -1)}x`, 'outside');
      await store.delete(`${prefix}a`);
      const c = new Collector();
      const w = await store.watch(prefix, { fromRevision: before.revision, onEvent: c.onEvent, onError: c.onError });
      cleanups.push(() => w.close());
      const live = await store.put(`${prefix}c`, '3');
      await c.until('4 events', (e) => e.length >= 4);
      expect(c.events.map((e) => [e.type, e.key.slice(prefix.length)])).toEqual([
        ['put', 'a'], ['put', 'b'], ['delete', 'a'], ['put', 'c'],
      ]);
      const revs = c.events.map((e) => e.modRevision);
      expect(revs).toEqual([...revs].sort((a, b) => a - b));
      expect(new Set(revs).size).toBe(revs.length);
      expect(c.events[3]).toMatchObject({ type: 'put', version: 1, modRevision: live.revision });
      expect((c.events[3] as { value: Buffer }).value.toString()).toBe('3');
      expect(w.lastRevision).toBe(live.revision);
      await w.close();
      await store.put(`${prefix}d`, 'after close');
      await sleep(200);
      expect(c.events).toHaveLength(4);
      expect(c.errors).toEqual([]);
    });

    test('watch with no fromRevision starts after now', async () => {
      const prefix = `${unique('w/now')}/`;
      await store.put(`${prefix}old`, 'x');
      const c = new Collector();
      const w = await store.watch(prefix, { onEvent: c.onEvent });
      cleanups.push(() => w.close());
      await store.put(`${prefix}new`, 'y');
      await c.until('one event', (e) => e.length >= 1);
      await sleep(100);
      expect(c.events.map((e) => e.key)).toEqual([`${prefix}new`]);
      await w.close();
    });

    test('a watch from a compacted revision fails with CompactedError', async () => {
      const prefix = `${unique('w/compact')}/`;
      const first = await store.put(`${prefix}a`, '1');
      await store.put(`${prefix}b`, '2'); // so that compacting "up to now" removes the first revision
      await target.compact(store);
      const c = new Collector();
      const w = await store.watch(prefix, { fromRevision: first.revision, onEvent: c.onEvent, onError: c.onError });
      cleanups.push(() => w.close());
      await waitFor('CompactedError', () => c.errors.length > 0 || undefined);
      expect(c.errors[0]).toBeInstanceOf(CompactedError);
      expect(c.events).toEqual([]);
    });

    test('watch from a revision across a reconnect / restart: nothing missed, nothing repeated', async () => {
      const prefix = `${unique('w/resume')}/`;
      const total = 120;
      const disruptAt = 40;
      const c = new Collector();
      const start = (await store.currentRevision()) + 1;
      let watcher: Watcher;
      let watchStore: MetadataStore | undefined;
      if (target.kind === 'etcd') {
        watchStore = await target.watchClient!();
        cleanups.push(() => watchStore!.close());
        watcher = await watchStore.watch(prefix, { fromRevision: start, onEvent: c.onEvent, onError: c.onError });
      } else {
        watcher = await store.watch(prefix, { fromRevision: start, onEvent: c.onEvent, onError: c.onError });
      }
      cleanups.push(() => watcher.close());
      let disrupted: Promise<void> | undefined;
      const written: string[] = [];
      for (let i = 0; i < total; i++) {
        const key = `${prefix}${String(i).padStart(4, '0')}`;
        // Create-if-absent: a retry after an ambiguous failure cannot write twice.
        await retrying(() => store.put(key, `v${i}`, { expectedVersion: 0 })).catch((err: unknown) => {
          if (!(err instanceof BadVersionError)) throw err;
        });
        written.push(key);
        if (i === disruptAt) {
          disrupted = target.disruptWatchClient?.() ?? Promise.resolve();
        }
        if (i > disruptAt && i < disruptAt + 20) await sleep(50); // keep writing while the watcher is cut off
      }
      await disrupted;
      const resumesBefore = target.watchResumes?.();
      await c.until(`${total} events`, (e) => e.length >= total, 30_000);
      await sleep(300);
      expect(c.errors).toEqual([]);
      expect(c.events.map((e) => e.key)).toEqual(written);
      const revs = c.events.map((e) => e.modRevision);
      expect(new Set(revs).size).toBe(total);
      expect(revs).toEqual([...revs].sort((a, b) => a - b));
      expect(watcher.lastRevision).toBe(revs[revs.length - 1]);
      if (resumesBefore !== undefined) expect(target.watchResumes!()).toBeGreaterThan(0);
    });

    test('mid-suite fault (3-member cluster: a member is killed here and stays dead); watches and sessions on it fail over', async () => {
      const onVictim = target.victimClient ? await target.victimClient() : undefined;
      if (onVictim) cleanups.push(() => onVictim.close());
      const prefix = `${unique('w/victim')}/`;
      const c = new Collector();
      // The TTL must outlast a raft leader election (the victim may be the leader): the default 5 s.
      const session = await onVictim?.createSession({ ttlMs: 5_000 });
      const w = await onVictim?.watch(prefix, { onEvent: c.onEvent, onError: c.onError });
      if (w) cleanups.push(() => w.close());
      const written: string[] = [];
      const write = async (i: number) => {
        const key = `${prefix}${String(i).padStart(3, '0')}`;
        await retrying(() => store.put(key, 'v', { expectedVersion: 0 })).catch((err: unknown) => {
          if (!(err instanceof BadVersionError)) throw err;
        });
        written.push(key);
      };
      for (let i = 0; i < 10; i++) await write(i);
      await target.midSuite?.();
      for (let i = 10; i < 20; i++) await write(i);
      // The store still works through the surviving members.
      const key = unique('kv/after-fault');
      await retrying(() => store.put(key, 'ok'));
      expect((await store.get(key))?.value.toString()).toBe('ok');
      if (onVictim) {
        await c.until('20 events', (e) => e.length >= 20);
        await sleep(200);
        expect(c.events.map((e) => e.key)).toEqual(written);
        expect(c.errors).toEqual([]);
        // The session's keep-alives moved to a live member in time: never lost.
        await sleep(2_000);
        expect(session?.isAlive()).toBe(true);
        await session?.close();
      }
    });

    test('a session is kept alive; its keys live with it and vanish when it is closed', async () => {
      const key = unique('s/alive');
      const session = await store.createSession({ ttlMs });
      expect(session.ttlMs).toBe(ttlMs);
      await store.put(key, 'mine', { session });
      expect((await store.get(key))?.sessionId).toBe(session.id);
      await sleep(ttlMs * 2.5);
      expect(session.isAlive()).toBe(true);
      expect(session.signal.aborted).toBe(false);
      expect((await store.get(key))?.value.toString()).toBe('mine');
      await session.close();
      expect(session.isAlive()).toBe(false);
      expect(session.signal.aborted).toBe(true);
      expect(await store.get(key)).toBeUndefined();
      await expect(store.put(unique('s/late'), 'x', { session })).rejects.toBeInstanceOf(SessionLostError);
    });

    test('leader election among N candidates: exactly one leads; the next leads when it resigns', async () => {
      const election = unique('elect-local');
      const candidates = await Promise.all(
        ['c0', 'c1', 'c2'].map(async (name) => {
          const s = await client();
          const session = await s.createSession({ ttlMs });
          cleanups.push(() => session.close());
          return { name, s, session };
        }),
      );
      const leaders: string[] = [];
      const campaigns = candidates.map((c) =>
        c.s.campaign(election, c.name, { session: c.session }).then((l) => {
          leaders.push(c.name);
          return l;
        }),
      );
      await waitFor('a leader', () => leaders.length > 0 || undefined);
      await sleep(300);
      expect(leaders).toHaveLength(1);
      const first = leaders[0] as string;
      expect(await store.getLeader(election)).toBe(first);
      const firstIndex = candidates.findIndex((c) => c.name === first);
      const leadership = await campaigns[firstIndex]!;
      expect(leadership).toMatchObject({ election, candidate: first });
      expect(leadership.signal.aborted).toBe(false);
      await leadership.resign();
      expect(leadership.signal.aborted).toBe(true);
      await waitFor('a second leader', () => leaders.length > 1 || undefined);
      await sleep(300);
      expect(leaders).toHaveLength(2);
      expect(leaders[1]).not.toBe(first);
      expect(await store.getLeader(election)).toBe(leaders[1]);
      // The second leader's session ends: its leadership signal aborts, and the third takes over.
      const second = candidates.find((c) => c.name === leaders[1])!;
      const secondLeadership = await campaigns[candidates.indexOf(second)]!;
      await second.session.close();
      expect(secondLeadership.signal.aborted).toBe(true);
      await waitFor('a third leader', () => leaders.length > 2 || undefined);
      expect(await store.getLeader(election)).toBe(leaders[2]);
    });

    if (kind === 'etcd') etcdProcessTests(() => target, () => store, child, ttlMs);
    else embeddedProcessTests(() => target, () => store, child, ttlMs);
  });
}

type ChildFactory = (script: string, args: string[]) => Child;

/** etcd: sessions and leadership held by other PROCESSES, killed with SIGKILL; etcd itself paused. */
function etcdProcessTests(target: () => ContractTarget, store: () => MetadataStore, child: ChildFactory, ttlMs: number): void {
  test('keys bound to a session vanish within TTL + 1 s after the holding process is SIGKILLed', async () => {
    const t = target();
    const key = unique('s/killed');
    const holder = child('session-holder.mjs', [t.url!, t.cluster!, key, String(ttlMs)]);
    const ready = await holder.line(/^READY /);
    const kv = await store().get(key);
    expect(kv?.value.toString()).toBe(String(holder.proc.pid));
    expect(kv?.sessionId).toBe(ready.split(' ')[1]);
    const killedAt = Date.now();
    await holder.kill();
    await waitFor('the key to vanish', async () => ((await store().get(key).catch(() => 'error')) === undefined ? true : undefined), ttlMs + 5_000, 25);
    const elapsed = Date.now() - killedAt;
    expect(elapsed).toBeLessThanOrEqual(ttlMs + 1_000);
  });

  test('etcd unreachable (SIGSTOP) past the TTL: the holder is told it lost the session before anyone can take its key', async () => {
    const t = target();
    const holderStore = await t.client();
    const other = await t.client();
    try {
      const key = unique('s/paused');
      const session = await holderStore.createSession({ ttlMs });
      await holderStore.put(key, 'holder', { session });
      await sleep(ttlMs / 2);
      expect(session.isAlive()).toBe(true);
      const lost = new Promise<number>((resolve) => session.signal.addEventListener('abort', () => resolve(Date.now())));
      const pausedAt = Date.now();
      t.pauseAll!();
      let lostAt: number;
      try {
        lostAt = await Promise.race([lost, sleep(ttlMs + 3_000).then(() => -1)]);
      } finally {
        t.resumeAll!();
      }
      expect(lostAt).toBeGreaterThan(0);
      // The server renewed the lease at the earliest when the last keep-alive before the pause was
      // sent, so it cannot expire before pausedAt + (ttl - interval); we gave up no later than pausedAt + ttl.
      expect(lostAt - pausedAt).toBeLessThanOrEqual(ttlMs);
      expect(session.signal.reason).toBeInstanceOf(SessionLostError);
      expect(session.isAlive()).toBe(false);
      await expect(holderStore.put(unique('s/after-loss'), 'x', { session })).rejects.toBeInstanceOf(SessionLostError);
      // Another process can take the key only after the lease is gone; by then the holder knew.
      const takenAt = await waitFor('the other to take the key', async () => {
        try {
          await other.put(key, 'other', { expectedVersion: 0 });
          return Date.now();
        } catch (err) {
          if (err instanceof BadVersionError || err instanceof MetadataUnavailableError) return undefined;
          throw err;
        }
      }, ttlMs + 15_000, 50);
      expect(takenAt).toBeGreaterThan(lostAt);
      expect((await other.get(key))?.value.toString()).toBe('other');
    } finally {
      await holderStore.close();
      await other.close();
    }
  });

  test('a leader frozen past the TTL (blocked event loop) knows it is no longer leader the moment it wakes', async () => {
    const t = target();
    const holderStore = await t.client();
    try {
      const election = unique('elect-frozen');
      const session = await holderStore.createSession({ ttlMs });
      const leadership = await holderStore.campaign(election, 'frozen', { session });
      const rival = child('candidate.mjs', [t.url!, t.cluster!, election, 'rival', String(ttlMs)]);
      await rival.line(/^SESSION$/);
      await sleep(200);
      expect(rival.lines.some((l) => l.startsWith('LEADER'))).toBe(false);
      // Freeze: no timer, no keep-alive, no I/O callback runs. etcd expires the lease meanwhile.
      const until = Date.now() + ttlMs + 1_500;
      while (Date.now() < until) {
        // busy
      }
      // First thing after waking, before any timer could fire: the session is known to be gone.
      expect(session.isAlive()).toBe(false);
      expect(session.signal.aborted).toBe(true);
      expect(leadership.signal.aborted).toBe(true);
      await rival.line(/^LEADER rival /, ttlMs + 5_000);
      expect(await store().getLeader(election)).toBe('rival');
    } finally {
      await holderStore.close();
    }
  });

  test('leader election across processes: when the leader is SIGKILLed another leads within TTL + 1 s; terms never overlap', async () => {
    const t = target();
    const election = unique('elect-procs');
    const candidates = ['p0', 'p1', 'p2'].map((name) => ({ name, proc: child('candidate.mjs', [t.url!, t.cluster!, election, name, String(ttlMs)]) }));
    await Promise.all(candidates.map((c) => c.proc.line(/^SESSION$/)));
    // Leading now = its last LEADER line is not followed by a LOST line (and it was not killed).
    const killed = new Map<Child, number>();
    const leadingNow = () =>
      candidates.filter((c) => {
        const last = [...c.proc.lines].reverse().find((l) => l.startsWith('LEADER') || l.startsWith('LOST'));
        return last?.startsWith('LEADER') && !killed.has(c.proc);
      });
    await waitFor('a leader', () => leadingNow().length > 0 || undefined);
    await sleep(500);
    expect(leadingNow()).toHaveLength(1);
    const first = leadingNow()[0]!;
    expect(await store().getLeader(election)).toBe(first.name);
    const killedAt = Date.now();
    killed.set(first.proc, killedAt);
    await first.proc.kill();
    const next = await waitFor('a new leader', () => leadingNow()[0], ttlMs + 5_000, 20);
    expect(Date.now() - killedAt).toBeLessThanOrEqual(ttlMs + 1_000);
    await sleep(500);
    expect(leadingNow()).toEqual([next]);
    expect(await store().getLeader(election)).toBe(next.name);
    // Safety: the leadership terms of all processes, as each saw them, are disjoint in time.
    const terms: { name: string; from: number; to: number }[] = [];
    for (const c of candidates) {
      let from: number | undefined;
      for (const line of c.proc.lines) {
        const [word, a, b] = line.split(' ');
        if (word === 'LEADER') from = Number(b);
        if (word === 'LOST' && from !== undefined) {
          terms.push({ name: c.name, from, to: Number(a) });
          from = undefined;
        }
      }
      if (from !== undefined) terms.push({ name: c.name, from, to: killed.get(c.proc) ?? Infinity });
    }
    terms.sort((x, y) => x.from - y.from);
    for (let i = 1; i < terms.length; i++) expect(terms[i]!.from).toBeGreaterThanOrEqual(terms[i - 1]!.to);
  });
}

/** embedded: the process-kill cases become crash and restart persistence; the TTL is driven by a clock. */
function embeddedProcessTests(_target: () => ContractTarget, _store: () => MetadataStore, child: ChildFactory, ttlMs: number): void {
  const dirs: string[] = [];
  const tempDir = async () => {
    const d = await mkdtemp(join(tmpdir(), 'strata-embedded-'));
    dirs.push(d);
    return d;
  };
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  const open = (dir: string, extra: Partial<EmbeddedMetadataStoreOptions> = {}) =>
    EmbeddedMetadataStore.open({ dir, logger: silentLogger(), ...extra });

  test('acknowledged writes survive SIGKILL of the writing process; its session keys are gone; a torn tail is cut', async () => {
    const dir = await tempDir();
    const writer = child('embedded-writer.mjs', [dir]);
    await writer.line(/^READY$/);
    await writer.line(/^ACK 300$/, 30_000);
    await writer.kill();
    const ackedIds = writer.lines.filter((l) => l.startsWith('ACK ')).map((l) => Number(l.slice(4)));
    const acked = Math.max(...ackedIds);
    expect(ackedIds.length).toBeGreaterThan(300);
    const keyOf = (i: number) => `k/${String(i).padStart(7, '0')}`;

    let s = await open(dir);
    try {
      const present = new Set((await listAll(s, 'k/')).items.map((kv) => kv.key));
      const lostAcks = ackedIds.filter((i) => !present.has(keyOf(i)));
      expect(lostAcks).toEqual([]);
      expect((await s.get(keyOf(acked)))?.value.toString()).toBe(`value-${acked}`);
      expect(await s.get('held')).toBeUndefined();
    } finally {
      await s.close();
    }

    // A torn tail (a half-written record) is detected by length/CRC and cut, never served.
    const logPath = join(dir, 'log');
    const goodSize = (await stat(logPath)).size;
    await appendFile(logPath, Buffer.from([200, 0, 0, 0, 1, 2, 3, 4, 123, 34, 114]));
    s = await open(dir);
    try {
      expect((await stat(logPath)).size).toBe(goodSize);
      expect((await s.get(keyOf(acked)))?.value.toString()).toBe(`value-${acked}`);
      await s.put('after-tear', 'ok');
    } finally {
      await s.close();
    }
    s = await open(dir);
    try {
      expect((await s.get('after-tear'))?.value.toString()).toBe('ok');
    } finally {
      await s.close();
    }
  });

  test('a reopened store keeps data, versions and watch history; snapshots compact the history', async () => {
    const dir = await tempDir();
    let s = await open(dir, { snapshotEveryRecords: 1_000 });
    const first = await s.put('a', '1');
    await s.put('a', '2');
    await s.put('b', '3');
    await s.delete('b');
    const rev = await s.currentRevision();
    await s.close();

    s = await open(dir, { snapshotEveryRecords: 10 });
    expect(await s.get('a')).toMatchObject({ version: 2, createRevision: first.revision });
    expect(await s.get('b')).toBeUndefined();
    expect(await s.currentRevision()).toBe(rev);
    const c = new Collector();
    const w = await s.watch('', { fromRevision: first.revision, onEvent: c.onEvent, onError: c.onError });
    expect(c.events.map((e) => [e.type, e.key])).toEqual([['put', 'a'], ['put', 'a'], ['put', 'b'], ['delete', 'b']]);
    await w.close();
    for (let i = 0; i < 25; i++) await s.put(`n/${i}`, String(i)); // passes the snapshot threshold twice
    const last = await s.currentRevision();
    await s.close();

    s = await open(dir, { snapshotEveryRecords: 10 });
    try {
      expect((await listAll(s, 'n/')).items).toHaveLength(25);
      expect((await s.get('a'))?.version).toBe(2);
      expect(await s.currentRevision()).toBe(last);
      const old = new Collector();
      await s.watch('', { fromRevision: first.revision, onEvent: old.onEvent, onError: old.onError });
      await waitFor('CompactedError', () => old.errors.length > 0 || undefined);
      expect(old.errors[0]).toBeInstanceOf(CompactedError);
      const fresh = new Collector();
      const w2 = await s.watch('n/', { fromRevision: last + 1, onEvent: fresh.onEvent });
      await s.put('n/x', 'y');
      await fresh.until('one event', (e) => e.length === 1);
      await w2.close();
    } finally {
      await s.close();
    }
  });

  test('at the pending-writes limit, writes fail fast with a retriable error and change nothing', async () => {
    const dir = await tempDir();
    const s = await open(dir, { pendingWritesMax: 2 });
    try {
      const results = await Promise.allSettled(Array.from({ length: 30 }, (_, i) => s.put(`p/${i}`, String(i))));
      const rejected = results.flatMap((r, i) => (r.status === 'rejected' ? [{ i, reason: r.reason as unknown }] : []));
      expect(rejected.length).toBeGreaterThan(0);
      expect(rejected.length).toBeLessThan(30);
      for (const r of rejected) expect(r.reason).toMatchObject({ code: 'METADATA_UNAVAILABLE', retriable: true });
      for (const [i, r] of results.entries()) expect(await s.get(`p/${i}`)).toEqual(r.status === 'fulfilled' ? expect.anything() : undefined);
      // Once the queue drains, writes go through again.
      await s.put('p/after', 'ok');
    } finally {
      await s.close();
    }
  });

  test('one process per directory', async () => {
    const dir = await tempDir();
    const s = await open(dir);
    try {
      await expect(open(dir)).rejects.toMatchObject({ code: 'CONFIG' });
    } finally {
      await s.close();
    }
  });

  test('session expiry is driven by the clock: the holder learns first, then its keys and leadership go', async () => {
    const dir = await tempDir();
    let now = 1_000_000;
    const clock = { now: () => now, monotonic: () => now };
    const s = await open(dir, { clock, sessionCheckIntervalMs: 20 });
    try {
      const a = await s.createSession({ ttlMs });
      const b = await s.createSession({ ttlMs });
      await s.put('held', 'a', { session: a });
      const election = unique('elect-clock');
      const lead = await s.campaign(election, 'a', { session: a });
      const bCampaign = s.campaign(election, 'b', { session: b }).then(() => 'led', (err: unknown) => err);
      // Timers keep running while the clock stands still: the sessions are renewed, not expired.
      await sleep(ttlMs / 10);
      expect(a.isAlive()).toBe(true);
      let keyAtLoss: string | undefined = 'unset';
      a.signal.addEventListener('abort', () => {
        // Synchronously at loss, the key is still there: nobody else could have it yet.
        keyAtLoss = s['entries'].get('held') ? 'present' : 'gone';
      });
      now += ttlMs + 1; // the process "froze" past the TTL: every session of it expires
      await waitFor('a lost', () => a.signal.aborted || undefined, 2_000, 5);
      expect(keyAtLoss).toBe('present');
      expect(a.signal.reason).toBeInstanceOf(SessionLostError);
      expect(lead.signal.aborted).toBe(true);
      expect(await bCampaign).toBeInstanceOf(SessionLostError);
      expect(b.isAlive()).toBe(false);
      await waitFor('the key to vanish', async () => ((await s.get('held')) === undefined ? true : undefined), 2_000, 5);
      expect(await s.getLeader(election)).toBeUndefined();
      const c = await s.createSession({ ttlMs });
      await s.campaign(election, 'c', { session: c });
      expect(await s.getLeader(election)).toBe('c');
      await c.close();
      expect(await s.getLeader(election)).toBeUndefined();
    } finally {
      await s.close();
    }
  });
}
