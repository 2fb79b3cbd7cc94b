// ConnectionPool against real sockets: a port nobody listens on (a dead broker on a live host), a
// listener that accepts but never speaks (an address that swallows the connection, like a killed
// container's), and a real gRPC server answering Lookup.
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { afterEach, describe, expect, it } from 'vitest';
import { ConnectionPool } from '../src/connection.js';
import { silentLogger } from '../src/logger.js';
import { protosDir } from '@strata/runtime';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A port that was free a moment ago and has no listener now. */
async function deadAddress(): Promise<string> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise<void>((r) => server.close(() => r()));
  return `127.0.0.1:${port}`;
}

/** Accepts TCP connections and never answers: gRPC's HTTP/2 handshake never completes. */
async function silentAddress(): Promise<string> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise<void>((r) => {
    for (const s of sockets) s.destroy();
    server.close(() => r());
  }));
  return `127.0.0.1:${(server.address() as { port: number }).port}`;
}

/** A gRPC server on `bind` whose Lookup answers itself (authoritative); returns its address. */
async function lookupServerOn(bind: string): Promise<string> {
  return (await lookupServer(undefined, bind)).address;
}

/** A gRPC server whose Lookup answers `answer(self)` (authoritative) and every topic has 3 partitions. */
async function lookupServer(answer: (self: string) => string = (self) => self, bind = '127.0.0.1:0'): Promise<{ address: string; lookups: () => number }> {
  const dir = protosDir();
  const definition = protoLoader.loadSync([join(dir, 'strata/broker/v1/broker.proto')], { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true, includeDirs: [dir] });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as { strata: { broker: { v1: { Broker: { service: grpc.ServiceDefinition } } } } };
  const server = new grpc.Server();
  let address = '';
  let lookups = 0;
  server.addService(pkg.strata.broker.v1.Broker.service, {
    Lookup: (_call: unknown, cb: grpc.sendUnaryData<{ brokerUrl: string; authoritative: boolean }>) => {
      lookups++;
      cb(null, { brokerUrl: answer(address), authoritative: true });
    },
    GetPartitionedTopicMetadata: (_call: unknown, cb: grpc.sendUnaryData<{ partitions: number }>) => cb(null, { partitions: 3 }),
  } as grpc.UntypedServiceImplementation);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync(bind, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  address = `127.0.0.1:${port}`;
  cleanups.push(() => new Promise<void>((r) => server.tryShutdown(() => r())));
  return { address, lookups: () => lookups };
}

function pool(hosts: string[], options: { connectionTimeoutMs?: number; connectWaitMs?: number } = {}): ConnectionPool {
  const p = new ConnectionPool(hosts, 30_000, silentLogger, options.connectionTimeoutMs ?? 10_000, options.connectWaitMs);
  cleanups.push(() => p.close());
  return p;
}

describe('ConnectionPool.connect', () => {
  it('fails at once with UNAVAILABLE when nothing listens (a dead broker on a live host)', async () => {
    const dead = await deadAddress();
    const p = pool([dead]);
    const err = await p.connect(dead).then(() => undefined, (e: unknown) => e);
    expect(err).toMatchObject({ code: 'UNAVAILABLE' });
    expect(String(err)).toMatch(/connection failed/);
  });

  it('waits at most connectWaitMs on an address that never answers, keeps that attempt going, and drops it after connectionTimeoutMs', async () => {
    const silent = await silentAddress();
    const p = pool([silent], { connectWaitMs: 200, connectionTimeoutMs: 1_500 });
    const channel = p.get(silent);
    const started = Date.now();
    const err = await p.connect(silent).then(() => undefined, (e: unknown) => e);
    expect(err).toMatchObject({ code: 'UNAVAILABLE' });
    expect(String(err)).toMatch(/not connected after/);
    // It gave up on the wait, not on the attempt: connectionTimeoutMs (1.5 s) is not over yet.
    expect(Date.now() - started).toBeLessThan(1_500);
    // The same channel keeps connecting: a second call continues that attempt.
    expect(p.get(silent)).toBe(channel);
    await p.connect(silent).catch(() => undefined);
    if (Date.now() - started < 1_500) expect(p.get(silent)).toBe(channel);
    // Once the attempt is older than connectionTimeoutMs it is dropped and the next call starts afresh.
    while (Date.now() - started < 1_600) await p.connect(silent).catch(() => undefined);
    await p.connect(silent).catch(() => undefined);
    expect(p.get(silent)).not.toBe(channel);
  });

  it('connects to a live broker and reuses the channel', async () => {
    const live = await lookupServer();
    const p = pool([live.address]);
    const conn = await p.connect(live.address);
    expect(await p.connect(live.address)).toBe(conn);
  });
});

describe('ConnectionPool.lookup', () => {
  it('skips a dead service host within the same call', async () => {
    const dead = await deadAddress();
    const live = await lookupServer();
    const p = pool([dead, live.address]);
    expect(await p.lookup('persistent://public/default/t')).toBe(live.address);
    expect(live.lookups()).toBe(1);
    // And the next lookup starts at the host that worked.
    expect(await p.lookup('persistent://public/default/t')).toBe(live.address);
    expect(live.lookups()).toBe(2);
  });

  it('a service host that swallows connections costs one connect wait, not the request deadline', async () => {
    const silent = await silentAddress();
    const live = await lookupServer();
    const p = pool([silent, live.address], { connectWaitMs: 200 });
    // Before: the request waited on the silent host's channel for the whole operation timeout (30 s).
    expect(await p.lookup('persistent://public/default/t')).toBe(live.address);
    expect(await p.partitions('persistent://public/default/t')).toBe(3);
  });

  it('partitions retries until a service host answers (a client started before its broker)', async () => {
    const dead = await deadAddress();
    const p = pool([dead]);
    const asked = p.partitions('persistent://public/default/t');
    // Nothing listens yet; a broker comes up on that port a moment later.
    await new Promise((r) => setTimeout(r, 300));
    const [host, port] = dead.split(':') as [string, string];
    const server = await lookupServerOn(`${host}:${port}`);
    expect(server).toBe(dead);
    expect(await asked).toBe(3);
  });

  it('fails with the last error when every service host is dead', async () => {
    const p = pool([await deadAddress(), await deadAddress()]);
    await expect(p.lookup('persistent://public/default/t')).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });
});
