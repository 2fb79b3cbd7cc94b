// `strata standalone` (the built bin, a real process) on free ports except one this test holds: it must
// say in one line which port is taken and which flag moves it, and exit non-zero, with no stray lines
// (no grpc-js "E No address added ..." line, no JSON stack).
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBin } from './run-bin.js';


function listen(): Promise<Server> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => resolve(s));
  });
}
const portOf = (s: Server) => (s.address() as { port: number }).port;

async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(Array.from({ length: n }, () => listen()));
  const ports = servers.map(portOf);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

const runStandalone = (args: string[], timeoutMs?: number) => runBin(['standalone', ...args], timeoutMs);

let dir = '';
let held: Server;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'strata-standalone-ports-'));
  held = await listen();
});

afterAll(async () => {
  await new Promise((r) => held?.close(r));
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('strata standalone with a port already in use', () => {
  const cases: Array<{ flag: string; line: RegExp }> = [
    { flag: '--broker-port', line: /^strata standalone: port (\d+) is in use .*: pass --broker-port <n>$/ },
    { flag: '--coordinator-http-port', line: /^strata standalone: port (\d+) is in use .*: pass --coordinator-http-port <n>$/ },
  ];
  for (const { flag, line } of cases) {
    it(`names ${flag} in one line and exits non-zero`, async () => {
      const [broker, brokerHttp, b1, b2, b1Http, b2Http, coord, coordHttp] = (await freePorts(8)).map(String) as string[];
      const ports: Record<string, string> = {
        '--broker-port': broker!, '--broker-http-port': brokerHttp!, '--bookie-ports': `${b1},${b2}`, '--bookie-http-ports': `${b1Http},${b2Http}`,
        '--coordinator-port': coord!, '--coordinator-http-port': coordHttp!,
      };
      ports[flag] = String(portOf(held));
      const r = await runStandalone(['--data-dir', join(dir, flag.slice(2)), '--host', '127.0.0.1', ...Object.entries(ports).flat()]);
      expect(r.code).not.toBe(0);
      expect(r.code).not.toBeNull();
      const lines = r.stderr.trim().split('\n');
      expect(lines, r.stderr).toHaveLength(1);
      expect(lines[0]).toMatch(line);
      expect(Number(line.exec(lines[0]!)?.[1])).toBe(portOf(held));
      expect(r.stdout).not.toMatch(/ready|EADDRINUSE|"level"/);
    }, 60_000);
  }
});

describe('the standalone banner', () => {
  it('hints --service-url and STRATA_SERVICE_URL only when the default URL would not reach the broker', async () => {
    const { standaloneBanner } = await import('../src/standalone.js');
    const plain = standaloneBanner({ host: '127.0.0.1', logLevel: 'warn' }, { serviceUrl: 'pulsar://127.0.0.1:6650', grpcPort: 6650, httpPort: 8080 });
    expect(plain).toMatch(/service URL: pulsar:\/\/127\.0\.0\.1:6650/);
    expect(plain).not.toContain('--service-url');
    expect(plain).toContain('--log-level info');
    const moved = standaloneBanner({ host: '127.0.0.1', logLevel: 'info' }, { serviceUrl: 'pulsar://127.0.0.1:7650', grpcPort: 7650, httpPort: 8080 });
    expect(moved).toContain('npx strata produce my-topic -m hello --service-url pulsar://127.0.0.1:7650');
    expect(moved).toContain('export STRATA_SERVICE_URL=pulsar://127.0.0.1:7650');
    expect(moved).not.toContain('--log-level info');
    // The banner is framed (stands out from log lines) and ends the output with a blank line.
    expect(moved.trimEnd().split('\n').pop()).toMatch(/^=+$/);
  });
});
