import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BookieLedgerClient, ledgerKey } from '@strata/bookie';
import { BookieProcesses } from '@strata/bookie/testing';
import { createMetadataStore, listAll, type MetadataStore } from '@strata/coordinator';
import { EtcdCluster } from '@strata/coordinator/testing';
import { createLogger, Random, silentLogger } from '@strata/runtime';
import { freePorts, spawnRole } from '@strata/runtime/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { comparePositions, type ManagedLedgerFactoryConfig, type Position } from '../src/storage/api.js';
import { ManagedLedgerFactoryImpl } from '../src/storage/factory.js';
import { decodeLedgerList, encodeLedgerList, listKey } from '../src/storage/formats.js';
import type { ManagedLedgerImpl } from '../src/storage/managed-ledger.js';
import { sweepOrphanLedgers } from '../src/storage/orphan-ledgers.js';
import { putLedgerMetadata } from './storage-helpers.js';

// Managed ledgers over real etcd and real bookie processes (fsync'd journals, gRPC), two "brokers"
// each with its own metadata connection and ledger client.
const CLUSTER = 'storage-real';
const logger = createLogger({ level: process.env.TEST_LOG_LEVEL === 'debug' ? 'debug' : 'silent' });
let etcd: EtcdCluster;
let bookies: BookieProcesses;
const stores: MetadataStore[] = [];
const clients: BookieLedgerClient[] = [];
const factories: ManagedLedgerFactoryImpl[] = [];

async function broker(seed: number, config: Partial<ManagedLedgerFactoryConfig>): Promise<{ factory: ManagedLedgerFactoryImpl; client: BookieLedgerClient }> {
  const store = await createMetadataStore(etcd.url, { logger, cluster: CLUSTER });
  stores.push(store);
  const client = new BookieLedgerClient({ metadata: store, logger, random: new Random(seed), options: { addTimeoutMs: 3000, requestTimeoutMs: 3000 } });
  clients.push(client);
  const factory = new ManagedLedgerFactoryImpl({ ledgerClient: client, metadata: store, logger }, config);
  factories.push(factory);
  return { factory, client };
}

const payload = (i: number) => Buffer.from(`message-${i}:${'x'.repeat(200)}`);

beforeAll(async () => {
  etcd = await EtcdCluster.start();
  bookies = await BookieProcesses.create({ metadataUrl: etcd.url, cluster: CLUSTER });
  await Promise.all(['b1', 'b2', 'b3'].map((id) => bookies.start(id)));
}, 120_000);

afterAll(async () => {
  for (const f of factories) await f.stop().catch(() => undefined);
  for (const c of clients) await c.close().catch(() => undefined);
  for (const s of stores) await s.close().catch(() => undefined);
  await bookies?.stop();
  await etcd?.stop();
});

describe('managed ledger over real bookies and etcd', () => {
  it('appends across rollovers, survives a takeover that fences the old owner, keeps cursors, trims', async () => {
    const name = `storage-real/ns/persistent/t-${Date.now().toString(36)}`;
    const config = { defaults: { maxEntriesPerLedger: 50, minLedgerRolloverMs: 0 } };
    const a = await broker(1, config);
    const mlA = await a.factory.open(name);
    const cursorA = await mlA.openCursor('sub', { initialPosition: 'earliest' });

    // Pipelined appends, 20 in flight at a time.
    const positions: Position[] = [];
    for (let i = 0; i < 120; i += 20) {
      positions.push(...(await Promise.all(Array.from({ length: 20 }, (_, j) => mlA.append(payload(i + j))))));
    }
    expect(new Set(positions.map((p) => p.ledgerId)).size).toBeGreaterThanOrEqual(3);
    await cursorA.ackCumulative(positions[59] as Position);
    await cursorA.ackIndividual([positions[70] as Position]);
    await cursorA.flush();

    // Broker B takes over (A is still alive: a zombie).
    const b = await broker(2, config);
    const mlB = await b.factory.open(name);
    await expect(mlA.append(payload(999))).rejects.toMatchObject({ code: 'FENCED' });
    expect(mlA.lost.aborted).toBe(true);

    const all = await mlB.read(mlB.firstPosition, { maxEntries: 1000, maxBytes: 10 * 1024 * 1024 });
    expect(all.map((e) => e.payload.toString())).toEqual(positions.map((_, i) => payload(i).toString()));
    const cursorB = mlB.getCursor('sub');
    expect(cursorB?.markDeletePosition).toEqual(positions[59]);
    expect(cursorB?.ackedRanges()).toEqual([{ from: positions[70], to: positions[70] }]);
    expect(cursorB?.backlog()).toBe(120 - 60 - 1);

    const next = await mlB.append(payload(120));
    expect(next.ledgerId).toBeGreaterThan((positions[119] as Position).ledgerId);

    // Everything consumed: the closed ledgers are trimmed from the list and deleted on the bookies.
    const oldLedgers = [...new Set(positions.map((p) => p.ledgerId))];
    await cursorB?.ackCumulative(next);
    await b.factory.maintainAll();
    expect((mlB as ManagedLedgerImpl).ledgerIds()).toEqual([next.ledgerId]);
    for (const id of oldLedgers) await expect(b.client.getMetadata(id)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await mlA.close();
    await mlB.close();
  });

  it('a broker process killed with SIGKILL mid-stream loses no acknowledged append and no persisted ack', async () => {
    const name = `storage-real/ns/persistent/crash-${Date.now().toString(36)}`;
    const script = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'storage-crash-writer.mjs');
    const child = spawn(process.execPath, [script, etcd.url, CLUSTER, name], { stdio: ['ignore', 'pipe', 'inherit'] });
    const acked = new Map<number, Position>();
    let persisted: Position | undefined;
    let buffered = '';
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    try {
      child.stdout.on('data', (chunk: Buffer) => {
        buffered += chunk.toString();
        const lines = buffered.split('\n');
        buffered = lines.pop() ?? '';
        for (const line of lines) {
          const [kind, a, b, c] = line.split(' ');
          if (kind === 'A') acked.set(Number(a), { ledgerId: Number(b), entryId: Number(c) });
          if (kind === 'F') persisted = { ledgerId: Number(a), entryId: Number(b) };
        }
      });
      const deadline = Date.now() + 60_000;
      while (acked.size < 400 || !persisted) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`writer made too little progress: ${acked.size} acked`);
        await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      child.kill('SIGKILL');
      await exited;
    }
    const { factory } = await broker(4, {});
    const ml = await factory.open(name);
    // Every append the dead broker saw acknowledged is there, with its payload, at its position.
    const byPosition = await ml.readPositions([...acked.values()]);
    expect(byPosition.length).toBe(acked.size);
    const payloadAt = new Map(byPosition.map((e) => [`${e.position.ledgerId}:${e.position.entryId}`, e.payload.toString()]));
    for (const [i, p] of acked) expect(payloadAt.get(`${p.ledgerId}:${p.entryId}`)).toBe(`crash-${i}`);
    // The cursor kept at least what was persisted (acks after the last flush may be redelivered).
    const cursor = ml.getCursor('sub');
    expect(cursor).toBeDefined();
    expect(comparePositions(cursor?.markDeletePosition as Position, persisted as Position)).toBeGreaterThanOrEqual(0);
    expect(comparePositions(cursor?.markDeletePosition as Position, ml.lastConfirmed)).toBeLessThanOrEqual(0);
    // Appends go on after the takeover, in a new ledger after everything recovered.
    const next = await ml.append(Buffer.from('after-crash'));
    expect(comparePositions(next, ml.firstPosition)).toBeGreaterThan(0);
    for (const p of acked.values()) expect(comparePositions(next, p)).toBeGreaterThan(0);
    await ml.close();
  });

  it('deletes the ledgers a crash between trim\'s two steps left behind, and only those (decision 0086)', async () => {
    const name = `storage-real/ns/persistent/orphans-${Date.now().toString(36)}`;
    const { factory, client } = await broker(5, { defaults: { maxEntriesPerLedger: 20, minLedgerRolloverMs: 0 } });
    const ml = await factory.open(name);
    const positions: Position[] = [];
    for (let i = 0; i < 70; i++) positions.push(await ml.append(payload(i)));
    const ids = (ml as ManagedLedgerImpl).ledgerIds();
    expect(ids.length).toBeGreaterThanOrEqual(4);
    await ml.close();
    // As trimming does, the list first, without the first two ledgers; then "the broker dies" before it
    // deletes them.
    const store = stores.at(-1) as MetadataStore;
    const kv = await store.get(listKey(name));
    const list = decodeLedgerList(kv?.value as Buffer, listKey(name));
    const [gone1, gone2] = ids;
    await store.put(listKey(name), encodeLedgerList({ ...list, ledgers: list.ledgers.slice(2) }), { expectedVersion: kv?.version });

    const { deleted } = await sweepOrphanLedgers({
      store, olderThan: { revision: await store.currentRevision(), timeMs: Date.now() }, maxDeletesPerRun: 1_000, logger: silentLogger(),
    });
    expect(deleted).toEqual(expect.arrayContaining([gone1, gone2]));
    // Other tests' orphans in this cluster may go too (the sweep had no grace period), but nothing any list names.
    const named = new Set<number>();
    for (const kv of (await listAll(store, 'managed-ledgers/')).items) {
      if (kv.key.includes('/cursors/')) continue;
      for (const l of decodeLedgerList(kv.value, kv.key).ledgers) named.add(l.ledgerId);
    }
    expect(deleted.filter((id) => named.has(id))).toEqual([]);
    for (const id of [gone1, gone2]) await expect(client.getMetadata(id as number)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    // What the list names is intact: a new owner reads every entry from the third ledger on.
    const reopened = await factory.open(name);
    const kept = positions.filter((p) => p.ledgerId !== gone1 && p.ledgerId !== gone2);
    const read = await reopened.readPositions(kept);
    expect(read.map((e) => e.payload.toString())).toEqual(kept.map((p) => payload(positions.indexOf(p)).toString()));
    for (const id of ids.slice(2)) {
      expect(deleted).not.toContain(id);
      expect((await client.getMetadata(id)).ledgerId).toBe(id);
    }
    await reopened.close();
  });

  it('the coordinator role runs the sweep: an orphan goes within an interval and its leader counts it', async () => {
    const store = await createMetadataStore(etcd.url, { logger, cluster: CLUSTER });
    stores.push(store);
    // A ledger of a deleted topic (no list), created two hours ago; and a listed one of a live topic.
    const hourAgo = (h: number) => Date.now() - h * 3_600_000;
    const live = `storage-real/ns/persistent/live-${Date.now().toString(36)}`;
    await putLedgerMetadata(store, 9_000_001, { managedLedger: `storage-real/ns/persistent/deleted-${Date.now().toString(36)}`, ctime: hourAgo(2) });
    await putLedgerMetadata(store, 9_000_002, { managedLedger: live, ctime: hourAgo(2) });
    await store.put(listKey(live), encodeLedgerList({
      ledgers: [{ ledgerId: 9_000_002, entries: 0, sizeBytes: 0, createdAtMs: hourAgo(2), closedAtMs: hourAgo(1) }], terminated: false,
    }));
    const [grpcPort, httpPort] = await freePorts(2);
    const coordinator = await spawnRole('coordinator', {
      'metadata-url': etcd.url, cluster: CLUSTER, 'grpc-host': '127.0.0.1', 'grpc-port': grpcPort!, 'http-host': '127.0.0.1',
      'http-port': httpPort!, 'log-level': 'warn', 'orphan-ledger-sweep-interval-ms': 200, 'orphan-ledger-grace-ms': 1_000,
    }, { httpPort: httpPort! });
    try {
      const deadline = Date.now() + 20_000;
      while ((await store.get(ledgerKey(9_000_001))) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(await store.get(ledgerKey(9_000_001))).toBeUndefined();
      expect(await store.get(ledgerKey(9_000_002))).toBeDefined();
      const metrics = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
      expect(metrics).toMatch(/^strata_coordinator_orphan_ledgers_deleted_total(\{[^}]*\})? 1$/m);
    } finally {
      await coordinator.kill();
    }
  });

  it('keeps appending through the SIGKILL of a bookie (ensemble change), nothing acknowledged lost', async () => {
    const name = `storage-real/ns/persistent/k-${Date.now().toString(36)}`;
    const { factory, client } = await broker(3, { defaults: { maxEntriesPerLedger: 1000, minLedgerRolloverMs: 0 } });
    const ml = await factory.open(name);
    const acked: Array<{ i: number; p: Position }> = [];
    for (let i = 0; i < 40; i++) acked.push({ i, p: await ml.append(payload(i)) });
    // Kill a bookie of the current ledger's ensemble, so that appends must move to the third one.
    const current = (ml as ManagedLedgerImpl).ledgerIds().at(-1) as number;
    const victim = (await client.getMetadata(current)).ensembles.at(-1)?.bookies[0] as string;
    expect(['b1', 'b2', 'b3']).toContain(victim);
    await bookies.kill(victim);
    for (let i = 40; i < 80; i++) {
      try {
        acked.push({ i, p: await ml.append(payload(i)) });
      } catch (err) {
        // A retriable failure is allowed (the managed ledger then rolls over); not a fence.
        expect((err as { retriable?: boolean }).retriable).toBe(true);
      }
    }
    expect(acked.length).toBeGreaterThan(40);
    if (process.env.TEST_LOG_LEVEL) console.log(`acknowledged ${acked.length} of 80 appends across the bookie kill`);
    const read = await ml.readPositions(acked.map((a) => a.p));
    expect(read.map((e) => e.payload.toString())).toEqual(acked.map((a) => payload(a.i).toString()));
    await ml.close();
    await bookies.start(victim);
  });
});
