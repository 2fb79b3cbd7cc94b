import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMetadataStore, type MetadataStore } from '@strata/coordinator';
import { Random, silentLogger } from '@strata/runtime';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BookieLedgerClient } from '../src/client/client.js';
import { coversAckQuorum } from '../src/client/ledger-recovery.js';
import { FakeBookieTransport } from '../src/testing/index.js';

let dir: string;
let store: MetadataStore;
let transport: FakeBookieTransport;
const clients: BookieLedgerClient[] = [];

async function addBookies(...ids: string[]): Promise<void> {
  for (const id of ids) {
    transport.addBookie(id);
    await store.put(`bookies/available/${id}`, JSON.stringify({ address: '127.0.0.1:1' }));
  }
}

function client(seed = 1, options: ConstructorParameters<typeof BookieLedgerClient>[0]['options'] = {}): BookieLedgerClient {
  const c = new BookieLedgerClient({ metadata: store, logger: silentLogger(), random: new Random(seed), transport, options: { retryInitialMs: 1, retryMaxMs: 5, ...options } });
  clients.push(c);
  return c;
}

const payload = (i: number) => Buffer.from(`entry-${i}`);

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'strata-ledger-quorum-'));
  store = await createMetadataStore(`embedded://${dir}`, { logger: silentLogger() });
  transport = new FakeBookieTransport();
});

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

describe('coversAckQuorum', () => {
  it('needs W - A + 1 answers in every write set', () => {
    expect(coversAckQuorum(new Set([0]), 2, 2, 2)).toBe(true);
    expect(coversAckQuorum(new Set([0]), 3, 3, 2)).toBe(false);
    expect(coversAckQuorum(new Set([0, 2]), 3, 3, 2)).toBe(true);
    // E=3, W=2, A=2: write sets {0,1} {1,2} {2,0}; one answer in each is enough.
    expect(coversAckQuorum(new Set([0, 1]), 3, 2, 2)).toBe(true);
    expect(coversAckQuorum(new Set([1]), 3, 2, 2)).toBe(false);
    // E=3, W=2, A=1: both of every write set.
    expect(coversAckQuorum(new Set([0, 1]), 3, 2, 1)).toBe(false);
    expect(coversAckQuorum(new Set([0, 1, 2]), 3, 2, 1)).toBe(true);
  });
});

describe('BookieLedgerClient over fake bookies', () => {
  it('allocates ids by CAS, stripes E=3 W=2, reads back, closes', async () => {
    await addBookies('b1', 'b2', 'b3');
    const c = client();
    const w1 = await c.createLedger({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 2, customMetadata: { topic: 'x' } });
    const w2 = await c.createLedger({ ensembleSize: 1, writeQuorum: 1, ackQuorum: 1 });
    expect(w2.ledgerId).toBe(w1.ledgerId + 1);
    const ids = await Promise.all(Array.from({ length: 30 }, (_, i) => w1.append(payload(i))));
    expect(ids).toEqual(Array.from({ length: 30 }, (_, i) => i));
    const ensemble = w1.metadata.ensembles[0]!.bookies;
    for (let n = 0; n < 30; n++) {
      const holders = ensemble.filter((b) => transport.entryIds(b, w1.ledgerId).includes(n));
      expect(holders.sort()).toEqual([ensemble[n % 3]!, ensemble[(n + 1) % 3]!].sort());
    }
    const read = await w1.read(0, 29);
    expect(read.map((e) => e.payload.toString())).toEqual(ids.map(payload).map(String));
    await w1.close();
    const md = await c.getMetadata(w1.ledgerId);
    expect(md).toMatchObject({ state: 'CLOSED', lastEntryId: 29, customMetadata: { topic: 'x' } });
    expect(md.length).toBe(ids.reduce((n, i) => n + payload(i).length, 0));
    const r = await client(2).openLedger(w1.ledgerId);
    expect((await r.read(10, 29, { maxBytes: 20 })).map((e) => e.entryId)).toEqual([10, 11]);
    await expect(w1.append(payload(1))).rejects.toMatchObject({ code: 'LEDGER_CLOSED' });
    // Striped reads merge the bookies' ranges; with one bookie down the others still cover every entry.
    transport.kill(ensemble[0]!);
    expect((await r.read(0, 29)).map((e) => e.payload.toString())).toEqual(ids.map((i) => payload(i).toString()));
  });

  it('acknowledges entry n only when 0..n reached the ack quorum, and bounds pending adds', async () => {
    await addBookies('b1', 'b2');
    const c = client(1, { maxPendingAdds: 4 });
    const w = await c.createLedger({ ensembleSize: 2, writeQuorum: 2, ackQuorum: 2 });
    const slow = w.metadata.ensembles[0]!.bookies[1]!;
    transport.pause(slow);
    const acked: number[] = [];
    const appends = Array.from({ length: 10 }, (_, i) => w.append(payload(i)).then((id) => { acked.push(id); return id; }));
    await new Promise((r) => setTimeout(r, 30));
    expect(acked).toEqual([]);
    // Only maxPendingAdds adds went out to the bookies.
    expect(transport.addLog.filter(([b]) => b === slow).length).toBe(4);
    transport.resume(slow);
    // Later adds are sent as slots free up; keep releasing.
    const timer = setInterval(() => transport.resume(slow), 5);
    await Promise.all(appends);
    clearInterval(timer);
    expect(acked).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(w.lastAddConfirmed).toBe(9);
    // An append waiting for a slot can be abandoned with its signal; it takes no entry id.
    transport.pause(slow);
    const full = Array.from({ length: 4 }, (_, i) => w.append(payload(10 + i)));
    const controller = new AbortController();
    const abandoned = w.append(payload(99), { signal: controller.signal });
    controller.abort(new Error('gave up'));
    await expect(abandoned).rejects.toThrow('gave up');
    const next = w.append(payload(14));
    const release = setInterval(() => transport.resume(slow), 5);
    expect(await Promise.all([...full, next])).toEqual([10, 11, 12, 13, 14]);
    clearInterval(release);
  });

  it('changes the ensemble when a bookie dies mid-stream: nothing lost, duplicated or reordered', async () => {
    await addBookies('b1', 'b2', 'b3', 'b4');
    const c = client(7);
    const w = await c.createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 2 });
    const first = w.metadata.ensembles[0]!.bookies;
    const acked: number[] = [];
    const appends: Array<Promise<number>> = [];
    for (let i = 0; i < 200; i++) {
      appends.push(w.append(payload(i)).then((id) => { acked.push(id); return id; }));
      if (i === 80) transport.kill(first[1]!);
      if (i % 20 === 0) await new Promise((r) => setImmediate(r));
    }
    await Promise.all(appends);
    expect(acked).toEqual(Array.from({ length: 200 }, (_, i) => i));
    const md = await c.getMetadata(w.ledgerId);
    expect(md.ensembles.length).toBe(2);
    const second = md.ensembles[1]!;
    expect(second.bookies[1]).not.toBe(first[1]);
    expect(second.bookies.filter((b, i) => b !== first[i])).toHaveLength(1);
    // The replacement holds every entry of its ensemble.
    const replacement = second.bookies[1]!;
    expect(transport.entryIds(replacement, w.ledgerId)).toEqual(Array.from({ length: 200 - second.firstEntryId }, (_, i) => second.firstEntryId + i));
    await w.close();
    const r = await client(3).openLedger(w.ledgerId);
    expect((await r.read(0, 199)).map((e) => e.payload.toString())).toEqual(acked.map((i) => payload(i).toString()));
  });

  it('fences the old writer on recovery; recovered ledger holds every acknowledged entry', async () => {
    await addBookies('b1', 'b2', 'b3');
    const writerClient = client(1);
    const w = await writerClient.createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 2 });
    for (let i = 0; i < 20; i++) await w.append(payload(i));
    // Entry 20 reaches one bookie only (not acknowledged): it may or may not survive recovery.
    const [b0, b1, b2] = w.metadata.ensembles[0]!.bookies as [string, string, string];
    transport.pause(b1);
    transport.pause(b2);
    const unacked = w.append(payload(20));
    unacked.catch(() => undefined);
    await new Promise((r) => setTimeout(r, 10));
    // The paused bookies come back while recovery runs: the old writer's add meets a fenced ledger.
    setTimeout(() => { transport.resume(b1); transport.resume(b2); }, 30);
    const recovered = await client(2).openLedger(w.ledgerId, { recovery: true });
    await expect(unacked).rejects.toMatchObject({ code: 'FENCED' });
    await expect(w.append(payload(21))).rejects.toMatchObject({ code: 'FENCED' });
    expect(recovered.metadata.state).toBe('CLOSED');
    expect(recovered.metadata.lastEntryId).toBe(20);
    expect(recovered.metadata.length).toBe(Array.from({ length: 21 }, (_, i) => payload(i).length).reduce((a, b) => a + b, 0));
    expect(transport.entryIds(b0, w.ledgerId)).toContain(20);
    const all = await recovered.read(0, recovered.metadata.lastEntryId);
    expect(all.slice(0, 20).map((e) => e.payload.toString())).toEqual(Array.from({ length: 20 }, (_, i) => payload(i).toString()));
    // Re-written to the whole write quorum with recovery adds.
    for (const b of [b0, b1, b2]) expect(transport.entryIds(b, w.ledgerId)).toContain(20);
    await expect(w.close()).rejects.toMatchObject({ code: 'FENCED' });
    // Opening a closed ledger for recovery again is a no-op.
    const again = await client(4).openLedger(w.ledgerId, { recovery: true });
    expect(again.metadata.lastEntryId).toBe(20);
  });

  it('recovers with a dead bookie (A - 1 lost) by changing the ensemble; concurrent recoveries agree', async () => {
    await addBookies('b1', 'b2', 'b3');
    const w = await client(1).createLedger({ ensembleSize: 2, writeQuorum: 2, ackQuorum: 2 });
    for (let i = 0; i < 10; i++) await w.append(payload(i));
    const [b0] = w.metadata.ensembles[0]!.bookies as [string, string];
    transport.kill(b0);
    const [r1, r2] = await Promise.all([client(2).openLedger(w.ledgerId, { recovery: true }), client(3).openLedger(w.ledgerId, { recovery: true })]);
    expect(r1.metadata.lastEntryId).toBe(9);
    expect(r2.metadata.lastEntryId).toBe(9);
    const md = await client(5).getMetadata(w.ledgerId);
    expect(md.state).toBe('CLOSED');
    expect((await r1.read(0, 9)).map((e) => e.payload.toString())).toEqual(Array.from({ length: 10 }, (_, i) => payload(i).toString()));
    await expect(w.append(payload(10))).rejects.toMatchObject({ code: 'FENCED' });
  });

  it('fails recovery (retriable) when too few bookies answer, and reads fall back to live replicas', async () => {
    await addBookies('b1', 'b2', 'b3');
    const w = await client(1).createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 2 });
    for (let i = 0; i < 5; i++) await w.append(payload(i));
    const [b0, b1] = w.metadata.ensembles[0]!.bookies as [string, string, string];
    transport.kill(b0);
    expect((await w.read(0, 4)).length).toBe(5);
    transport.kill(b1);
    await expect(client(2).openLedger(w.ledgerId, { recovery: true })).rejects.toMatchObject({ code: 'UNAVAILABLE', retriable: true });
    transport.revive(b1);
    const r = await client(3).openLedger(w.ledgerId, { recovery: true });
    expect(r.metadata.lastEntryId).toBe(4);
  });

  it('deletes ledgers and reports missing ones with NOT_FOUND', async () => {
    await addBookies('b1');
    const c = client();
    const w = await c.createLedger({ ensembleSize: 1, writeQuorum: 1, ackQuorum: 1 });
    await w.append(payload(0));
    await w.close();
    await c.deleteLedger(w.ledgerId);
    await expect(c.getMetadata(w.ledgerId)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(c.openLedger(w.ledgerId)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(c.createLedger({ ensembleSize: 2, writeQuorum: 2, ackQuorum: 2 })).rejects.toMatchObject({ code: 'NOT_ENOUGH_BOOKIES' });
  });

  it('fails the writer with NOT_ENOUGH_BOOKIES when no replacement exists, and still closes at the last acknowledged entry', async () => {
    await addBookies('b1', 'b2');
    const c = client(1, { ensembleChangeRetries: 2 });
    const w = await c.createLedger({ ensembleSize: 2, writeQuorum: 2, ackQuorum: 2 });
    for (let i = 0; i < 5; i++) await w.append(payload(i));
    transport.kill(w.metadata.ensembles[0]!.bookies[1]!);
    await expect(w.append(payload(5))).rejects.toMatchObject({ code: 'NOT_ENOUGH_BOOKIES' });
    await expect(w.append(payload(6))).rejects.toMatchObject({ code: 'NOT_ENOUGH_BOOKIES' });
    await w.close();
    expect(await c.getMetadata(w.ledgerId)).toMatchObject({ state: 'CLOSED', lastEntryId: 4 });
  });

  it('client close fails pending appends; the ledger stays open for recovery', async () => {
    await addBookies('b1');
    const c = client(1);
    const w = await c.createLedger({ ensembleSize: 1, writeQuorum: 1, ackQuorum: 1 });
    await w.append(payload(0));
    transport.pause('b1');
    const pending = w.append(payload(1));
    await c.close();
    await expect(pending).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    await expect(c.createLedger({ ensembleSize: 1, writeQuorum: 1, ackQuorum: 1 })).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    transport.resume('b1');
    const r = await client(2).openLedger(w.ledgerId, { recovery: true });
    expect(r.metadata.lastEntryId).toBeGreaterThanOrEqual(0);
    expect((await r.read(0, 0))[0]!.payload.toString()).toBe('entry-0');
  });

  it('a tailing reader keeps reading across the writer\'s ensemble change and a dead bookie', async () => {
    await addBookies('b1', 'b2', 'b3');
    const w = await client(1).createLedger({ ensembleSize: 2, writeQuorum: 2, ackQuorum: 2 });
    for (let i = 0; i < 10; i++) await w.append(payload(i));
    const r = await client(2).openLedger(w.ledgerId);
    expect(await r.readLastAddConfirmed()).toBe(8);
    const dead = w.metadata.ensembles[0]!.bookies[0]!;
    transport.kill(dead);
    for (let i = 10; i < 20; i++) await w.append(payload(i));
    expect(w.metadata.ensembles).toHaveLength(2);
    // The reader's metadata is stale (one ensemble); asking past its LAC refreshes both.
    const got = await r.read(0, 18);
    expect(got.map((e) => e.payload.toString())).toEqual(Array.from({ length: 19 }, (_, i) => payload(i).toString()));
    expect(r.metadata.ensembles).toHaveLength(2);
  });
});
