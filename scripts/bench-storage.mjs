// Managed ledger (broker storage) measurement over real etcd and two real bookie processes (E=W=A=2, fsync).
// Build first: npx tsc -b packages/broker. Run: node scripts/bench-storage.mjs  (env: N, SIZE, WINDOW).
// Prints append throughput and latency, tailing (cache) read and catch-up (bookie) read rates.
const root = new URL("../packages", import.meta.url).pathname;
const { BookieLedgerClient } = await import(`${root}/bookie/dist/index.js`);
const { BookieProcesses } = await import(`${root}/bookie/dist/testing/index.js`);
const { createMetadataStore } = await import(`${root}/coordinator/dist/index.js`);
const { EtcdCluster } = await import(`${root}/coordinator/dist/testing/index.js`);
const { createLogger, Random } = await import(`${root}/runtime/dist/index.js`);
const { createManagedLedgerFactory } = await import(`${root}/broker/dist/storage/index.js`);

const logger = createLogger({ level: 'silent' });
const etcd = await EtcdCluster.start();
const bookies = await BookieProcesses.create({ metadataUrl: etcd.url, cluster: 'bench' });
try {
  await Promise.all(['b1', 'b2'].map((id) => bookies.start(id)));
  const store = await createMetadataStore(etcd.url, { logger, cluster: 'bench' });
  const client = new BookieLedgerClient({ metadata: store, logger, random: new Random(1) });
  const factory = createManagedLedgerFactory({ ledgerClient: client, metadata: store, logger });
  const ml = await factory.open('bench/ns/persistent/t1');
  const cursor = await ml.openCursor('sub', { initialPosition: 'earliest' });
  await cursor.read({ maxEntries: 1 });
  const size = Number(process.env.SIZE ?? 1024), n = Number(process.env.N ?? 20000), window = Number(process.env.WINDOW ?? 1000);
  const payload = Buffer.alloc(size, 7);
  const lat = [];
  const inflight = new Set();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const s = performance.now();
    const p = ml.append(payload).then(() => { lat.push(performance.now() - s); inflight.delete(p); });
    inflight.add(p);
    if (inflight.size >= window) await Promise.race(inflight);
  }
  await Promise.all(inflight);
  const secs = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  const q = (x) => lat[Math.min(lat.length - 1, Math.floor(x * lat.length))].toFixed(2);
  console.log(`append ${n} x ${size} B, window ${window}: ${(n / secs).toFixed(0)} entries/s, ${(n * size / secs / 1e6).toFixed(1)} MB/s, latency p50 ${q(0.5)} ms p99 ${q(0.99)} ms`);
  // Sequential append latency (one at a time).
  const seq = [];
  for (let i = 0; i < 500; i++) { const s = performance.now(); await ml.append(payload); seq.push(performance.now() - s); }
  seq.sort((a, b) => a - b);
  console.log(`append one at a time: p50 ${seq[250].toFixed(2)} ms p99 ${seq[495].toFixed(2)} ms`);
  // Tailing read from the cache.
  let r0 = performance.now(), got = 0;
  for (;;) { const es = await cursor.read({ maxEntries: 1000 }); if (!es.length) break; got += es.length; }
  const st = ml.stats();
  console.log(`cursor read ${got} entries: ${(got / ((performance.now() - r0) / 1000)).toFixed(0)} entries/s (cache hits ${st.cacheHits}, misses ${st.cacheMisses})`);
  // Catch-up read from the bookies.
  const reader = ml.newNonDurableCursor('earliest');
  r0 = performance.now(); got = 0;
  for (;;) { const es = await reader.read({ maxEntries: 1000 }); if (!es.length) break; got += es.length; }
  const st2 = ml.stats();
  console.log(`reader catch-up ${got} entries: ${(got / ((performance.now() - r0) / 1000)).toFixed(0)} entries/s (misses ${st2.cacheMisses - st.cacheMisses})`);
  await factory.stop();
  await client.close();
  await store.close();
} finally {
  await bookies.stop();
  await etcd.stop();
}
