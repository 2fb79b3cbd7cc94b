// The robustness suite's replay promise (docs/robustness.md, decision 0071): the same STRATA_SEED gives
// the same schedule per scenario, whichever scenarios run; a different seed gives a different one.
import { Random } from '@strata/runtime';
import { describe, expect, it } from 'vitest';
import type { Cluster, ClusterNode, EtcdMemberNode } from './harness/cluster.js';
import {
  bookieThenBrokerKill, bookieThenOwnerKill, brokerEtcdCut, brokerKill, describeSchedule, etcdMemberKill, gracefulUnload, ownerBrokerKill,
  ownerBrokerPausePastSession, rollingRestart, rounds, runSchedule, scenarioSeed,
} from './robustness/faults.js';

function node(role: ClusterNode['role'], index: number): ClusterNode {
  return {
    role, index, address: `127.0.0.1:${1000 + index}`, httpUrl: `http://127.0.0.1:${2000 + index}`, running: true,
    kill: async () => undefined, pause: () => undefined, resume: () => undefined, restart: async () => undefined, stop: async () => undefined,
  };
}

const member = (index: number): EtcdMemberNode => ({ index, running: true, kill: async () => undefined, restart: async () => undefined });

const cluster: Cluster = {
  serviceUrl: 'pulsar://127.0.0.1:1', metadataUrl: 'etcd://127.0.0.1:2',
  brokers: [node('broker', 0), node('broker', 1), node('broker', 2)], bookies: [0, 1, 2].map((i) => node('bookie', i)), coordinators: [node('coordinator', 0)],
  etcdMembers: [0, 1, 2].map(member), stop: async () => undefined,
};

const noLog = () => undefined;

describe('robustness fault schedules', () => {
  it('are a function of the seed and the scenario name', () => {
    const make = (seed: number) => describeSchedule(rounds(3, new Random(seed), (rng) => [...brokerKill(cluster, rng), ...etcdMemberKill(cluster, rng), ...bookieThenBrokerKill(cluster, rng, noLog)]));
    expect(make(42)).toBe(make(42));
    expect(make(42)).not.toBe(make(43));
    expect(make(42)).toContain('[round 3] kill -9 broker-0');
  });

  it('aim the broker faults at the topic\'s owner, with timings from the seed', () => {
    const t = 'persistent://public/robust/x';
    const make = (seed: number) => describeSchedule(rounds(2, new Random(seed), (rng) => [
      ...ownerBrokerKill(cluster, t, rng, noLog), ...ownerBrokerPausePastSession(cluster, t, rng, noLog, { sessionTtlMs: 3000 }),
      ...gracefulUnload(cluster, t, rng, noLog), ...bookieThenOwnerKill(cluster, t, rng, noLog), ...brokerEtcdCut(cluster, t, rng, noLog),
    ]));
    expect(make(7)).toBe(make(7));
    expect(make(7)).not.toBe(make(8));
    expect(make(7)).toContain('kill -9 the owner broker of the topic');
    expect(make(7)).toMatch(/SIGSTOP the owner broker of the topic for (\d+) ms \(session TTL 3000 ms\)/);
    const paused = Number(/SIGSTOP the owner broker of the topic for (\d+) ms/.exec(make(7))![1]);
    expect(paused).toBeGreaterThan(3000); // past the session, or the fault tests nothing
  });

  it('keep the seed\'s draws when a pause or cut length is fixed (the long form\'s long partitions)', () => {
    const t = 'persistent://public/robust/x';
    const drawn = describeSchedule(brokerEtcdCut(cluster, t, new Random(5), noLog));
    const fixed = describeSchedule(brokerEtcdCut(cluster, t, new Random(5), noLog, { cutMs: 25_000 }));
    expect(fixed).toContain('for 25000 ms');
    expect(fixed.split('\n')[0]!.slice(0, 8)).toBe(drawn.split('\n')[0]!.slice(0, 8)); // same start offset
    const paused = describeSchedule(ownerBrokerPausePastSession(cluster, t, new Random(5), noLog, { pausedMs: 20_000 }));
    expect(paused).toContain('for 20000 ms');
  });

  it('restart every broker once in a rolling restart, in an order drawn from the seed', () => {
    const orders = new Set<string>();
    for (let seed = 0; seed < 20; seed++) {
      const steps = rollingRestart(cluster, 't', new Random(seed), noLog).filter((s) => s.description.startsWith('SIGTERM'));
      const order = steps.map((s) => /broker-(\d+)/.exec(s.description)![1]).join(',');
      expect([...order.split(',')].sort().join(',')).toBe('0,1,2');
      expect(steps.map((s) => s.atMs)).toEqual([...steps.map((s) => s.atMs)].sort((a, b) => a - b));
      orders.add(order);
    }
    expect(orders.size).toBeGreaterThan(1);
  });

  it('derive each scenario seed from STRATA_SEED and the name only', () => {
    // baseSeed() is fixed for the process, so a scenario's seed does not depend on which others ran.
    expect(scenarioSeed('a')).toBe(scenarioSeed('a'));
    expect(scenarioSeed('a')).not.toBe(scenarioSeed('b'));
  });

  it('runs steps in order, none before its offset', async () => {
    const ran: Array<[string, number]> = [];
    const start = Date.now();
    const step = (atMs: number, name: string) => ({ atMs, description: name, run: async () => void ran.push([name, Date.now() - start]) });
    await runSchedule([step(0, 'a'), step(50, 'b'), step(20, 'c')], start, noLog);
    expect(ran.map(([n]) => n)).toEqual(['a', 'b', 'c']);
    expect(ran[1]![1]).toBeGreaterThanOrEqual(40); // timers may fire a millisecond early
    expect(ran[2]![1]).toBeGreaterThanOrEqual(ran[1]![1]);
  });
});
