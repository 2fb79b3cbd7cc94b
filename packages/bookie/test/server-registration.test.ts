// Real etcd and real bookie processes: registration bound to a session, read-only past the disk
// threshold (said in etcd, adds refused, reads served), and GC of ledgers deleted from metadata.
import { randomUUID } from 'node:crypto';
import { createMetadataStore, type MetadataStore } from '@strata/coordinator';
import { EtcdCluster } from '@strata/coordinator/testing';
import { silentLogger } from '@strata/runtime';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BookieProcess } from '../src/testing/bookie-process.js';
import { RawBookieClient } from './fixtures/raw-bookie-client.js';

let etcd: EtcdCluster;
let metadata: MetadataStore;
let cluster: string;
const started: BookieProcess[] = [];
const clients: RawBookieClient[] = [];

beforeAll(async () => {
  etcd = await EtcdCluster.start();
  cluster = `bk-${randomUUID().slice(0, 8)}`;
  metadata = await createMetadataStore(etcd.url, { logger: silentLogger(), cluster });
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const b of started.splice(0).reverse()) await b.destroy();
});

afterAll(async () => {
  await metadata?.close();
  await etcd?.stop();
});

async function startBookie(args: string[] = []): Promise<BookieProcess> {
  const b = await BookieProcess.start({ metadataUrl: etcd.url, cluster, args: ['--session-ttl-ms', '2000', ...args] });
  started.push(b);
  return b;
}

function connect(b: BookieProcess): RawBookieClient {
  const c = new RawBookieClient(b.address);
  clients.push(c);
  return c;
}

async function eventually<T>(fn: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (ok(v) || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
}

const registration = async (id: string) => {
  const kv = await metadata.get(`bookies/available/${id}`);
  return kv ? (JSON.parse(kv.value.toString()) as Record<string, unknown>) : undefined;
};

describe('bookie registration', () => {
  it('registers under bookies/available/<id> on a session that dies with the process', async () => {
    const bookie = await startBookie();
    // The id is the cookie's (generated on first start, decision 0088), the address a field.
    expect(bookie.bookieId).toMatch(/^bk-[0-9a-f]{16}$/);
    const reg = await registration(bookie.bookieId);
    expect(reg).toMatchObject({ id: bookie.bookieId, address: bookie.address, readOnly: false });
    expect(reg?.httpAddress).toBe(`127.0.0.1:${bookie.httpPort}`);
    expect(Number(reg?.diskTotalBytes)).toBeGreaterThan(0);
    await bookie.kill('SIGKILL');
    expect(await eventually(() => registration(bookie.bookieId), (r) => r === undefined)).toBeUndefined();
    // A restarted bookie registers again.
    await bookie.restart();
    expect(await registration(bookie.bookieId)).toMatchObject({ readOnly: false });
    // A clean stop removes the key at once (the session is revoked).
    await bookie.stop();
    expect(await registration(bookie.bookieId)).toBeUndefined();
  });

  it('goes read-only past the disk threshold: says so in metadata, refuses adds, serves reads', async () => {
    const bookie = await startBookie();
    const c = connect(bookie);
    const data = Buffer.from('kept across the read-only switch');
    expect((await c.openStream().add({ ledgerId: 1, entryId: 0, payload: data })).errorCode).toBe('');
    await bookie.stop();
    // The same bookie, now with a threshold any disk passes.
    const ro = await BookieProcess.start({
      dataDir: bookie.dataDir, grpcPort: bookie.grpcPort, metadataUrl: etcd.url, cluster,
      args: ['--session-ttl-ms', '2000', '--disk-usage-threshold', '0.00001', '--disk-check-interval-ms', '200'],
    });
    started.push(ro);
    const c2 = connect(ro);
    expect((await c2.openStream().add({ ledgerId: 1, entryId: 1, payload: data })).errorCode).toBe('READ_ONLY');
    expect((await c2.read(1, 0, 0)).entries[0]?.payload.equals(data)).toBe(true);
    expect((await c2.info()).readOnly).toBe(true);
    expect(await eventually(() => registration(ro.bookieId), (r) => r?.readOnly === true)).toMatchObject({ readOnly: true });
    expect(await metadata.get(`bookies/readonly/${ro.bookieId}`)).toBeDefined();
  });

  it('GC removes local data of ledgers deleted from metadata, and only those', async () => {
    const bookie = await startBookie(['--gc-interval-ms', '300', '--gc-grace-ms', '0']);
    const c = connect(bookie);
    const stream = c.openStream();
    for (const l of [101, 102, 103]) {
      await metadata.put(`ledgers/${l}`, JSON.stringify({ ledgerId: l }));
      const r = await stream.addMany([0, 1, 2].map((e) => ({ ledgerId: l, entryId: e, payload: Buffer.alloc(1000, l) })));
      expect(r.every((x) => x.errorCode === '')).toBe(true);
    }
    await metadata.delete('ledgers/102');
    const gone = await eventually(
      () => c.state(102).then(() => false, (err: { code: string }) => err.code === 'NOT_FOUND'),
      (v) => v,
    );
    expect(gone).toBe(true);
    expect((await c.read(101, 0, 2)).entries).toHaveLength(3);
    expect((await c.read(103, 0, 2)).entries).toHaveLength(3);
    // And it stays gone after a restart (the deletion reached the checkpoint or is redone).
    await bookie.kill('SIGKILL');
    await bookie.restart();
    const c2 = connect(bookie);
    const stillGone = await eventually(
      () => c2.state(102).then(() => false, (err: { code: string }) => err.code === 'NOT_FOUND'),
      (v) => v,
    );
    expect(stillGone).toBe(true);
    expect((await c2.read(101, 0, 2)).entries).toHaveLength(3);
  });
});
