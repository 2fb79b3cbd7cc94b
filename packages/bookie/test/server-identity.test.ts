// A bookie's identity (decision 0088): a cookie in its data dir and in metadata, so that the bookie
// keeps its id, and its data stays readable, when its address changes; and so that a data dir and a
// metadata store that disagree are refused at start. Real etcd, real bookie processes, real files.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { cp, mkdtemp, readFile, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMetadataStore, type MetadataStore } from '@strata/coordinator';
import { EtcdCluster, freePort } from '@strata/coordinator/testing';
import { createLogger, Random } from '@strata/runtime';
import { strataBin } from '@strata/runtime/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BookieLedgerClient } from '../src/client/client.js';
import { BookieProcess } from '../src/testing/bookie-process.js';

let etcd: EtcdCluster;
let metadata: MetadataStore;
let cluster: string;
const started: BookieProcess[] = [];
const clients: BookieLedgerClient[] = [];
const logger = createLogger({ level: process.env.TEST_LOG_LEVEL === 'debug' ? 'debug' : 'silent' });

beforeAll(async () => {
  etcd = await EtcdCluster.start();
  cluster = `id-${randomUUID().slice(0, 8)}`;
  metadata = await createMetadataStore(etcd.url, { logger, cluster });
}, 60_000);

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close().catch(() => undefined);
  for (const b of started.splice(0).reverse()) await b.destroy();
});

afterAll(async () => {
  await metadata?.close();
  await etcd?.stop();
});

async function startBookie(options: { dataDir?: string; args?: string[] } = {}): Promise<BookieProcess> {
  const b = await BookieProcess.start({ metadataUrl: etcd.url, cluster, dataDir: options.dataDir, args: ['--session-ttl-ms', '2000', ...(options.args ?? [])] });
  started.push(b);
  return b;
}

function client(seed: number): BookieLedgerClient {
  const c = new BookieLedgerClient({ metadata, logger, random: new Random(seed), options: { addTimeoutMs: 10_000, requestTimeoutMs: 3000 } });
  clients.push(c);
  return c;
}

const payload = (i: number) => Buffer.from(`entry-${i}`);
const tempDirs: string[] = [];

async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'strata-identity-'));
  tempDirs.push(d);
  return d;
}

afterAll(async () => {
  for (const d of tempDirs) await rm(d, { recursive: true, force: true });
});

/** Runs the real `strata bookie` and expects it to refuse to start: exit code and the stderr lines. */
async function refusal(flags: string[]): Promise<{ code: number | null; stderr: string[] }> {
  const args = [strataBin(), 'bookie', '--grpc-host', '127.0.0.1', '--grpc-port', '0', '--http-host', '127.0.0.1', '--http-port', '0',
    '--session-ttl-ms', '2000', '--log-level', 'fatal', ...flags];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  clearTimeout(timer);
  return { code, stderr: stderr.split('\n').filter((l) => l !== '') };
}

async function writeLedger(seed: number, entries: number): Promise<number> {
  const w = await client(seed).createLedger({ ensembleSize: 1, writeQuorum: 1, ackQuorum: 1 });
  for (let i = 0; i < entries; i++) await w.append(payload(i));
  await w.close();
  return w.ledgerId;
}

async function readLedger(seed: number, ledgerId: number): Promise<string[]> {
  const r = await client(seed).openLedger(ledgerId);
  return (await r.read(0, r.metadata.lastEntryId)).map((e) => e.payload.toString());
}

const expected = (n: number) => Array.from({ length: n }, (_, i) => payload(i).toString());

describe('bookie identity', () => {
  it('keeps its data readable through the ledger client after a restart on another port (issue 14)', async () => {
    const b1 = await startBookie();
    const b2 = await startBookie();
    const writerClient = client(1);
    const w = await writerClient.createLedger({ ensembleSize: 2, writeQuorum: 2, ackQuorum: 2 });
    for (let i = 0; i < 20; i++) await w.append(payload(i));
    await w.close();
    const ensemble = w.metadata.ensembles[0]!.bookies;
    // b1 stops cleanly, b2 is killed (its old registration lingers until its session expires).
    await b1.stop();
    await b2.kill('SIGKILL');
    const [oldId1, oldId2] = [b1.bookieId, b2.bookieId];
    await b1.restart({ grpcPort: 0 });
    await b2.restart({ grpcPort: 0 });
    expect(b1.bookieId).toBe(oldId1);
    expect(b2.bookieId).toBe(oldId2);
    expect([b1.bookieId, b2.bookieId].sort()).toEqual([...ensemble].sort());
    // A fresh client resolves the ids to the new addresses...
    const r = await client(2).openLedger(w.ledgerId);
    expect((await r.read(0, 19)).map((e) => e.payload.toString())).toEqual(Array.from({ length: 20 }, (_, i) => payload(i).toString()));
    // ...and so does the client that wrote, whose connections still aim at the old addresses.
    const again = await writerClient.openLedger(w.ledgerId);
    expect((await again.read(0, 19)).map((e) => e.payload.toString())).toEqual(Array.from({ length: 20 }, (_, i) => payload(i).toString()));
  }, 60_000);

  it('adopts the address-based id of a data dir from before cookies, and keeps it when the address changes', async () => {
    const port = await freePort();
    const legacyId = `127.0.0.1:${port}`;
    // What a bookie built before this change ran as: id = its address, no cookie anywhere.
    const old = await startBookie({ args: ['--grpc-port', String(port), '--bookie-id', legacyId] });
    const ledgerId = await writeLedger(10, 15);
    await old.stop();
    await unlink(join(old.dataDir, 'cookie.json'));
    await metadata.delete(`bookies/cookies/${legacyId}`);
    // Upgraded, started as before (no --bookie-id): the address it registered under becomes its id.
    const upgraded = await startBookie({ dataDir: old.dataDir, args: ['--grpc-port', String(port)] });
    expect(upgraded.bookieId).toBe(legacyId);
    const cookie = JSON.parse(await readFile(join(old.dataDir, 'cookie.json'), 'utf8')) as Record<string, unknown>;
    expect(cookie).toMatchObject({ formatVersion: 1, bookieId: legacyId, cluster });
    expect(await metadata.get(`bookies/cookies/${legacyId}`)).toBeDefined();
    expect(await readLedger(11, ledgerId)).toEqual(expected(15));
    // From now on the id is the cookie's: another port keeps it, and the data readable.
    await upgraded.stop();
    const moved = await startBookie({ dataDir: old.dataDir });
    expect(moved.bookieId).toBe(legacyId);
    expect(moved.address).not.toBe(legacyId);
    expect(await readLedger(12, ledgerId)).toEqual(expected(15));
  }, 60_000);

  it('refuses a data dir from before cookies on a random port (its old id cannot be known)', async () => {
    const b = await startBookie();
    await b.stop();
    await unlink(join(b.dataDir, 'cookie.json'));
    const r = await refusal(['--metadata-url', etcd.url, '--cluster', cluster, '--data-dir', b.dataDir]);
    expect(r.code).toBe(2);
    expect(r.stderr).toHaveLength(1);
    expect(r.stderr[0]).toMatch(/from before bookie cookies.*start it once with the --grpc-port/);
  }, 30_000);

  it('refuses a copy of a live bookie\'s data dir (its id registered at another address), after waiting out a session TTL', async () => {
    const live = await startBookie();
    const copy = await tempDir();
    await cp(live.dataDir, copy, { recursive: true });
    const t0 = Date.now();
    const r = await refusal(['--metadata-url', etcd.url, '--cluster', cluster, '--data-dir', copy]);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2000);
    expect(r.code).toBe(2);
    expect(r.stderr).toHaveLength(1);
    expect(r.stderr[0]).toContain(`bookie ${live.bookieId} is registered and alive at ${live.address}`);
    // The live bookie is untouched.
    const kv = await metadata.get(`bookies/available/${live.bookieId}`);
    expect(JSON.parse(kv!.value.toString())).toMatchObject({ address: live.address });
  }, 40_000);

  it('refuses an empty data dir for a bookie id whose cookie in metadata says it has data', async () => {
    const id = `fixed-${randomUUID().slice(0, 8)}`;
    const b = await startBookie({ args: ['--bookie-id', id] });
    await writeLedger(20, 3);
    await b.stop();
    const empty = await tempDir();
    const r = await refusal(['--metadata-url', etcd.url, '--cluster', cluster, '--data-dir', empty, '--bookie-id', id]);
    expect(r.code).toBe(2);
    expect(r.stderr).toHaveLength(1);
    expect(r.stderr[0]).toMatch(new RegExp(`data dir .* is empty but bookie ${id} has data by metadata.*mount that bookie's data disk`));
    // Another id is refused on the old data dir too: the cookie names its bookie.
    const other = await refusal(['--metadata-url', etcd.url, '--cluster', cluster, '--data-dir', b.dataDir, '--bookie-id', 'someone-else']);
    expect(other.code).toBe(2);
    expect(other.stderr[0]).toContain(`belongs to bookie ${id} but --bookie-id is someone-else`);
  }, 30_000);

  it('refuses a data dir of another cluster: by name, and by metadata instance under the same name', async () => {
    const b = await startBookie();
    await b.stop();
    const byName = await refusal(['--metadata-url', etcd.url, '--cluster', `${cluster}-other`, '--data-dir', b.dataDir]);
    expect(byName.code).toBe(2);
    expect(byName.stderr).toEqual([expect.stringContaining(`belongs to cluster ${cluster}, not ${cluster}-other`)]);
    // Same cluster name, another metadata store (wiped, or another cluster's): GC would delete every ledger.
    const embedded = `embedded://${join(await tempDir(), 'metadata')}`;
    const byInstance = await refusal(['--metadata-url', embedded, '--cluster', cluster, '--data-dir', b.dataDir]);
    expect(byInstance.code).toBe(2);
    expect(byInstance.stderr).toEqual([expect.stringContaining('belongs to another metadata store')]);
    // And the data dir is still good for its own cluster.
    await b.restart();
    expect(b.bookieId).toMatch(/^bk-/);
  }, 40_000);
});
