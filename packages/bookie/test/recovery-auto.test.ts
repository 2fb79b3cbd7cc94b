import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMetadataStore, type MetadataStore } from '@strata/coordinator';
import { Random, silentLogger, type Clock } from '@strata/runtime';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { LedgerMetadata } from '../src/client/api.js';
import { BookieLedgerClient } from '../src/client/client.js';
import { writeSet } from '../src/client/metadata.js';
import { AutoRecovery, UNDERREPLICATED_PREFIX } from '../src/recovery/auto-recovery.js';
import { FakeBookieTransport } from '../src/testing/index.js';

let dir: string;
let store: MetadataStore;
let transport: FakeBookieTransport;
let now = 0;
const clock: Clock = { now: () => 1_700_000_000_000 + now, monotonic: () => now };
const clients: BookieLedgerClient[] = [];

function client(seed: number): BookieLedgerClient {
  const c = new BookieLedgerClient({ metadata: store, logger: silentLogger(), random: new Random(seed), transport, options: { retryInitialMs: 1, retryMaxMs: 5 } });
  clients.push(c);
  return c;
}

function autoRecovery(seed: number): AutoRecovery {
  return new AutoRecovery({ metadata: store, logger: silentLogger(), clock, ledgerClient: client(seed), options: { lostBookieGraceMs: 10_000 } });
}

async function addBookies(...ids: string[]): Promise<void> {
  for (const id of ids) {
    transport.addBookie(id);
    await store.put(`bookies/available/${id}`, JSON.stringify({ address: '127.0.0.1:1' }));
  }
}

async function loseBookie(id: string): Promise<void> {
  transport.kill(id);
  transport.wipe(id);
  await store.delete(`bookies/available/${id}`);
}

/** Every entry 0..last is on every bookie of its write set in the current metadata. */
function assertFullyReplicated(md: LedgerMetadata, last: number): void {
  for (let n = 0; n <= last; n++) {
    let k = 0;
    while (k + 1 < md.ensembles.length && md.ensembles[k + 1]!.firstEntryId <= n) k++;
    for (const i of writeSet(n, md.ensembleSize, md.writeQuorum)) {
      const b = md.ensembles[k]!.bookies[i]!;
      expect(transport.entryIds(b, md.ledgerId), `entry ${n} on ${b}`).toContain(n);
    }
  }
}

const payload = (i: number) => Buffer.from(`entry-${i}`);

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'strata-recovery-auto-'));
  store = await createMetadataStore(`embedded://${dir}`, { logger: silentLogger() });
  transport = new FakeBookieTransport();
  now = 0;
});

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

describe('AutoRecovery', () => {
  it('waits for the grace period, then restores W copies of a closed ledger and removes its marker', async () => {
    await addBookies('b1', 'b2', 'b3', 'b4');
    const w = await client(1).createLedger({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 });
    for (let i = 0; i < 60; i++) await w.append(payload(i));
    await w.close();
    const lost = w.metadata.ensembles[0]!.bookies[1]!;
    const ar = autoRecovery(2);
    expect((await ar.runOnce()).lostBookies).toEqual([]);
    await loseBookie(lost);
    now += 5_000;
    // First seen missing now; the grace period runs from here.
    expect((await ar.runOnce()).lostBookies).toEqual([]);
    now += 6_000;
    expect((await ar.runOnce()).lostBookies).toEqual([]);
    expect((await store.list(UNDERREPLICATED_PREFIX)).items).toHaveLength(0);
    now += 5_000;
    const pass = await ar.runOnce();
    expect(pass.lostBookies).toEqual([lost]);
    expect(pass.replicated).toEqual([w.ledgerId]);
    const md = await client(3).getMetadata(w.ledgerId);
    expect(md.ensembles[0]!.bookies).not.toContain(lost);
    assertFullyReplicated(md, 59);
    expect((await store.list(UNDERREPLICATED_PREFIX)).items).toHaveLength(0);
    // Idempotent: another pass changes nothing.
    const again = await ar.runOnce();
    expect(again.replicated).toEqual([]);
    expect(await client(4).getMetadata(w.ledgerId)).toEqual(md);
  });

  it('fixes past ensembles of an open ledger without breaking its writer; the current ensemble waits for the close', async () => {
    await addBookies('b1', 'b2', 'b3', 'b4', 'b5');
    const w = await client(1).createLedger({ ensembleSize: 2, writeQuorum: 2, ackQuorum: 2 });
    for (let i = 0; i < 20; i++) await w.append(payload(i));
    const x = w.metadata.ensembles[0]!.bookies[0]!;
    // x dies: the writer moves on to a new ensemble at entry 20.
    await loseBookie(x);
    for (let i = 20; i < 40; i++) await w.append(payload(i));
    expect(w.metadata.ensembles).toHaveLength(2);
    const ar = autoRecovery(2);
    await ar.runOnce();
    now += 20_000;
    const pass = await ar.runOnce();
    expect(pass.replicated).toEqual([w.ledgerId]);
    let md = await client(3).getMetadata(w.ledgerId);
    expect(md.ensembles[0]!.bookies).not.toContain(x);
    assertFullyReplicated(md, 39);
    // The writer keeps going and closes (its CAS merges the re-replicated ensemble).
    for (let i = 40; i < 50; i++) await w.append(payload(i));
    await w.close();
    md = await client(4).getMetadata(w.ledgerId);
    expect(md).toMatchObject({ state: 'CLOSED', lastEntryId: 49 });
    expect(md.ensembles[0]!.bookies).not.toContain(x);

    // Now a bookie of the open ledger's current ensemble goes while the writer is idle.
    const w2 = await client(5).createLedger({ ensembleSize: 2, writeQuorum: 2, ackQuorum: 2 });
    for (let i = 0; i < 10; i++) await w2.append(payload(i));
    const z = w2.metadata.ensembles[0]!.bookies[0]!;
    expect(z).not.toBe(x);
    await loseBookie(z);
    await ar.runOnce();
    now += 20_000;
    const waiting = await ar.runOnce();
    expect(waiting.pending).toContain(w2.ledgerId);
    expect((await client(6).getMetadata(w2.ledgerId)).ensembles[0]!.bookies).toContain(z);
    // The writer closes (after replacing z itself on its next add); then auto-recovery fixes the rest.
    await w2.append(payload(10));
    await w2.close();
    const done = await ar.runOnce();
    expect(done.replicated).toContain(w2.ledgerId);
    assertFullyReplicated(await client(7).getMetadata(w2.ledgerId), 10);
  });

  it('resumes after its own crash from the marker, with the replacement it chose', async () => {
    await addBookies('b1', 'b2', 'b3');
    const w = await client(1).createLedger({ ensembleSize: 2, writeQuorum: 2, ackQuorum: 1 });
    for (let i = 0; i < 30; i++) await w.append(payload(i));
    await w.close();
    const [lost] = w.metadata.ensembles[0]!.bookies as [string, string];
    const spare = ['b1', 'b2', 'b3'].find((b) => !w.metadata.ensembles[0]!.bookies.includes(b))!;
    await loseBookie(lost);
    const first = autoRecovery(2);
    await first.runOnce();
    now += 20_000;
    // The replacement dies during the first copy: the pass leaves the marker behind.
    transport.kill(spare);
    const failed = await first.runOnce();
    expect(failed.pending).toEqual([w.ledgerId]);
    const marker = JSON.parse((await store.get(`${UNDERREPLICATED_PREFIX}${w.ledgerId}`))!.value.toString()) as { replacements: Record<string, string> };
    expect(Object.values(marker.replacements)).toEqual([spare]);
    transport.revive(spare);
    // A new instance (a new leader) resumes at once: no grace period for marked ledgers.
    now += 1;
    const second = autoRecovery(3);
    const pass = await second.runOnce();
    expect(pass.replicated).toEqual([w.ledgerId]);
    const md = await client(4).getMetadata(w.ledgerId);
    expect(md.ensembles[0]!.bookies).toContain(spare);
    assertFullyReplicated(md, 29);
  });

  it('replaces two lost bookies of one ensemble with two distinct bookies', async () => {
    await addBookies('b1', 'b2', 'b3', 'b4', 'b5');
    const w = await client(1).createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 2 });
    for (let i = 0; i < 25; i++) await w.append(payload(i));
    await w.close();
    const [l1, l2] = w.metadata.ensembles[0]!.bookies as [string, string, string];
    await loseBookie(l1);
    await loseBookie(l2);
    const ar = autoRecovery(5);
    await ar.runOnce();
    now += 20_000;
    expect((await ar.runOnce()).replicated).toEqual([w.ledgerId]);
    const md = await client(6).getMetadata(w.ledgerId);
    const ensemble = md.ensembles[0]!.bookies;
    expect(new Set(ensemble).size).toBe(3);
    expect(ensemble).not.toContain(l1);
    expect(ensemble).not.toContain(l2);
    assertFullyReplicated(md, 24);
  });
});
