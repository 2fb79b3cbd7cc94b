// The admin command layer against an in-process gRPC Admin service stand-in (real gRPC, real protos, an
// in-memory tenant table): flag wiring, table and JSON output, and the broker's error code in the one
// error line. The real broker is covered by cli-e2e.test.ts.
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerClientCommands } from '../src/commands/index.js';
import type { CliIo } from '../src/commands/io.js';
import { protosDir } from '@strata/runtime';
import { freePorts } from '@strata/runtime/testing';

const tenants = new Set(['public']);
const policies = {
  deduplicationEnabled: false, retentionTimeMinutes: 0, retentionSizeMb: 0, messageTtlSeconds: 0, bundles: 4,
  ensembleSize: 2, writeQuorum: 2, ackQuorum: 2,
};
let server: grpc.Server;
let url = '';

function failure(code: grpc.status, domain: string, message: string): grpc.ServiceError {
  const md = new grpc.Metadata();
  md.set('strata-error-code', domain);
  return Object.assign(new Error(message), { code, details: message, metadata: md });
}

beforeAll(async () => {
  const dir = protosDir();
  const def = protoLoader.loadSync([join(dir, 'strata/broker/v1/admin.proto')], { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true, includeDirs: [dir] });
  const pkg = grpc.loadPackageDefinition(def) as unknown as { strata: { broker: { v1: { Admin: { service: grpc.ServiceDefinition } } } } };
  server = new grpc.Server();
  type Cb = grpc.sendUnaryData<unknown>;
  server.addService(pkg.strata.broker.v1.Admin.service, {
    ListTenants: (_c: unknown, cb: Cb) => cb(null, { names: [...tenants] }),
    CreateTenant: (c: grpc.ServerUnaryCall<{ tenant: string }, unknown>, cb: Cb) => {
      if (tenants.has(c.request.tenant)) return cb(failure(grpc.status.ALREADY_EXISTS, 'ALREADY_EXISTS', `tenant ${c.request.tenant} exists`));
      tenants.add(c.request.tenant);
      cb(null, {});
    },
    GetNamespacePolicies: (_c: unknown, cb: Cb) => cb(null, policies),
    SetNamespacePolicies: (c: grpc.ServerUnaryCall<{ policies: typeof policies }, unknown>, cb: Cb) => {
      Object.assign(policies, c.request.policies);
      cb(null, {});
    },
    ListBrokers: (_c: unknown, cb: Cb) => cb(null, { brokers: [{ brokerId: 'b-1', url: '127.0.0.1:1', bundleCount: 4, cpuPercent: 12.5, msgRateIn: 10, msgRateOut: 20 }] }),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  url = `pulsar://127.0.0.1:${port}`;
});

afterAll(() => {
  server?.forceShutdown();
});

function harness() {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = { out: (l) => void out.push(l), err: (l) => void err.push(l), write: () => undefined };
  let exitCode = 0;
  const program = new Command('strata').exitOverride();
  registerClientCommands(program, { io, setExitCode: (c) => { exitCode = c; }, exitWhenDone: false });
  const run = async (...argv: string[]): Promise<number> => {
    exitCode = 0;
    await program.parseAsync(argv.includes('--service-url') ? argv : [...argv, '--service-url', url], { from: 'user' });
    return exitCode;
  };
  return { out, err, run };
}

describe('strata admin', () => {
  it('lists tenants as a table or JSON and creates one', async () => {
    const h = harness();
    expect(await h.run('admin', 'tenants', 'create', 'acme', '--admin-roles', 'ops,dev')).toBe(0);
    expect(h.out.pop()).toBe('tenant acme created');
    expect(await h.run('admin', 'tenants', 'list')).toBe(0);
    expect(h.out.pop()).toBe('TENANT\nacme\npublic');
    expect(await h.run('admin', 'tenants', 'list', '--json')).toBe(0);
    expect(JSON.parse(h.out.pop() as string)).toEqual(['public', 'acme']);
  });

  it('reports the broker error code in one line with exit code 1', async () => {
    const h = harness();
    expect(await h.run('admin', 'tenants', 'create', 'public')).toBe(1);
    expect(h.err).toEqual(['error: tenant public exists (ALREADY_EXISTS)']);
  });

  it('changes only the given policies', async () => {
    const h = harness();
    expect(await h.run('admin', 'namespaces', 'policies', 'set', 'public/default', '--retention-time-minutes', '-1', '--json')).toBe(0);
    expect(JSON.parse(h.out.pop() as string)).toMatchObject({ retentionTimeMinutes: -1, bundles: 4, ensembleSize: 2 });
    expect(policies.retentionTimeMinutes).toBe(-1);
    expect(await h.run('admin', 'namespaces', 'policies', 'get', 'public/default')).toBe(0);
    expect(h.out.pop()).toMatch(/retention time \(min\)\s+infinite/);
    expect(await h.run('admin', 'namespaces', 'policies', 'get', 'not-a-namespace')).toBe(2);
  });

  it('shows brokers as a table', async () => {
    const h = harness();
    expect(await h.run('admin', 'brokers', 'list')).toBe(0);
    const [header, row] = (h.out.pop() as string).split('\n');
    expect(header).toMatch(/^BROKER\s+URL\s+BUNDLES\s+CPU %/);
    expect(row).toMatch(/^b-1\s+127\.0\.0\.1:1\s+4\s+12\.500/);
  });

  it('tries the next broker of a multi-host URL when one cannot be reached, and names every one it tried', async () => {
    const [dead1, dead2] = await freePorts(2);
    const live = url.replace('pulsar://', '');
    const h = harness();
    expect(await h.run('admin', 'tenants', 'list', '--service-url', `pulsar://127.0.0.1:${dead1},${live}`)).toBe(0);
    expect(h.out.pop()).toMatch(/^TENANT\n/);
    expect(await h.run('admin', 'tenants', 'list', '--service-url', `pulsar://127.0.0.1:${dead1},127.0.0.1:${dead2}`)).toBe(1);
    expect(h.err.pop()).toBe(`error: cannot reach a broker at 127.0.0.1:${dead1} (ECONNREFUSED), 127.0.0.1:${dead2} (ECONNREFUSED) (UNAVAILABLE)`);
  });
});
