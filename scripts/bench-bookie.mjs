#!/usr/bin/env node
// Bookie benchmark: two real bookie processes on this machine, fsync on, E=W=A=2 (every entry written
// to both bookies over their raw AddEntries streams; an add counts once both acknowledged it).
// Beside it, in the same run, the disk's own fdatasync rate (1 KB appends) and sequential write MB/s.
//
//   npm run build && node scripts/bench-bookie.mjs [--seconds 8] [--sizes 1024,65536] [--paced-rate N]
//                                                [--group-wait-ms 1] [--json]
//
// Prints adds/s, MB/s and add latency p50/p99/p99.9 per entry size, a paced 1 KB run at half the
// measured rate, and the disk baseline. Results are recorded in docs/benchmarks.md ("Bookie").
import { spawn } from 'node:child_process';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { crc32c } from '@node-rs/crc32';
import { channelOptions, loadProtos, SERVER_NODE_FLAGS } from '@strata/runtime';
import * as hdr from 'hdr-histogram-js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values: flags } = parseArgs({
  options: {
    seconds: { type: 'string', default: '8' },
    sizes: { type: 'string', default: '1024,65536' },
    json: { type: 'boolean', default: false },
    'group-wait-ms': { type: 'string', default: '1' },
    /** Rate of the paced 1 KB run; default half the closed-loop 1 KB rate. */
    'paced-rate': { type: 'string', default: '' },
    /** Adds in flight in the closed-loop runs: entries up to 4 KB, and larger ones. */
    'window-small': { type: 'string', default: '4000' },
    'window-large': { type: 'string', default: '128' },
  },
});
const SECONDS = Number(flags.seconds);
const SIZES = flags.sizes.split(',').map(Number);

// ---- the disk's own numbers ----

async function diskBaseline(dir) {
  const path = join(dir, 'disk-probe');
  const fh = await open(path, 'w');
  const block = Buffer.alloc(1024, 7);
  // fdatasync rate of 1 KB appends (one write + one fdatasync each), for ~2 s.
  let syncs = 0;
  let start = performance.now();
  while (performance.now() - start < 2000) {
    await fh.write(block);
    await fh.datasync();
    syncs++;
  }
  const syncRate = syncs / ((performance.now() - start) / 1000);
  // 64 KB append + fdatasync, the durable-write ceiling for 64 KB entries without grouping.
  const block64 = Buffer.alloc(64 * 1024, 9);
  let n64 = 0;
  start = performance.now();
  while (performance.now() - start < 1500) {
    await fh.write(block64);
    await fh.datasync();
    n64++;
  }
  const rate64 = n64 / ((performance.now() - start) / 1000);
  await fh.close();
  // Sequential: 512 MB in 1 MB writes, fdatasync every 16 MB and at the end.
  const seq = await open(path, 'w');
  const mb = Buffer.alloc(1024 * 1024, 3);
  start = performance.now();
  for (let i = 1; i <= 512; i++) {
    await seq.write(mb);
    if (i % 16 === 0) await seq.datasync();
  }
  await seq.datasync();
  const seqMBs = 512 / ((performance.now() - start) / 1000);
  await seq.close();
  await rm(path, { force: true });
  return { fdatasync1kPerSec: syncRate, fdatasync64kPerSec: rate64, fdatasync64kMBs: (rate64 * 64) / 1024, sequentialMBs: seqMBs };
}

// ---- bookie processes ----

const FIXTURE = join(root, 'packages', 'bookie', 'test', 'fixtures', 'bookie-process.mjs');

async function startBookie(dataDir) {
  const child = spawn(process.execPath, [
    ...SERVER_NODE_FLAGS,
    ...(process.env.BENCH_BOOKIE_NODE_ARGS ? process.env.BENCH_BOOKIE_NODE_ARGS.split(' ') : []),
    FIXTURE, '--data-dir', dataDir, '--grpc-host', '127.0.0.1', '--grpc-port', '0', '--http-host', '127.0.0.1', '--http-port', '0',
    '--log-level', 'warn', '--journal-group-wait-ms', flags['group-wait-ms'],
  ], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [port, httpPort] = await new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = /^READY (\d+) (\d+)/.exec(line);
      if (m) resolve([Number(m[1]), Number(m[2])]);
    });
    child.once('exit', (code) => reject(new Error(`bookie exited early (${code})`)));
  });
  return { child, port, httpPort };
}

/** The bookie's journal counters from /metrics: commits, records, seconds spent in write + fdatasync. */
async function journalStats(httpPort) {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  const value = (re) => Number(re.exec(text)?.[1] ?? 0);
  return {
    commits: value(/^bookie_journal_commit_seconds_count\{[^}]*\} (\S+)/m),
    seconds: value(/^bookie_journal_commit_seconds_sum\{[^}]*\} (\S+)/m),
    records: value(/^bookie_journal_group_records_sum\{[^}]*\} (\S+)/m),
  };
}

/** CPU seconds (user + system) a process has used, from /proc (Linux). */
async function cpuSeconds(pid) {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

const proto = loadProtos(['strata/bookie/v1/bookie.proto']);

/** One AddEntries stream; adds queued in one tick go out as one stream message. */
class Stream {
  constructor(address) {
    this.client = new proto.strata.bookie.v1.Bookie(address, grpc.credentials.createInsecure(), channelOptions(64 * 1024 * 1024));
    this.call = this.client.addEntries();
    this.waiting = new Map();
    this.queue = [];
    this.scheduled = false;
    this.call.on('data', (res) => {
      for (const r of res.results) {
        const done = this.waiting.get(r.requestId);
        this.waiting.delete(r.requestId);
        if (r.errorCode) throw new Error(`add failed: ${r.errorCode} ${r.errorMessage}`);
        done?.();
      }
    });
    this.call.on('error', (err) => {
      if (!this.closing) throw err;
    });
  }

  add(add, done) {
    this.waiting.set(add.requestId, done);
    this.queue.push(add);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        // Stay under the message limit: at most ~1 MB of adds per stream message.
        let batch = [];
        let bytes = 0;
        for (const a of this.queue) {
          batch.push(a);
          bytes += a.payload.length;
          if (bytes >= 1024 * 1024) {
            this.call.write({ adds: batch });
            batch = [];
            bytes = 0;
          }
        }
        if (batch.length > 0) this.call.write({ adds: batch });
        this.queue = [];
      });
    }
  }

  close() {
    this.closing = true;
    this.call.end();
    this.client.close();
  }
}

/**
 * Writes entries of `size` to both bookies for `seconds`: closed loop with `window` adds in flight,
 * or paced at `rate` adds/s (open loop, latency measured from the scheduled send time).
 */
async function run(streams, pids, httpPorts, ledgerId, size, { seconds, window, rate }) {
  const cpuBefore = await Promise.all(pids.map(cpuSeconds));
  const journalBefore = await journalStats(httpPorts[0]);
  const selfBefore = process.cpuUsage();
  const wallStart = performance.now();
  const payload = Buffer.alloc(size, 1);
  const crc = crc32c(payload);
  const hist = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
  let entryId = 0;

  let inFlight = 0;
  let requestId = 1;
  let lac = -1;
  const warmupEnd = performance.now() + 1000;
  const end = warmupEnd + seconds * 1000;
  let measuredStart = 0;
  let measuredAcked = 0;
  const send = (scheduledAt) => {
    const e = entryId++;
    inFlight++;
    let pending = streams.length;
    const add = { ledgerId, entryId: e, lastAddConfirmed: lac, payload, crc32c: crc, recovery: false, requestId: requestId++ };
    const done = () => {
      if (--pending > 0) return;
      inFlight--;

      if (e > lac) lac = e;
      const now = performance.now();
      if (scheduledAt >= warmupEnd && now <= end) {
        hist.recordValue(Math.max(1, Math.round((now - scheduledAt) * 1000)));
        measuredAcked++;
      }
      if (!rate && now < end) pump();
    };
    for (const s of streams) s.add(add, done);
  };
  const pump = () => {
    while (inFlight < window && performance.now() < end) send(performance.now());
  };
  await new Promise((resolve) => {
    if (rate) {
      // Paced: every ms, send what the schedule says is due.
      const t0 = performance.now();
      let sent = 0;
      const timer = setInterval(() => {
        const now = performance.now();
        if (now >= end) {
          clearInterval(timer);
          resolve();
          return;
        }
        const due = Math.floor(((now - t0) / 1000) * rate);
        while (sent < due) {
          send(t0 + (sent / rate) * 1000);
          sent++;
        }
      }, 1);
    } else {
      pump();
      const timer = setInterval(() => {
        if (performance.now() >= end) {
          clearInterval(timer);
          resolve();
        }
      }, 20);
    }
    measuredStart = warmupEnd;
  });
  while (inFlight > 0) await new Promise((r) => setTimeout(r, 10));
  const cpuAfter = await Promise.all(pids.map(cpuSeconds));
  const journalAfter = await journalStats(httpPorts[0]);
  const commits = Math.max(1, journalAfter.commits - journalBefore.commits);
  const self = process.cpuUsage(selfBefore);
  const wall = (performance.now() - wallStart) / 1000;
  const secs = (end - measuredStart) / 1000;
  const result = {
    size,
    mode: rate ? `paced ${rate}/s` : `window ${window}`,
    addsPerSec: measuredAcked / secs,
    MBs: (measuredAcked * size) / secs / (1024 * 1024),
    p50ms: hist.getValueAtPercentile(50) / 1000,
    p99ms: hist.getValueAtPercentile(99) / 1000,
    p999ms: hist.getValueAtPercentile(99.9) / 1000,
    maxMs: hist.maxValue / 1000,
    /** CPU per add (µs), each bookie process and the writer; CPU use as a share of one core. */
    bookieCpuUsPerAdd: ((cpuAfter[0] - cpuBefore[0]) * 1e6) / Math.max(1, entryId),
    writerCpuUsPerAdd: (self.user + self.system) / Math.max(1, entryId),
    bookieCores: cpuAfter.map((c, i) => (c - cpuBefore[i]) / wall),
    /** Bookie 0's journal: mean write + fdatasync time per group commit, and records per commit. */
    commitMs: ((journalAfter.seconds - journalBefore.seconds) * 1000) / commits,
    recordsPerCommit: (journalAfter.records - journalBefore.records) / commits,
  };
  hist.destroy?.();
  return result;
}

async function main() {
  const dir = await mkdtemp(join(tmpdir(), 'strata-bench-bookie-'));
  const bookies = [];
  try {
    const disk = await diskBaseline(dir);
    bookies.push(await startBookie(join(dir, 'bookie-0')), await startBookie(join(dir, 'bookie-1')));
    const streams = bookies.map((b) => new Stream(`127.0.0.1:${b.port}`));
    const pids = bookies.map((b) => b.child.pid);
    const httpPorts = bookies.map((b) => b.httpPort);
    const results = [];
    let ledgerId = 1;
    for (const size of SIZES) {
      const window = Number(size <= 4096 ? flags['window-small'] : flags['window-large']);
      results.push(await run(streams, pids, httpPorts, ledgerId++, size, { seconds: SECONDS, window }));
    }
    const small = results.find((r) => r.size === 1024);
    if (small) {
      const rate = flags['paced-rate'] ? Number(flags['paced-rate']) : Math.max(100, Math.round(small.addsPerSec / 2));
      results.push(await run(streams, pids, httpPorts, ledgerId++, 1024, { seconds: SECONDS, rate }));
    }
    for (const s of streams) s.close();
    if (flags.json) {
      console.log(JSON.stringify({ disk, results }, null, 2));
    } else {
      const f = (n, d = 1) => n.toFixed(d);
      console.log(`disk: fdatasync of 1 KB appends ${f(disk.fdatasync1kPerSec, 0)}/s; 64 KB appends+fdatasync ${f(disk.fdatasync64kPerSec, 0)}/s (${f(disk.fdatasync64kMBs)} MB/s); sequential write ${f(disk.sequentialMBs)} MB/s`);
      console.log(`bookies: 2 processes, E=W=A=2, journal group wait ${flags['group-wait-ms']} ms, ${SECONDS} s per run after 1 s warm-up`);
      const load = (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');
      console.log(`machine: load average ${load} (other processes share these 2 cores)`);
      console.log('size     mode              adds/s    MB/s   p50 ms  p99 ms  p99.9 ms  max ms  bookie CPU µs/add  writer CPU µs/add  bookie cores  commit ms  records/commit');
      for (const r of results) {
        console.log(
          `${String(r.size).padEnd(8)} ${r.mode.padEnd(16)} ${f(r.addsPerSec, 0).padStart(8)} ${f(r.MBs).padStart(7)} ${f(r.p50ms, 2).padStart(8)} ${f(r.p99ms, 2).padStart(7)} ${f(r.p999ms, 2).padStart(9)} ${f(r.maxMs, 1).padStart(7)} ${f(r.bookieCpuUsPerAdd).padStart(18)} ${f(r.writerCpuUsPerAdd).padStart(18)}  ${r.bookieCores.map((c) => f(c, 2)).join(' ')}  ${f(r.commitMs, 2).padStart(9)}  ${f(r.recordsPerCommit).padStart(14)}`,
        );
      }
    }
  } finally {
    // SIGTERM (a clean stop, which also lets --cpu-prof write its profile), SIGKILL if it lingers.
    await Promise.all(
      bookies.map(
        (b) =>
          new Promise((resolve) => {
            if (b.child.exitCode !== null) return resolve();
            const timer = setTimeout(() => b.child.kill('SIGKILL'), 15_000);
            b.child.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            b.child.kill('SIGTERM');
          }),
      ),
    );
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
