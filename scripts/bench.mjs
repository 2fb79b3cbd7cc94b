#!/usr/bin/env node
// `npm run bench`: the broker benchmark of docs/benchmarks.md, end to end through the real CLI.
//
// 1. starts `strata standalone` (coordinator, broker, two bookies) on free ports in a temp dir;
// 2. runs `strata perf produce -r 0` (publish only, no consumer), then two OpenMessaging Benchmark workloads
//    with `strata perf run` (one topic, one partition, 1 KB messages, batching on, one producer, one
//    subscription with one consumer):
//      - max:  producerRate 0 (as fast as the system takes them) for BENCH_DURATION_S seconds;
//      - rate: producerRate BENCH_RATE (10,000 msg/s) for BENCH_DURATION_S seconds,
//    each after BENCH_WARMUP_S seconds of warm-up, and prints publish rate and publish / end-to-end latency;
// 3. runs scripts/bench-bookie.mjs when it exists;
// 4. stops what it started (by PID) and removes the temp dir.
//
// Knobs (environment): BENCH_DURATION_S (20), BENCH_WARMUP_S (5), BENCH_RATE (10000), BENCH_SIZE (1024),
// BENCH_OUT (a file to write the JSON results to), BENCH_SKIP_BOOKIE=1.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = join(root, 'packages', 'cli', 'dist', 'bin.js');
const durationS = Number(process.env.BENCH_DURATION_S ?? 20);
const warmupS = Number(process.env.BENCH_WARMUP_S ?? 5);
const rate = Number(process.env.BENCH_RATE ?? 10_000);
const size = Number(process.env.BENCH_SIZE ?? 1024);

const log = (line) => process.stderr.write(`[bench] ${line}\n`);

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Starts the standalone and resolves with its service URL once it prints that it is ready. */
async function startStandalone(dataDir) {
  const ports = [];
  while (ports.length < 8) {
    const p = await freePort();
    if (!ports.includes(p)) ports.push(p);
  }
  const [broker, brokerHttp, b1, b2, b1Http, b2Http, coord, coordHttp] = ports;
  const args = [
    bin, 'standalone', '--data-dir', dataDir, '--host', '127.0.0.1', '--log-level', 'warn',
    '--broker-port', String(broker), '--broker-http-port', String(brokerHttp),
    '--bookie-ports', `${b1},${b2}`, '--bookie-http-ports', `${b1Http},${b2Http}`,
    '--coordinator-port', String(coord), '--coordinator-http-port', String(coordHttp),
  ];
  log(`starting: node ${args.map((a) => a.replace(root + '/', '')).join(' ')}`);
  const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stderr.on('data', (d) => { output += d; });
  const serviceUrl = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`standalone not ready after 90 s:\n${output.slice(-2000)}`)), 90_000);
    child.stdout.on('data', (d) => {
      output += d;
      const m = /service URL:\s*(\S+)/.exec(output);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`standalone exited with ${code} before it was ready:\n${output.slice(-2000)}`));
    });
  });
  return { child, serviceUrl };
}

async function stopChild(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}

/** Runs the CLI, streaming its stderr (progress) to ours, and resolves with its stdout. */
function runCli(args) {
  log(`running: strata ${args.join(' ')}`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`strata ${args[0]} ${args[1]} exited with ${code}\n${out.slice(-2000)}`))));
  });
}

function workloadYaml(name, producerRate) {
  return [
    `name: ${name}`,
    'topics: 1',
    'partitionsPerTopic: 1',
    'keyDistributor: "NO_KEY"',
    `messageSize: ${size}`,
    'subscriptionsPerTopic: 1',
    'consumerPerSubscription: 1',
    'producersPerTopic: 1',
    `producerRate: ${producerRate}`,
    'consumerBacklogSizeGB: 0',
    'testDurationMinutes: 1',
    '',
  ].join('\n');
}

async function runWorkload(dir, serviceUrl, name, producerRate) {
  const file = join(dir, `${name}.yaml`);
  const resultFile = join(dir, `${name}.result.json`);
  await writeFile(file, workloadYaml(name, producerRate));
  await runCli([
    'perf', 'run', file, '--service-url', serviceUrl, '--test-duration', String(durationS), '--warmup-time', String(warmupS),
    '--report-interval', '5', '-o', resultFile,
  ]).then((out) => process.stdout.write(out));
  return JSON.parse(await readFile(resultFile, 'utf8'));
}

/** `strata perf produce -r 0`: publish throughput with no consumer attached. */
async function runPublishOnly(serviceUrl) {
  const out = await runCli([
    'perf', 'produce', `bench-publish-only-${Date.now()}`, '-r', '0', '-s', String(size), '--test-duration', String(durationS),
    '--warmup-time', String(warmupS), '--report-interval', '5', '--json', '--service-url', serviceUrl,
  ]);
  const lines = out.trim().split('\n').map((l) => JSON.parse(l));
  for (const l of lines.filter((x) => x.type === 'interval')) {
    process.stdout.write(`[publish only ${l.elapsedS.toFixed(0)} s] ${Math.round(l.publish.msgPerS)} msg/s, p99 ${l.publish.latency.p99Ms} ms\n`);
  }
  const s = lines[lines.length - 1];
  return {
    aggregatedPublishRate: s.publish.msgPerS,
    aggregatedPublishLatency50pct: s.publish.latency.p50Ms,
    aggregatedPublishLatency99pct: s.publish.latency.p99Ms,
    aggregatedPublishLatency999pct: s.publish.latency.p999Ms,
    publishErrors: s.publish.errors,
  };
}

function row(label, r) {
  const f = (n) => n.toFixed(2);
  return `| ${label} | ${Math.round(r.aggregatedPublishRate).toLocaleString('en-US')} | ${(r.aggregatedPublishRate * size / 1024 / 1024).toFixed(1)} | ` +
    `${f(r.aggregatedPublishLatency50pct)} / ${f(r.aggregatedPublishLatency99pct)} / ${f(r.aggregatedPublishLatency999pct)} | ` +
    (r.aggregatedEndToEndLatency50pct === undefined ? '(no consumer) | '
      : `${f(r.aggregatedEndToEndLatency50pct)} / ${f(r.aggregatedEndToEndLatency99pct)} / ${f(r.aggregatedEndToEndLatency999pct)} | `) +
    `${r.aggregatedConsumeRate === undefined ? '-' : Math.round(r.aggregatedConsumeRate).toLocaleString('en-US')} | ${r.publishErrors} |`;
}

async function main() {
  if (!existsSync(bin)) throw new Error(`${bin} is missing: run npm run build first`);
  const loadBefore = loadavg()[0].toFixed(1);
  const dir = await mkdtemp(join(tmpdir(), 'strata-bench-'));
  let standalone;
  const results = {};
  try {
    standalone = await startStandalone(join(dir, 'data'));
    log(`standalone ready at ${standalone.serviceUrl} (pid ${standalone.child.pid})`);
    results.publishOnly = await runPublishOnly(standalone.serviceUrl);
    results.max = await runWorkload(dir, standalone.serviceUrl, `1-topic-1-partition-${size}b-max`, 0);
    results.rate = await runWorkload(dir, standalone.serviceUrl, `1-topic-1-partition-${size}b-${rate}`, rate);
  } finally {
    if (standalone) await stopChild(standalone.child);
  }
  try {
    const bookieBench = join(root, 'scripts', 'bench-bookie.mjs');
    if (existsSync(bookieBench) && process.env.BENCH_SKIP_BOOKIE !== '1') {
      log('running scripts/bench-bookie.mjs');
      await new Promise((resolve, reject) => {
        const child = spawn(process.execPath, [bookieBench], { cwd: root, stdio: 'inherit' });
        child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`bench-bookie.mjs exited with ${code}`))));
      });
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const table = [
    '',
    `Broker end to end (strata perf; 1 topic, 1 partition, ${size} B messages, batching on; ${durationS} s measured after ${warmupS} s warm-up)`,
    `${new Date().toISOString()}, node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), 1-min load average ${loadBefore} before / ${loadavg()[0].toFixed(1)} after`,
    '',
    '| scenario | publish msg/s | MB/s | publish latency ms p50 / p99 / p99.9 | end-to-end latency ms p50 / p99 / p99.9 | consume msg/s | errors |',
    '| --- | ---: | ---: | --- | --- | ---: | ---: |',
    row('max rate, publish only (perf produce -r 0)', results.publishOnly),
    row('max rate with a consumer (producerRate 0)', results.max),
    row(`${rate.toLocaleString('en-US')} msg/s`, results.rate),
    '',
  ].join('\n');
  process.stdout.write(`${table}\n`);
  if (process.env.BENCH_OUT) await writeFile(process.env.BENCH_OUT, `${JSON.stringify(results, null, 2)}\n`);
}

main().catch((err) => {
  process.stderr.write(`[bench] failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
