// The hardest reconnection case: a real `strata standalone` process (coordinator, broker and two bookies
// writing with fsync to a temp dir) is SIGKILLed while a producer and a consumer run, then started
// again on the same data and ports. Every send the broker acknowledged must be delivered, in order.
// Needs `npx tsc -b packages/cli` first.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../src/index.js';
import { unique } from './e2e-helpers.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const bin = join(root, 'packages', 'cli', 'dist', 'bin.js');

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
const ports: string[] = [];
let standalone: ChildProcess | undefined;

async function startStandalone(): Promise<string> {
  const [broker, brokerHttp, b1, b2, b1Http, b2Http, coord, coordHttp] = ports as [string, string, string, string, string, string, string, string];
  const child = spawn(process.execPath, [
    bin, 'standalone', '--data-dir', join(dir, 'data'), '--host', '127.0.0.1', '--log-level', 'warn',
    '--broker-port', broker, '--broker-http-port', brokerHttp, '--bookie-ports', `${b1},${b2}`,
    '--bookie-http-ports', `${b1Http},${b2Http}`, '--coordinator-port', coord, '--coordinator-http-port', coordHttp,
  ], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  standalone = child;
  let output = '';
  child.stderr?.on('data', (d) => { output += d; });
  return new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`standalone not ready:\n${output.slice(-3000)}`)), 50_000);
    child.stdout?.on('data', (d) => {
      output += d;
      const m = /service URL:\s*(\S+)/.exec(output);
      if (m) {
        clearTimeout(timer);
        resolve(m[1] as string);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`standalone exited with ${code}:\n${output.slice(-3000)}`));
    });
  });
}

async function kill(): Promise<void> {
  const child = standalone;
  standalone = undefined;
  if (!child || child.exitCode !== null) return;
  await new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'strata-client-kill-'));
  while (ports.length < 8) {
    const p = String(await freePort());
    if (!ports.includes(p)) ports.push(p);
  }
}, 60_000);

afterAll(async () => {
  await kill();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('standalone SIGKILL', () => {
  it('nothing acknowledged is lost and order is kept across a kill -9 and restart', async () => {
    const serviceUrl = await startStandalone();
    const client = new Client({ serviceUrl, operationTimeoutSeconds: 30, initialBackoffIntervalMs: 100, maxBackoffIntervalMs: 1000 });
    try {
      const topic = unique('kill');
      const consumer = await client.subscribe({ topic, subscription: 'sub', subscriptionInitialPosition: 'Earliest' });
      const producer = await client.createProducer({ topic, batchingMaxPublishDelayMs: 2, sendTimeoutMs: 120_000 });
      const total = 1000;
      const acked: number[] = [];
      let sent = 0;
      const produce = (async () => {
        while (sent < total) {
          const window = Array.from({ length: Math.min(25, total - sent) }, () => sent++);
          await Promise.all(window.map((n) => producer.send({ data: Buffer.from(String(n)) }).then(() => acked.push(n))));
        }
      })();
      const received: number[] = [];
      const consume = (async () => {
        const seen = new Set<number>();
        while (seen.size < total) {
          const m = await consumer.receive(120_000);
          const n = Number(m.getData().toString());
          received.push(n);
          seen.add(n);
          await consumer.acknowledge(m).catch(() => undefined);
        }
      })();
      const deadline = Date.now() + 60_000;
      while (acked.length < 300 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(acked.length).toBeGreaterThanOrEqual(300);
      await kill();
      const ackedAtKill = acked.length;
      expect(ackedAtKill).toBeLessThan(total);
      expect(producer.isConnected()).toBe(false);
      await startStandalone();
      await produce;
      await consume;
      expect(acked).toHaveLength(total);
      const firsts = received.filter((n, i) => received.indexOf(n) === i);
      expect(firsts).toEqual(Array.from({ length: total }, (_, i) => i));
      await producer.close();
      await consumer.close();
    } finally {
      await client.close();
    }
  }, 240_000);
});
