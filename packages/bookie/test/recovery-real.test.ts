import { createMetadataStore, type MetadataStore } from '@strata/coordinator';
import { EtcdCluster } from '@strata/coordinator/testing';
import { createLogger, Random } from '@strata/runtime';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BookieLedgerClient } from '../src/client/client.js';
import { writeSet } from '../src/client/metadata.js';
import { AutoRecovery, UNDERREPLICATED_PREFIX } from '../src/recovery/auto-recovery.js';
import { BookieProcesses } from '../src/testing/index.js';

// Real etcd, real bookie processes; a bookie is removed for good (SIGKILL + data deleted).
let etcd: EtcdCluster;
let bookies: BookieProcesses;
let store: MetadataStore;
const clients: BookieLedgerClient[] = [];
const logger = createLogger({ level: process.env.TEST_LOG_LEVEL === 'debug' ? 'debug' : 'silent' });
const cluster = 'recovery-real';

function client(seed: number): BookieLedgerClient {
  const c = new BookieLedgerClient({ metadata: store, logger, random: new Random(seed), options: { addTimeoutMs: 20_000, requestTimeoutMs: 5000 } });
  clients.push(c);
  return c;
}

const payload = (i: number) => Buffer.concat([Buffer.from(`entry-${i}:`), Buffer.alloc(300, i % 251)]);

beforeAll(async () => {
  etcd = await EtcdCluster.start();
  store = await createMetadataStore(etcd.url, { logger, cluster });
  bookies = await BookieProcesses.create({ metadataUrl: etcd.url, cluster });
  await Promise.all(['b1', 'b2', 'b3', 'b4'].map((id) => bookies.start(id)));
}, 120_000);

afterAll(async () => {
  for (const c of clients) await c.close().catch(() => undefined);
  await store?.close().catch(() => undefined);
  await bookies?.stop();
  await etcd?.stop();
});

describe('auto-recovery against real bookies', () => {
  it('after a bookie is removed for good, every entry is back on W bookies and reads never fail', async () => {
    const writerClient = client(1);
    const ledgers: Array<{ id: number; last: number }> = [];
    for (const [E, W, A] of [[3, 2, 2], [2, 2, 2], [3, 3, 2]] as const) {
      const w = await writerClient.createLedger({ ensembleSize: E, writeQuorum: W, ackQuorum: A });
      await Promise.all(Array.from({ length: 400 }, (_, i) => w.append(payload(i))));
      await w.close();
      ledgers.push({ id: w.ledgerId, last: 399 });
    }
    const md0 = await writerClient.getMetadata(ledgers[0]!.id);
    const lost = md0.ensembles[0]!.bookies[0]!;

    // Readers run throughout; any failed read is a test failure.
    const readerClient = client(2);
    let reads = 0;
    const readErrors: unknown[] = [];
    let reading = true;
    const readerLoop = (async () => {
      const random = new Random(9);
      const handles = await Promise.all(ledgers.map((l) => readerClient.openLedger(l.id)));
      while (reading) {
        const h = random.pick(handles);
        const first = random.int(0, 390);
        try {
          const got = await h.read(first, first + 9);
          if (got.map((e) => e.payload.toString()).join() !== Array.from({ length: 10 }, (_, k) => payload(first + k).toString()).join()) {
            readErrors.push(new Error(`wrong data at ${h.ledgerId}:${first}`));
          }
          reads++;
        } catch (err) {
          readErrors.push(err);
        }
      }
    })();

    const ar = new AutoRecovery({ metadata: store, logger, ledgerClient: client(3), options: { lostBookieGraceMs: 1500, checkIntervalMs: 300 } });
    await ar.start();
    try {
      await bookies.destroy(lost);
      const deadline = Date.now() + 60_000;
      for (;;) {
        const mds = await Promise.all(ledgers.map((l) => writerClient.getMetadata(l.id)));
        const markers = (await store.list(UNDERREPLICATED_PREFIX)).items.length;
        if (markers === 0 && mds.every((m) => m.ensembles.every((e) => !e.bookies.includes(lost)))) break;
        if (Date.now() > deadline) throw new Error('auto-recovery did not finish in 60 s');
        await new Promise((r) => setTimeout(r, 200));
      }
    } finally {
      await ar.stop();
      reading = false;
      await readerLoop;
    }
    expect(readErrors).toEqual([]);
    expect(reads).toBeGreaterThan(0);

    // Every entry is on every bookie of its write set, as the metadata now says (each copy read from that bookie).
    // Slow bookies under load may have caused ensemble changes: follow the ensembles.
    const transport = writerClient.context.transport;
    for (const l of ledgers) {
      const md = await writerClient.getMetadata(l.id);
      for (let n = 0; n <= l.last; n++) {
        let k = 0;
        while (k + 1 < md.ensembles.length && md.ensembles[k + 1]!.firstEntryId <= n) k++;
        for (const i of writeSet(n, md.ensembleSize, md.writeQuorum)) {
          const bookieId = md.ensembles[k]!.bookies[i]!;
          const [e] = await transport.read(bookieId, { ledgerId: l.id, firstEntryId: n, lastEntryId: n, maxBytes: 1 << 20 });
          expect(e!.entryId).toBe(n);
          expect(e!.payload.toString(), `entry ${n} of ledger ${l.id} on ${bookieId}`).toBe(payload(n).toString());
        }
      }
    }
  });
});
