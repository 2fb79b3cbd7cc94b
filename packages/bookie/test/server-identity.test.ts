// A bookie's identity (decision 0088): a cookie in its data dir and in metadata, so that the bookie
// keeps its id, and its data stays readable, when its address changes; and so that a data dir and a
// metadata store that disagree are refused at start. Real etcd, real bookie processes, real files.
import { randomUUID } from 'node:crypto';
import { createMetadataStore, type MetadataStore } from '@strata/coordinator';
import { EtcdCluster } from '@strata/coordinator/testing';
import { createLogger, Random } from '@strata/runtime';
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
});
