// The built `strata` bin as a child process against a real `strata standalone` (coordinator, broker and two
// bookies writing to a temp dir), on free ports. Needs `npx tsc -b packages/cli` first.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot as root, runBin, strataBinPath as bin } from './run-bin.js';


async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}



let dir = '';
let standalone: ChildProcess | undefined;
let serviceUrl = '';
const id = randomBytes(4).toString('hex');

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'strata-cli-e2e-'));
  const ports: number[] = [];
  while (ports.length < 8) {
    const p = await freePort();
    if (!ports.includes(p)) ports.push(p);
  }
  const [broker, brokerHttp, b1, b2, b1Http, b2Http, coord, coordHttp] = ports.map(String) as string[];
  standalone = spawn(process.execPath, [
    bin, 'standalone', '--data-dir', join(dir, 'data'), '--host', '127.0.0.1', '--log-level', 'warn',
    '--broker-port', broker as string, '--broker-http-port', brokerHttp as string, '--bookie-ports', `${b1},${b2}`,
    '--bookie-http-ports', `${b1Http},${b2Http}`, '--coordinator-port', coord as string, '--coordinator-http-port', coordHttp as string,
  ], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  standalone.stderr?.on('data', (d) => { output += d; });
  serviceUrl = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`standalone not ready:\n${output.slice(-3000)}`)), 50_000);
    standalone?.stdout?.on('data', (d) => {
      output += d;
      const m = /service URL:\s*(\S+)/.exec(output);
      if (m) {
        clearTimeout(timer);
        resolve(m[1] as string);
      }
    });
    standalone?.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`standalone exited with ${code}:\n${output.slice(-3000)}`));
    });
  });
}, 60_000);

afterAll(async () => {
  const child = standalone;
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
  if (dir) await rm(dir, { recursive: true, force: true });
}, 30_000);

describe('strata client commands against a standalone', () => {
  it('produces messages and consumes them back in order', async () => {
    const topic = `persistent://public/default/cli-e2e-${id}`;
    const produced = await runBin(['produce', topic, '-m', 'one,two,three', '-n', '4', '-k', 'k1', '-p', 'src=e2e', '--service-url', serviceUrl]);
    expect(produced.stderr).toBe('');
    expect(produced.code).toBe(0);
    expect(produced.stdout).toContain('12 messages successfully produced');

    const consumed = await runBin(['consume', topic, '-s', `sub-${id}`, '-p', 'Earliest', '-n', '12', '--json', '--service-url', serviceUrl]);
    expect(consumed.code).toBe(0);
    const messages = consumed.stdout.trim().split('\n').map((l) => JSON.parse(l) as { data: string; key: string; properties: Record<string, string> });
    expect(messages.map((m) => m.data)).toEqual(Array.from({ length: 4 }, () => ['one', 'two', 'three']).flat());
    expect(messages[0]).toMatchObject({ key: 'k1', properties: { src: 'e2e' } });
    expect(consumed.stderr).toContain('12 messages successfully consumed');
  });

  it('consumes with -n 0 until SIGINT, then exits cleanly', async () => {
    const topic = `persistent://public/default/cli-sigint-${id}`;
    const child = spawn(process.execPath, [bin, 'consume', topic, '-s', 'forever', '-p', 'Earliest', '-n', '0', '--service-url', serviceUrl],
      { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      expect((await runBin(['produce', topic, '-m', 'p,q,r', '--service-url', serviceUrl])).code).toBe(0);
      const deadline = Date.now() + 20_000;
      while ((stdout.match(/got message/g) ?? []).length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(stdout).toContain('content:r');
      child.kill('SIGINT');
      expect(await exited).toBe(0);
      expect(stderr).toContain('3 messages successfully consumed');
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });

  it('lists and shows topics, tenants and brokers with admin', async () => {
    const topic = `persistent://public/default/cli-admin-${id}`;
    expect((await runBin(['produce', topic, '-m', 'x', '--service-url', serviceUrl])).code).toBe(0);

    const topics = await runBin(['admin', 'topics', 'list', 'public/default', '--json', '--service-url', serviceUrl]);
    expect(topics.code).toBe(0);
    expect(JSON.parse(topics.stdout)).toContain(topic);

    const stats = await runBin(['admin', 'topics', 'stats', topic, '--json', '--service-url', serviceUrl]);
    expect(stats.code).toBe(0);
    expect(JSON.parse(stats.stdout)).toMatchObject({ topic });

    const human = await runBin(['admin', 'topics', 'stats', topic, '--service-url', serviceUrl]);
    expect(human.stdout).toMatch(/^topic\s+persistent:\/\/public\/default\/cli-admin-/m);

    const tenants = await runBin(['admin', 'tenants', 'list', '--service-url', serviceUrl]);
    expect(tenants.code).toBe(0);
    expect(tenants.stdout.split('\n')[0]).toBe('TENANT');
    expect(tenants.stdout).toContain('public');

    const brokers = await runBin(['admin', 'brokers', 'list', '--json', '--service-url', serviceUrl]);
    expect(brokers.code).toBe(0);
    expect((JSON.parse(brokers.stdout) as unknown[]).length).toBeGreaterThanOrEqual(1);
  });

  it('takes the service URL from STRATA_SERVICE_URL; --service-url wins; --help says so', async () => {
    const topic = `persistent://public/default/cli-env-${id}`;
    const produced = await runBin(['produce', topic, '-m', 'from-env'], 30_000, { STRATA_SERVICE_URL: serviceUrl });
    expect(produced.code, produced.stderr).toBe(0);
    // A URL nothing listens on in the environment, the right one as the flag: the flag is used.
    const unused = await freePort();
    const consumed = await runBin(['consume', topic, '-s', 'env-sub', '-p', 'Earliest', '-n', '1', '--service-url', serviceUrl], 30_000, { STRATA_SERVICE_URL: `pulsar://127.0.0.1:${unused}` });
    expect(consumed.code, consumed.stderr).toBe(0);
    expect(consumed.stdout).toContain('from-env');
    const stats = await runBin(['admin', 'topics', 'stats', topic, '--json'], 30_000, { STRATA_SERVICE_URL: serviceUrl });
    expect(stats.code, stats.stderr).toBe(0);
    const help = await runBin(['produce', '--help']);
    expect(help.stdout).toMatch(/--service-url <url>.*env:\s+STRATA_SERVICE_URL/s);
    expect((await runBin(['--help'])).stdout).toContain('STRATA_SERVICE_URL');
  });

  it('topic stats name the subscription type as Pulsar does (Shared)', async () => {
    const topic = `persistent://public/default/cli-subtype-${id}`;
    expect((await runBin(['produce', topic, '-m', 'x', '--service-url', serviceUrl])).code).toBe(0);
    const consumed = await runBin(['consume', topic, '-s', 'shared-sub', '-t', 'Shared', '-p', 'Earliest', '-n', '1', '--service-url', serviceUrl]);
    expect(consumed.code, consumed.stderr).toBe(0);
    const human = await runBin(['admin', 'topics', 'stats', topic, '--service-url', serviceUrl]);
    expect(human.stdout).toMatch(/^shared-sub\s+Shared\s/m);
    const json = JSON.parse((await runBin(['admin', 'topics', 'stats', topic, '--json', '--service-url', serviceUrl])).stdout) as { subscriptions: Array<{ name: string; type: string }> };
    expect(json.subscriptions.map((x) => [x.name, x.type])).toEqual([['shared-sub', 'Shared']]);
  });

  it('creates a partitioned topic and looks its partitions up', async () => {
    const topic = `persistent://public/default/cli-part-${id}`;
    const created = await runBin(['admin', 'topics', 'create-partitioned', topic, '-p', '3', '--service-url', serviceUrl]);
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
    const again = await runBin(['admin', 'topics', 'create-partitioned', topic, '-p', '3', '--service-url', serviceUrl]);
    expect(again.code).toBe(1);
    expect(again.stderr.trim().split('\n')).toHaveLength(1);
    expect(again.stderr).toMatch(/^error: .*ALREADY_EXISTS/);
    const lookup = await runBin(['admin', 'topics', 'partitioned-lookup', topic, '--json', '--service-url', serviceUrl]);
    expect(lookup.code).toBe(0);
    expect((JSON.parse(lookup.stdout) as { topic: string }[]).map((r) => r.topic)).toEqual([0, 1, 2].map((i) => `${topic}-partition-${i}`));
  });

  it('refuses create-partitioned over a topic that already holds data (ALREADY_EXISTS), and the data stays', async () => {
    const topic = `persistent://public/default/cli-plain-${id}`;
    expect((await runBin(['produce', topic, '-m', 'kept', '--service-url', serviceUrl])).code).toBe(0);
    const refused = await runBin(['admin', 'topics', 'create-partitioned', topic, '-p', '3', '--service-url', serviceUrl]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^error: .*ALREADY_EXISTS/);
    const read = await runBin(['consume', topic, '-s', 'check', '-n', '1', '-p', 'Earliest', '--service-url', serviceUrl]);
    expect(read.code).toBe(0);
    expect(read.stdout).toContain('kept');
  });

  it('runs perf produce and an OMB workload with --json', async () => {
    const perf = await runBin(['perf', 'produce', `cli-perf-${id}`, '-r', '2000', '--test-duration', '3', '--warmup-time', '0',
      '--report-interval', '1', '--json', '--service-url', serviceUrl]);
    expect(perf.code).toBe(0);
    const lines = perf.stdout.trim().split('\n').map((l) => JSON.parse(l) as { type: string; publish?: { messages: number; errors: number; latency: { p99Ms: number } } });
    expect(lines.filter((l) => l.type === 'interval').length).toBeGreaterThanOrEqual(2);
    const summary = lines[lines.length - 1];
    expect(summary?.type).toBe('summary');
    // Counts, not speed: tests make no performance claims (the machine may be busy).
    expect(summary?.publish?.messages).toBeGreaterThan(0);
    expect(summary?.publish?.errors).toBe(0);
    expect(summary?.publish?.latency.p99Ms).toBeGreaterThan(0);

    const workload = join(dir, 'w.yaml');
    await writeFile(workload, 'name: e2e\ntopics: 1\npartitionsPerTopic: 2\nmessageSize: 512\nsubscriptionsPerTopic: 1\nconsumerPerSubscription: 1\nproducersPerTopic: 1\nproducerRate: 500\nconsumerBacklogSizeGB: 0\ntestDurationMinutes: 15\n');
    const run = await runBin(['perf', 'run', workload, '--test-duration', '3', '--warmup-time', '1', '--report-interval', '1', '--json', '--service-url', serviceUrl]);
    expect(run.code).toBe(0);
    const result = JSON.parse(run.stdout.trim().split('\n').pop() as string) as Record<string, number>;
    expect(result.type).toBe('result');
    expect(result.aggregatedPublishRate).toBeGreaterThan(0);
    expect(result.aggregatedConsumeRate).toBeGreaterThan(0);
    expect(result.publishErrors).toBe(0);
    expect(result.aggregatedEndToEndLatency50pct).toBeGreaterThan(0);
  }, 40_000);

  it('gives one error line and a non-zero exit for bad input', async () => {
    const bad = await runBin(['consume', 'some-topic', '--service-url', serviceUrl]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe('error: -s/--subscription-name is required\n');
    const down = await runBin(['admin', 'tenants', 'list', '--service-url', `pulsar://127.0.0.1:${await freePort()}`]);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/^error: cannot reach a broker at 127\.0\.0\.1:\d+/);
  });
});
