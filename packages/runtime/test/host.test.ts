import * as grpc from '@grpc/grpc-js';
import http2 from 'node:http2';
import { afterEach, describe, expect, it } from 'vitest';
import type { ProtoGrpcType } from '../src/generated/health.js';
import { loadProtos, ServiceHost, silentLogger } from '../src/index.js';

const hosts: ServiceHost[] = [];
afterEach(async () => {
  await Promise.all(hosts.splice(0).map((h) => h.stop(100)));
});

async function startHost(): Promise<ServiceHost> {
  const host = new ServiceHost({ role: 'test', grpcHost: '127.0.0.1', grpcPort: 0, httpHost: '127.0.0.1', httpPort: 0, maxMessageBytes: 1 << 20, logger: silentLogger() });
  hosts.push(host);
  await host.start();
  return host;
}

function healthStatus(port: number, service = ''): Promise<string> {
  const proto = loadProtos<ProtoGrpcType>(['grpc/health/v1/health.proto']);
  const client = new proto.grpc.health.v1.Health(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) => {
    client.check({ service }, (err, res) => {
      client.close();
      if (err || !res) reject(err ?? new Error('no response'));
      else resolve(String(res.status));
    });
  });
}

describe('ServiceHost', () => {
  it('serves liveness always and readiness only when ready, over HTTP and gRPC health', async () => {
    const host = await startHost();
    const { grpcPort, httpPort } = host.ports;
    const base = `http://127.0.0.1:${httpPort}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const notReady = await fetch(`${base}/readyz`);
    expect(notReady.status).toBe(503);
    expect(await notReady.text()).toContain('starting');
    expect(await healthStatus(grpcPort)).toBe('NOT_SERVING');

    host.setReady(true);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    expect(await healthStatus(grpcPort)).toBe('SERVING');
    expect(await healthStatus(grpcPort, 'test')).toBe('SERVING');

    host.setReady(false, 'metadata session lost');
    const lost = await fetch(`${base}/readyz`);
    expect(lost.status).toBe(503);
    expect(await lost.text()).toContain('metadata session lost');
  });

  it('exposes Prometheus metrics labelled with the role, and 404s unknown paths', async () => {
    const host = await startHost();
    const base = `http://127.0.0.1:${host.ports.httpPort}`;
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/process_cpu_user_seconds_total\{role="test"\}/);
    expect((await fetch(`${base}/nope`)).status).toBe(404);
  });

  it('gives each HTTP/2 connection and stream a 1 MiB receive window, not Node\'s 64 KiB (decision 0081)', async () => {
    const host = await startHost();
    const session = http2.connect(`http://127.0.0.1:${host.ports.grpcPort}`);
    session.on('error', () => undefined);
    try {
      const settings = await new Promise<http2.Settings>((resolve) => session.once('remoteSettings', resolve));
      expect(settings.initialWindowSize).toBe(1024 * 1024);
      // The connection window arrives as a WINDOW_UPDATE right after the server's SETTINGS.
      await expect.poll(() => session.state.remoteWindowSize, { timeout: 2_000 }).toBe(1024 * 1024);
    } finally {
      session.destroy();
    }
  });
});
