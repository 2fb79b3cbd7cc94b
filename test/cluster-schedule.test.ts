// The robustness suite's replay promise (docs/robustness.md, decision 0071): the same STRATA_SEED gives
// the same schedule per scenario, whichever scenarios run; a different seed gives a different one.
import { Random } from '@strata/runtime';
import { describe, expect, it } from 'vitest';
import type { Cluster, ClusterNode, EtcdMemberNode } from './harness/cluster.js';
import { bookieThenBrokerKill, brokerKill, describeSchedule, etcdMemberKill, rounds, runSchedule, scenarioSeed } from './robustness/faults.js';

function node(role: ClusterNode['role'], index: number): ClusterNode {
  return {
    role, index, address: `127.0.0.1:${1000 + index}`, httpUrl: `http://127.0.0.1:${2000 + index}`, running: true,
    kill: async () => undefined, pause: () => undefined, resume: () => undefined, restart: async () => undefined, stop: async () => undefined,
  };
}

const member = (index: number): EtcdMemberNode => ({ index, running: true, kill: async () => undefined, restart: async () => undefined });

const cluster: Cluster = {
  serviceUrl: 'pulsar://127.0.0.1:1', metadataUrl: 'etcd://127.0.0.1:2',
  brokers: [node('broker', 0)], bookies: [0, 1, 2].map((i) => node('bookie', i)), coordinators: [node('coordinator', 0)],
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
