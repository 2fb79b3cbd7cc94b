import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createMetadataStore, type MetadataStore } from '@strata/coordinator';
import { EtcdCluster } from '@strata/coordinator/testing';
import { createLogger, Random } from '@strata/runtime';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LedgerWriter } from '../src/client/api.js';
import { BookieLedgerClient } from '../src/client/client.js';
import { BookieProcesses } from '../src/testing/index.js';

// Real etcd, real bookie processes (journal + fsync), real gRPC, real SIGKILL.
let etcd: EtcdCluster;
let bookies: BookieProcesses;
let store: MetadataStore;
const clients: BookieLedgerClient[] = [];
const logger = createLogger({ level: process.env.TEST_LOG_LEVEL === 'debug' ? 'debug' : 'silent' });

function client(seed: number, options = {}): BookieLedgerClient {
  const c = new BookieLedgerClient({ metadata: store, logger, random: new Random(seed), options: { addTimeoutMs: 20_000, requestTimeoutMs: 5000, ...options } });
  clients.push(c);
  return c;
}

/** Appends `count` entries with a window in flight; calls `fault` once when `faultAtAck` entries were acknowledged. */
async function appendStream(w: LedgerWriter, count: number, size: number, faultAtAck: number, fault: () => void): Promise<number[]> {
  const order: number[] = [];
  const inFlight = new Set<Promise<unknown>>();
  const all: Array<Promise<number>> = [];
  let faulted = false;
  for (let i = 0; i < count; i++) {
    const p = w.append(payload(i, size)).then((id) => { order.push(id); return id; });
    all.push(p);
    const tracked = p.finally(() => inFlight.delete(tracked));
    tracked.catch(() => undefined);
    inFlight.add(tracked);
    if (!faulted && w.lastAddConfirmed >= faultAtAck) {
      faulted = true;
      fault();
    }
    if (inFlight.size >= 200) await Promise.race(inFlight);
  }
  await Promise.all(all);
  return order;
}

const payload = (i: number, size = 100) => Buffer.concat([Buffer.from(`entry-${i}:`), Buffer.alloc(size, i % 251)]);

async function waitFor(cond: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('condition not met in time');
}

async function registered(): Promise<string[]> {
  return (await store.list('bookies/available/')).items.map((kv) => kv.key.slice('bookies/available/'.length));
}

beforeAll(async () => {
  etcd = await EtcdCluster.start();
  store = await createMetadataStore(etcd.url, { logger, cluster: 'ledger-real' });
  bookies = await BookieProcesses.create({ metadataUrl: etcd.url, cluster: 'ledger-real' });
  await Promise.all(['b1', 'b2', 'b3', 'b4'].map((id) => bookies.start(id)));
}, 120_000);

afterAll(async () => {
  for (const c of clients) await c.close().catch(() => undefined);
  await store?.close().catch(() => undefined);
  await bookies?.stop();
  await etcd?.stop();
});

describe('ledger client against real bookies', () => {
  it('keeps every acknowledged entry through kill -9 of a bookie mid-stream and its restart', async () => {
    const c = client(1);
    // W = A = 2: every acknowledged entry of the first ensemble was acknowledged by both its bookies.
    const w = await c.createLedger({ ensembleSize: 2, writeQuorum: 2, ackQuorum: 2 });
    const victim = w.metadata.ensembles[0]!.bookies[0]!;
    const acked = await appendStream(w, 2000, 100, 700, () => void bookies.kill(victim));
    expect(acked).toEqual(Array.from({ length: 2000 }, (_, i) => i));
    await bookies.start(victim);
    const md = await c.getMetadata(w.ledgerId);
    expect(md.ensembles.length).toBeGreaterThanOrEqual(2);
    const lastOnVictim = md.ensembles[1]!.firstEntryId - 1;
    expect(lastOnVictim).toBeGreaterThan(0);
    // The restarted bookie alone serves every entry it acknowledged (journal replay after SIGKILL).
    const transport = c.context.transport;
    const got = [];
    let next = 0;
    while (next <= lastOnVictim) {
      const chunk = await transport.read(victim, { ledgerId: w.ledgerId, firstEntryId: next, lastEntryId: lastOnVictim, maxBytes: 1 << 20 });
      got.push(...chunk);
      next = chunk[chunk.length - 1]!.entryId + 1;
    }
    expect(got.map((e) => e.payload.toString())).toEqual(acked.slice(0, lastOnVictim + 1).map((i) => payload(i).toString()));
    await w.close();
    const r = await client(2).openLedger(w.ledgerId);
    const all = await r.read(0, 1999);
    expect(all.map((e) => e.payload.toString())).toEqual(acked.map((i) => payload(i).toString()));
  });

  it('a tailing reader follows an open ledger by the last-add-confirmed the bookies report', async () => {
    const w = await client(9).createLedger({ ensembleSize: 2, writeQuorum: 2, ackQuorum: 2 });
    for (let i = 0; i < 100; i++) await w.append(payload(i));
    const r = await client(10).openLedger(w.ledgerId);
    expect(r.metadata.state).toBe('OPEN');
    // Each add carries the LAC the writer knew when sending it: the bookies know 98 (entry 99's add).
    const lac = await r.readLastAddConfirmed();
    expect(lac).toBe(98);
    expect((await r.read(0, lac)).map((e) => e.entryId)).toEqual(Array.from({ length: 99 }, (_, i) => i));
    await expect(r.read(0, 99)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await w.close();
    expect(await r.readLastAddConfirmed()).toBe(99);
    expect((await r.read(99, 99))[0]!.payload.toString()).toBe(payload(99).toString());
  });

  it('ensemble change under a stream of adds (E=3 W=2 A=2, one bookie killed): nothing lost, duplicated or reordered', async () => {
    const c = client(3);
    const w = await c.createLedger({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 });
    const victim = w.metadata.ensembles[0]!.bookies[1]!;
    const order = await appendStream(w, 3000, 200, 1000, () => void bookies.kill(victim));
    expect(order).toEqual(Array.from({ length: 3000 }, (_, i) => i));
    await w.close();
    const md = await c.getMetadata(w.ledgerId);
    expect(md.ensembles.length).toBeGreaterThanOrEqual(2);
    expect(md.ensembles[md.ensembles.length - 1]!.bookies).not.toContain(victim);
    const r = await client(4).openLedger(w.ledgerId);
    const all = await r.read(0, 2999);
    expect(all.map((e) => e.entryId)).toEqual(order);
    expect(all.map((e) => e.payload.toString())).toEqual(order.map((i) => payload(i, 200).toString()));
    await bookies.start(victim);
  });

  it('replaces a bookie that stops answering (SIGSTOP) after the add timeout, losing nothing', async () => {
    const c = client(11, { addTimeoutMs: 1500 });
    const w = await c.createLedger({ ensembleSize: 2, writeQuorum: 2, ackQuorum: 2 });
    const victim = w.metadata.ensembles[0]!.bookies[1]!;
    try {
      const order = await appendStream(w, 1500, 100, 500, () => bookies.pause(victim));
      expect(order).toEqual(Array.from({ length: 1500 }, (_, i) => i));
    } finally {
      bookies.resume(victim);
    }
    await w.close();
    const md = await c.getMetadata(w.ledgerId);
    expect(md.ensembles[md.ensembles.length - 1]!.bookies).not.toContain(victim);
    const all = await client(12).openLedger(w.ledgerId).then((r) => r.read(0, 1499));
    expect(all.map((e) => e.payload.toString())).toEqual(Array.from({ length: 1500 }, (_, i) => payload(i).toString()));
  });

  it('survives the permanent loss of A - 1 bookies (E=W=3, A=2): recovery closes with every acknowledged entry', async () => {
    const c = client(5);
    const w = await c.createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 2 });
    const acked = await Promise.all(Array.from({ length: 300 }, (_, i) => w.append(payload(i))));
    const lost = w.metadata.ensembles[0]!.bookies[2]!;
    await bookies.destroy(lost);
    await waitFor(async () => !(await registered()).includes(lost));
    // The writer dies without closing; another client recovers the ledger.
    const r = await client(6).openLedger(w.ledgerId, { recovery: true });
    expect(r.metadata.state).toBe('CLOSED');
    expect(r.metadata.lastEntryId).toBeGreaterThanOrEqual(299);
    const all = await r.read(0, 299);
    expect(all.map((e) => e.payload.toString())).toEqual(acked.map((i) => payload(i).toString()));
    await expect(w.append(payload(300))).rejects.toMatchObject({ code: 'FENCED' });
    await bookies.start(lost);
  });

  it('a writer paused (SIGSTOP) while another client recovers its ledger adds nothing after SIGCONT', async () => {
    const log = join(bookies.dir, `writer-${Date.now()}.log`);
    const script = resolve(import.meta.dirname, '../dist/testing/ledger-writer-main.js');
    const writer: ChildProcess = spawn(process.execPath, [script, '--metadata-url', etcd.url, '--cluster', 'ledger-real', '--log', log, '--window', '20'], { stdio: 'ignore' });
    const exited = new Promise<number | null>((r) => writer.once('exit', (code) => r(code)));
    try {
      const lines = async () => (await readFile(log, 'utf8').catch(() => '')).split('\n').filter(Boolean);
      await waitFor(async () => (await lines()).filter((l) => l.startsWith('ack ')).length >= 300);
      writer.kill('SIGSTOP');
      const before = await lines();
      const ledgerId = Number(before[0]!.split(' ')[1]);
      const r = await client(7).openLedger(ledgerId, { recovery: true });
      const lastEntryId = r.metadata.lastEntryId;
      writer.kill('SIGCONT');
      expect(await exited).toBe(3);
      const after = await lines();
      const acks = after.filter((l) => l.startsWith('ack ')).map((l) => Number(l.slice(4)));
      expect(after[after.length - 1]).toBe('error FENCED');
      // Acknowledged in order, every one inside the recovered ledger, nothing acknowledged after recovery.
      expect(acks).toEqual(Array.from({ length: acks.length }, (_, i) => i));
      expect(acks.length).toBeGreaterThanOrEqual(300);
      expect(acks[acks.length - 1]!).toBeLessThanOrEqual(lastEntryId);
      const entries = await r.read(0, lastEntryId);
      expect(entries.map((e) => e.payload.toString())).toEqual(entries.map((e) => `entry-${e.entryId}`));
      expect(entries.length).toBe(lastEntryId + 1);
      expect(r.metadata.length).toBe(entries.reduce((n, e) => n + e.payload.length, 0));
      expect((await client(8).getMetadata(ledgerId)).state).toBe('CLOSED');
    } finally {
      writer.kill('SIGCONT');
      writer.kill('SIGKILL');
    }
  });
});
