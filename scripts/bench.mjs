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
// BENCH_OUT (a file to write the JSON results to), BENCH_SKIP_BOOKIE=1, BENCH_SCENARIOS (a comma list of
// publish,paced,max,rate, run in that order; default publish,max,rate; paced = `perf produce -r BENCH_RATE`, no consumer), BENCH_NODE_ARGS (extra node flags for the standalone, after
// @strata/runtime's SERVER_NODE_FLAGS which every server gets, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"), BENCH_CLI_NODE_ARGS (the same for the CLI, which gets SERVER_NODE_FLAGS too), BENCH_DEPLOYMENT
// (standalone, the default: every role in one process; or cluster: etcd, one coordinator, two bookies and
// one broker as separate processes, the same E=W=A=2, so the roles do not share one event loop).
//
// CPU cost: for every scenario it also reports the CPU time (user + system, from /proc) the standalone and the
// CLI used during the whole CLI run (warm-up and set-up included) divided by the messages the broker stored
// in that time (its broker_publish_messages_total), in µs per message: far steadier than msg/s on a shared
// machine.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
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
const scenarios = (process.env.BENCH_SCENARIOS ?? 'publish,max,rate').split(',').map((x) => x.trim());
const unknownScenario = scenarios.find((x) => !['publish', 'paced', 'max', 'rate'].includes(x));
if (unknownScenario) {
  process.stderr.write(`[bench] unknown scenario in BENCH_SCENARIOS: ${unknownScenario} (publish, paced, max, rate)\n`);
  process.exit(2);
}
const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
const cliNodeArgs = (process.env.BENCH_CLI_NODE_ARGS ?? '').split(' ').filter(Boolean);
const deployment = process.env.BENCH_DEPLOYMENT ?? 'standalone';
const { SERVER_NODE_FLAGS: serverNodeFlags } = await import('@strata/runtime');
const ticksPerS = 100; // USER_HZ on Linux

/** CPU seconds (user + system) of a process from /proc/<pid>/stat; with children=true, of its reaped children. */
function cpuS(pid, children = false) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields after the command: state is f[0], so utime = field 14 = f[11], stime f[12], cutime f[13], cstime f[14]
  return children ? (Number(f[13]) + Number(f[14])) / ticksPerS : (Number(f[11]) + Number(f[12])) / ticksPerS;
}

async function publishedMessages(httpPort) {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  const m = /^broker_publish_messages_total(?:\{[^}]*\})? (\S+)$/m.exec(text);
  return m ? Number(m[1]) : 0;
}

const serverCpuS = (system) => system.pids().reduce((sum, pid) => sum + cpuS(pid), 0);

/** Runs fn and adds the CPU µs per stored message of the system (every server process) and of the CLI to its result. */
async function withCost(system, fn) {
  const before = { server: serverCpuS(system), cli: cpuS(process.pid, true), msgs: await publishedMessages(system.httpPort) };
  const result = await fn();
  const msgs = (await publishedMessages(system.httpPort)) - before.msgs;
  const serverS = serverCpuS(system) - before.server;
  const cliS = cpuS(process.pid, true) - before.cli;
  return { ...result, cost: { messages: msgs, serverCpuS: serverS, cliCpuS: cliS, serverUsPerMsg: (serverS * 1e6) / msgs, cliUsPerMsg: (cliS * 1e6) / msgs } };
}

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
  const command = [...serverNodeFlags, ...nodeArgs, ...args];
  log(`starting: node ${command.map((a) => a.replace(root + '/', '')).join(' ')}`);
  const child = spawn(process.execPath, command, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
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
  return { child, serviceUrl, httpPort: brokerHttp, pids: () => [child.pid], stop: () => stopChild(child) };
}

/**
 * BENCH_DEPLOYMENT=cluster: a real etcd, then a coordinator, two bookies and a broker, each `strata <role>`
 * in its own process (broker defaults: E=W=A=2, the same as standalone), logs in the temp dir.
 */
async function startCluster(dir) {
  const { EtcdCluster } = await import('@strata/coordinator/testing');
  const { freePorts, spawnRole } = await import('@strata/runtime/testing');
  const etcd = await EtcdCluster.start({ members: 1, startTimeoutMs: 60_000 });
  const procs = [];
  const env = nodeArgs.length > 0 ? { NODE_OPTIONS: nodeArgs.join(' ') } : undefined;
  const common = { 'metadata-url': etcd.url, cluster: `bench-${Date.now().toString(36)}`, 'grpc-host': '127.0.0.1', 'http-host': '127.0.0.1', 'log-level': 'warn' };
  const start = async (role, i) => {
    const [grpcPort, httpPort] = await freePorts(2);
    const flags = { ...common, 'grpc-port': grpcPort, 'http-port': httpPort };
    if (role !== 'coordinator') flags['advertised-address'] = `127.0.0.1:${grpcPort}`;
    if (role === 'bookie') flags['data-dir'] = join(dir, `bookie-${i}`);
    log(`starting: strata ${role} ${Object.entries(flags).map(([k, v]) => `--${k} ${v}`).join(' ')}`);
    const proc = await spawnRole(role, flags, { httpPort, readyTimeoutMs: 90_000, logFile: join(dir, `${role}-${i}.log`), env });
    procs.push(proc);
    return { grpcPort, httpPort };
  };
  try {
    await Promise.all([start('coordinator', 0), start('bookie', 0), start('bookie', 1)]);
    const broker = await start('broker', 0);
    return {
      serviceUrl: `pulsar://127.0.0.1:${broker.grpcPort}`,
      httpPort: broker.httpPort,
      // etcd is left out: it is the metadata store, not on the publish path (and its pid is etcd's own).
      pids: () => procs.map((p) => p.pid),
      stop: async () => {
        for (const p of procs.reverse()) await p.stop();
        await etcd.stop();
      },
    };
  } catch (err) {
    for (const p of procs.reverse()) await p.stop().catch(() => undefined);
    await etcd.stop();
    throw err;
  }
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
    // The load generator is measured too (its GC pauses are in every latency it reports): it gets the
    // servers' node flags as well (docs/cli.md, "perf").
    const child = spawn(process.execPath, [...serverNodeFlags, ...cliNodeArgs, bin, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
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

/** `strata perf produce -r <r>`: publish throughput (r = 0) or latency at a rate, with no consumer attached. */
async function runPublishOnly(serviceUrl, r = 0) {
  const out = await runCli([
    'perf', 'produce', `bench-publish-only-${Date.now()}`, '-r', String(r), '-s', String(size), '--test-duration', String(durationS),
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
    `${r.aggregatedConsumeRate === undefined ? '-' : Math.round(r.aggregatedConsumeRate).toLocaleString('en-US')} | ${r.publishErrors} | ` +
    `${r.cost.serverUsPerMsg.toFixed(1)} / ${r.cost.cliUsPerMsg.toFixed(1)} |`;
}

async function main() {
  if (!existsSync(bin)) throw new Error(`${bin} is missing: run npm run build first`);
  const loadBefore = loadavg()[0].toFixed(1);
  const dir = await mkdtemp(join(tmpdir(), 'strata-bench-'));
  let system;
  const results = {};
  try {
    system = deployment === 'cluster' ? await startCluster(dir) : await startStandalone(join(dir, 'data'));
    log(`${deployment} ready at ${system.serviceUrl} (pids ${system.pids().join(', ')})`);
    const s = system;
    // In the order given: what ran before shapes a scenario (a maximum-rate run leaves GBs for the disk to absorb).
    for (const scenario of scenarios) {
      if (scenario === 'publish') results.publishOnly = await withCost(s, () => runPublishOnly(s.serviceUrl));
      if (scenario === 'paced') results.pacedPublishOnly = await withCost(s, () => runPublishOnly(s.serviceUrl, rate));
      if (scenario === 'max') results.max = await withCost(s, () => runWorkload(dir, s.serviceUrl, `1-topic-1-partition-${size}b-max`, 0));
      if (scenario === 'rate') results.rate = await withCost(s, () => runWorkload(dir, s.serviceUrl, `1-topic-1-partition-${size}b-${rate}`, rate));
    }
  } finally {
    if (system) await system.stop();
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
    `Broker end to end (strata perf against ${deployment === 'cluster' ? 'a process cluster (etcd, coordinator, 2 bookies, broker: one process each)' : 'strata standalone (every role in one process)'}; ` +
      `1 topic, 1 partition, ${size} B messages, batching on; ${durationS} s measured after ${warmupS} s warm-up)`,
    `${new Date().toISOString()}, node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), 1-min load average ${loadBefore} before / ${loadavg()[0].toFixed(1)} after`,
    '',
    '| scenario | publish msg/s | MB/s | publish latency ms p50 / p99 / p99.9 | end-to-end latency ms p50 / p99 / p99.9 | consume msg/s | errors | CPU µs/msg servers / CLI |',
    '| --- | ---: | ---: | --- | --- | ---: | ---: | --- |',
    ...(results.publishOnly ? [row('max rate, publish only (perf produce -r 0)', results.publishOnly)] : []),
    ...(results.pacedPublishOnly ? [row(`${rate.toLocaleString('en-US')} msg/s, publish only (perf produce -r ${rate})`, results.pacedPublishOnly)] : []),
    ...(results.max ? [row('max rate with a consumer (producerRate 0)', results.max)] : []),
    ...(results.rate ? [row(`${rate.toLocaleString('en-US')} msg/s`, results.rate)] : []),
    '',
  ].join('\n');
  process.stdout.write(`${table}\n`);
  if (process.env.BENCH_OUT) await writeFile(process.env.BENCH_OUT, `${JSON.stringify(results, null, 2)}\n`);
}

main().catch((err) => {
  process.stderr.write(`[bench] failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
