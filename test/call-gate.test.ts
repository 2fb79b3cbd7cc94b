import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ErrorCode, PROTO_LOADER_OPTIONS, protosDir, StrataError, type CallGate } from '@strata/runtime';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startInProcessStandalone, type InProcessStandalone, type StandalonePorts } from './harness/in-process-standalone.js';

// Decision 0087: every method of every role's gRPC services, and every HTTP route but health, passes the
// call gate. A standalone runs all three roles in this process with a gate that refuses everyone; each
// method of each service in protos/ is then called on the role that serves it and must be refused by
// the gate, not reached. A method added without going through the seam fails here (or at start-up).

const refuseAll: CallGate = {
  authenticate: () => { throw new StrataError(ErrorCode.UNAUTHENTICATED, 'gate test: nobody gets in'); },
  authorize: () => { throw new StrataError(ErrorCode.PERMISSION_DENIED, 'unreachable'); },
};

let running: InProcessStandalone;
let ports: StandalonePorts;

beforeAll(async () => {
  running = await startInProcessStandalone('strata-gate-', { gate: refuseAll });
  ports = running.ports;
});

afterAll(async () => {
  await running?.stop();
});

/** Every service a proto file declares, as grpc-js definitions. */
function servicesOf(file: string): Array<[string, grpc.ServiceDefinition]> {
  const root = protosDir();
  const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(join(root, file), { ...PROTO_LOADER_OPTIONS, includeDirs: [root] }));
  const out: Array<[string, grpc.ServiceDefinition]> = [];
  const walk = (node: object, prefix: string): void => {
    for (const [name, value] of Object.entries(node)) {
      if (typeof value === 'function' && 'service' in value) out.push([`${prefix}${name}`, (value as { service: grpc.ServiceDefinition }).service]);
      else if (value && typeof value === 'object' && !('format' in value)) walk(value as object, `${prefix}${name}.`);
    }
  };
  walk(pkg, '');
  return out;
}

/** Calls a method with an empty request; resolves with the gRPC status it ended with (OK if it answered). */
function callOnce(address: string, service: grpc.ServiceDefinition, name: string): Promise<grpc.status> {
  const Client = grpc.makeGenericClientConstructor(service, 'Any');
  const client = new Client(address, grpc.credentials.createInsecure()) as unknown as Record<string, (...args: unknown[]) => unknown> & grpc.Client;
  const def = service[name]!;
  const deadline = Date.now() + 5_000;
  return new Promise<grpc.status>((resolve) => {
    const done = (code: grpc.status) => { client.close(); resolve(code); };
    if (!def.requestStream && !def.responseStream) {
      client[name]!.call(client, {}, { deadline }, (err: grpc.ServiceError | null) => done(err ? err.code : grpc.status.OK));
      return;
    }
    const call = (def.requestStream ? client[name]!.call(client, { deadline }) : client[name]!.call(client, {}, { deadline })) as grpc.ClientDuplexStream<unknown, unknown>;
    call.on('data', () => undefined);
    call.on('error', (err: grpc.ServiceError) => done(err.code));
    call.on('status', (s: grpc.StatusObject) => { if (s.code === grpc.status.OK) done(grpc.status.OK); });
    if (def.requestStream) call.write({});
  });
}

describe('the call gate on every role (decision 0087)', () => {
  const cases: Array<[string, () => string]> = [
    ['strata/broker/v1/broker.proto', () => `127.0.0.1:${ports.broker}`],
    ['strata/broker/v1/admin.proto', () => `127.0.0.1:${ports.broker}`],
    ['strata/bookie/v1/bookie.proto', () => `127.0.0.1:${ports.bookies[0]}`],
    ['strata/coordinator/v1/coordinator.proto', () => `127.0.0.1:${ports.coordinator}`],
  ];
  for (const [file, address] of cases) {
    it(`refuses every method of ${file} before its handler`, async () => {
      const services = servicesOf(file).filter(([name]) => name.startsWith('strata.'));
      expect(services.length).toBeGreaterThan(0);
      for (const [serviceName, service] of services) {
        const methods = Object.keys(service);
        expect(methods.length).toBeGreaterThan(0);
        for (const method of methods) {
          expect([`${serviceName}/${method}`, await callOnce(address(), service, method)]).toEqual([`${serviceName}/${method}`, grpc.status.UNAUTHENTICATED]);
        }
      }
    });
  }

  it('puts every admin REST endpoint of the broker behind the gate', async () => {
    const calls: Array<[string, string]> = [
      ['GET', '/admin/v2/tenants'], ['PUT', '/admin/v2/tenants/t'], ['GET', '/admin/v2/namespaces/public/default'],
      ['PUT', '/admin/v2/persistent/public/default/t'], ['PUT', '/admin/v2/persistent/public/default/t/partitions'],
      ['DELETE', '/admin/v2/persistent/public/default/t/subscription/s'], ['GET', '/admin/v2/clusters'],
      ['GET', '/admin/v2/brokers/health'], ['GET', '/lookup/v2/topic/persistent/public/default/t'],
    ];
    for (const [method, path] of calls) {
      const res = await fetch(`http://127.0.0.1:${ports.brokerHttp}${path}`, { method });
      expect([method, path, res.status]).toEqual([method, path, 401]);
    }
  });

  it('leaves the health service and /healthz open, and puts /metrics behind the gate, on every role', async () => {
    const [, health] = servicesOf('grpc/health/v1/health.proto').find(([name]) => name.endsWith('Health'))!;
    for (const port of [ports.broker, ports.coordinator, ...ports.bookies]) {
      expect(await callOnce(`127.0.0.1:${port}`, health, 'Check')).toBe(grpc.status.OK);
    }
    for (const port of [ports.brokerHttp, ports.coordinatorHttp, ...ports.bookieHttp]) {
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
      const metrics = await fetch(`http://127.0.0.1:${port}/metrics`);
      expect(metrics.status).toBe(401);
      expect(await metrics.json()).toEqual({ reason: 'gate test: nobody gets in' });
    }
  });
});
