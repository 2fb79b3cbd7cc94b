import * as grpc from '@grpc/grpc-js';
import { loadProtos } from '@strata/runtime';
import { afterAll, describe, expect, it } from 'vitest';
import type { Cluster, ClusterNode } from './harness/cluster.js';
import { History } from './harness/history.js';
import { watchClaims } from './robustness/faults.js';

// The checker must be able to fail: each invariant is shown catching its violation.
describe('History checker', () => {
  it('passes a clean history', () => {
    const h = new History();
    for (let i = 0; i < 3; i++) h.acknowledged(h.sending('p', i));
    for (let i = 0; i < 3; i++) h.receivedBy('c', `p:${i}`);
    expect(h.check()).toEqual({ acknowledged: 3, delivered: 3, lost: [], duplicates: [], reordered: [], phantom: [], storedTwice: [], redeliveredAfterAck: [] });
  });

  it('finds an acknowledged message delivered again although its acknowledgement had been persisted', () => {
    const h = new History();
    const acks = [1_000, 3_500, 6_000, 12_500, 20_000]; // p:0 .. p:4
    acks.forEach((at, i) => {
      h.acknowledged(h.sending('p', i));
      h.receivedBy('c', `p:${i}`, undefined, at - 10);
      h.consumerAcknowledged(`p:${i}`, at);
    });
    // Faults from 5 s to 10 s (whole again), a 2 s window: p:1 (1.5 s before) and p:2 (during) may come
    // again; p:0 (4 s before) and p:3 (2.5 s after the heal) had been persisted.
    for (let i = 0; i < 4; i++) h.receivedBy('c', `p:${i}`, undefined, 15_000);
    h.receivedBy('c', 'p:4', undefined, 21_000); // acknowledged long after the faults: persisted
    const found = h.check({ faultPeriod: { fromMs: 5_000, toMs: 10_000 }, ackDurableAfterMs: 2_000 }).redeliveredAfterAck;
    expect(found.map((line) => line.split(' ')[0])).toEqual(['p:0', 'p:3', 'p:4']);
    // Not asked for: not checked.
    expect(h.check().redeliveredAfterAck).toEqual([]);
  });

  it('finds lost, duplicated, reordered and phantom messages', () => {
    const h = new History();
    for (let i = 0; i < 4; i++) h.acknowledged(h.sending('p', i));
    h.sending('p', 4); // sent, never acknowledged: its absence is not a loss
    h.receivedBy('c', 'p:0');
    h.receivedBy('c', 'p:2');
    h.receivedBy('c', 'p:1'); // first delivery of 1 after 2: reordered
    h.receivedBy('c', 'p:2'); // redelivery: a duplicate, but not a reorder
    h.receivedBy('c', 'q:9');
    const report = h.check();
    expect(report.lost).toEqual(['p:3']);
    expect(report.duplicates).toEqual(['p:2']);
    expect(report.reordered).toEqual(['p:1 after p:2 on c']);
    expect(report.phantom).toEqual(['q:9']);
    expect(report.storedTwice).toEqual([]);
  });

  it('tells a redelivery (same message id) from a message stored twice (two ids)', () => {
    const h = new History();
    for (let i = 0; i < 2; i++) h.acknowledged(h.sending('p', i));
    h.receivedBy('c', 'p:0', '(1,0,-1,-1)');
    h.receivedBy('c', 'p:0', '(1,0,-1,-1)'); // redelivered after a crash: allowed
    h.receivedBy('c', 'p:1', '(1,1,-1,-1)');
    h.receivedBy('c', 'p:1', '(1,2,-1,-1)'); // a resend stored again: not allowed with dedup on
    const report = h.check();
    expect(report.duplicates).toEqual(['p:0', 'p:1']);
    expect(report.storedTwice).toEqual(['p:1']);
    expect(h.missing()).toBe(0);
  });
});

// The "no two owners at once" check of the owner faults (test/robustness/faults.ts) must be able to
// fail too: stand-in Admin servers answer LookupBundle as scripted (no cluster needed).
describe('watchClaims', () => {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- generated types live in the broker package
  const proto = loadProtos<any>(['strata/broker/v1/admin.proto']);
  const servers: grpc.Server[] = [];

  /** An Admin server whose LookupBundle answers `owner(address)` (the claimed owner's host:port, or ''). */
  async function standIn(owner: (self: string) => string): Promise<ClusterNode> {
    const server = new grpc.Server();
    let self = '';
    server.addService(proto.strata.broker.v1.Admin.service, {
      LookupBundle: (_call: unknown, cb: (err: null, res: object) => void) => cb(null, { namespace: 'public/x', range: '0x00000000_0xffffffff', ownerBrokerId: owner(self), ownerUrl: owner(self) }),
    });
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
    servers.push(server);
    self = `127.0.0.1:${port}`;
    return {
      role: 'broker', index: servers.length - 1, address: self, httpUrl: 'http://127.0.0.1:1', running: true,
      kill: async () => undefined, pause: () => undefined, resume: () => undefined, restart: async () => undefined, stop: async () => undefined,
    };
  }

  const clusterOf = (brokers: ClusterNode[]): Cluster => ({
    serviceUrl: '', metadataUrl: '', brokers, bookies: [], coordinators: [], etcdMembers: [], stop: async () => undefined,
  });

  afterAll(() => {
    for (const s of servers) s.forceShutdown();
  });

  it('reports the old owner still claiming the bundle after another took it', async () => {
    const t0 = Date.now();
    const old = await standIn((self) => self); // never lets go
    const next = await standIn((self) => (Date.now() - t0 > 200 ? self : ''));
    const watch = watchClaims(clusterOf([old, next]), 'persistent://public/x/t', old);
    await new Promise((r) => setTimeout(r, 1500));
    expect(await watch.stop()).toMatch(/broker-0 still claimed the topic's bundle at .* after broker-1 claimed it/);
  });

  it('passes a clean hand-over (the old owner lets go before the next claims)', async () => {
    const t0 = Date.now();
    const old = await standIn((self) => (Date.now() - t0 < 200 ? self : ''));
    const next = await standIn((self) => (Date.now() - t0 > 500 ? self : ''));
    const watch = watchClaims(clusterOf([old, next]), 'persistent://public/x/t', old);
    await new Promise((r) => setTimeout(r, 1500));
    expect(await watch.stop()).toBeUndefined();
  });
});
