// The robustness suite, short form (docs/robustness.md): a real cluster of processes (3 etcd members,
// 3 bookies, a coordinator, a broker; E=W=A=2, dedup on), a workload on every subscription type, and
// one fault schedule per test drawn from STRATA_SEED. Replay: STRATA_SEED=<n> npx vitest run test/cluster-robustness.test.ts
import { Client } from '@strata/client';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ProcessCluster } from './harness/process-cluster.js';
import {
  baseSeed, bookieKill, healCluster, bookiePause, bookieThenBrokerKill, brokerGracefulRestart, brokerKill, brokerPausePastSession, etcdMemberKill, rounds, scenarioRandom, type FaultStep,
} from './robustness/faults.js';
import { admin, runScenario, type ScenarioResult } from './robustness/scenario.js';

const NAMESPACE = 'public/robust';
const CURSOR_FLUSH_MS = 1000;
const BROKER_SESSION_TTL_MS = 10_000;
/** The long form: e.g. STRATA_ROBUSTNESS_ROUNDS=4 STRATA_ROBUSTNESS_RATE=100 (CI runs 1 round at 40 msg/s per producer). */
const ROUNDS = Number(process.env.STRATA_ROBUSTNESS_ROUNDS ?? 1);
const RATE = Number(process.env.STRATA_ROBUSTNESS_RATE ?? 40);
const SCENARIO_TIMEOUT_MS = 240_000 * ROUNDS;
/** Dedup on (the default) makes "stored twice" a failure; STRATA_ROBUSTNESS_DEDUP=false shows what it prevents. */
const DEDUP = process.env.STRATA_ROBUSTNESS_DEDUP !== 'false';
/** Log level of the cluster's processes (their logs are in the cluster's dir; STRATA_KEEP_TEST_DIRS=1 keeps it). */
const LOG_LEVEL = process.env.STRATA_ROBUSTNESS_LOG_LEVEL ?? 'warn';

console.log(`cluster-robustness: STRATA_SEED=${baseSeed()} (replay: STRATA_SEED=${baseSeed()} npx vitest run test/cluster-robustness.test.ts)`);

/** The guarantees (DESIGN.md "Guarantees") the History must show after any of these faults. */
function expectClean(result: ScenarioResult): void {
  for (const sub of result.subscriptions) {
    const where = `${sub.subscription} (STRATA_SEED=${baseSeed()})`;
    expect(sub.acknowledged, `${where}: nothing was acknowledged`).toBeGreaterThan(0);
    expect(sub.lost, `${where}: acknowledged but never delivered`).toEqual([]);
    expect(sub.phantom, `${where}: delivered but never sent`).toEqual([]);
    // With dedup on, a producer's resend must not be stored a second time (redeliveries are allowed).
    if (DEDUP) expect(sub.storedTwice, `${where}: stored twice despite dedup`).toEqual([]);
    if (sub.ordered) expect(sub.reordered, `${where}: order per producer (per key on KeyShared)`).toEqual([]);
  }
  for (const p of result.producers) {
    expect(result.resumed[p.name], `producer ${p.name} never had a send acknowledged after the faults (STRATA_SEED=${baseSeed()})`).toBeGreaterThan(0);
    // sendTimeoutMs is 0: a send fails only if the SDK gives up, which no fault here should cause.
    expect(p.failed, `producer ${p.name}: ${p.firstError}`).toBe(0);
  }
}

describe('robustness: a real process cluster under faults', () => {
  let cluster: ProcessCluster;
  let topicCounter = 0;
  const topic = (name: string) => `persistent://${NAMESPACE}/${name}-${Date.now().toString(36)}-${topicCounter++}`;

  beforeAll(async () => {
    cluster = await ProcessCluster.start({
      etcdMembers: 3, bookies: 3, brokers: 1, coordinators: 1,
      brokerFlags: { 'ensemble-size': 2, 'write-quorum': 2, 'ack-quorum': 2, 'cursor-flush-interval-ms': CURSOR_FLUSH_MS, 'session-ttl-ms': BROKER_SESSION_TTL_MS, 'log-level': LOG_LEVEL },
      bookieFlags: { 'log-level': LOG_LEVEL },
      coordinatorFlags: { 'log-level': LOG_LEVEL },
    });
    console.log(`cluster ${cluster.name}: logs in ${cluster.logDir} (kept with STRATA_KEEP_TEST_DIRS=1)`);
    await admin(cluster, 'namespaces', 'create', NAMESPACE);
    // Infinite retention: without it, ledgers every subscription has acknowledged are trimmed, and the
    // read-back (a fresh subscription from the earliest message) could not see them.
    await admin(cluster, 'namespaces', 'policies', 'set', NAMESPACE, '--deduplication', String(DEDUP), '--retention-time-minutes', '-1', '--retention-size-mb', '-1');
    console.log(`${NAMESPACE} policies: ${(await admin(cluster, 'namespaces', 'policies', 'get', NAMESPACE, '--json')).replace(/\s+/g, ' ')}`);
  }, 300_000);

  afterAll(async () => {
    await cluster?.stop();
  }, 120_000);

  // A scenario that failed half-way must not leave the next one a broken cluster.
  beforeEach(async () => {
    if (cluster) await healCluster(cluster, { restartUnready: true });
  }, 180_000);

  const scenario = (name: string, make: (rng: ReturnType<typeof scenarioRandom>) => FaultStep[]) =>
    it(name, async () => {
      const rng = scenarioRandom(name);
      const schedule = rounds(ROUNDS, rng, make);
      const result = await runScenario({
        name, cluster, topic: topic(name.replace(/[^a-z0-9]+/gi, '-')), schedule, logDir: cluster.logDir,
        workload: { ratePerProducer: RATE, maxMessagesPerProducer: 1000 + 500 * ROUNDS * Math.ceil(RATE / 40) },
      });
      expectClean(result);
    }, SCENARIO_TIMEOUT_MS);

  const log = (line: string) => console.log(line);

  scenario('no fault (baseline: order per producer, every subscription type)', () => [
    { atMs: 3000, description: 'nothing (load only)', run: async () => undefined },
  ]);
  scenario('kill -9 the broker, then restart it', (rng) => brokerKill(cluster, rng));
  scenario('graceful broker restart (SIGTERM, then start)', (rng) => brokerGracefulRestart(cluster, rng));
  scenario('kill -9 a bookie of the ensemble, later restart it', (rng) => bookieKill(cluster, rng, log));
  scenario('SIGSTOP a bookie of the ensemble, then SIGCONT', (rng) => bookiePause(cluster, rng, log));
  scenario('kill -9 an etcd member mid-load, later restart it', (rng) => etcdMemberKill(cluster, rng));
  scenario('SIGSTOP the broker past its session, then SIGCONT', (rng) => brokerPausePastSession(cluster, rng, BROKER_SESSION_TTL_MS, log));
  scenario('kill -9 a bookie of the ensemble, then the broker while the bookie is down', (rng) => bookieThenBrokerKill(cluster, rng, log));

  it('keeps acknowledgements across kill -9 of the broker (cursor persistence)', async () => {
    const t = topic('cursor');
    const client = new Client({ serviceUrl: cluster.serviceUrl, operationTimeoutSeconds: 60, maxBackoffIntervalMs: 2000 });
    try {
      const consumer = await client.subscribe({ topic: t, subscription: 's', subscriptionType: 'Exclusive', subscriptionInitialPosition: 'Earliest' });
      const producer = await client.createProducer({ topic: t, producerName: 'cursor-p' });
      for (let i = 0; i < 100; i++) await producer.send({ data: Buffer.from(`cursor-p:${i}`) });
      for (let i = 0; i < 100; i++) {
        const m = await consumer.receive(60_000);
        expect(m.getData().toString()).toBe(`cursor-p:${i}`);
        await consumer.acknowledge(m);
      }
      // Past the flush window every acknowledgement is persisted: none may come back after a crash.
      await new Promise((r) => setTimeout(r, CURSOR_FLUSH_MS * 3));
      await cluster.brokers[0]!.kill();
      await cluster.brokers[0]!.restart();
      await producer.send({ data: Buffer.from('cursor-p:100') });
      const after = await consumer.receive(60_000);
      expect(after.getData().toString(), 'the first message after the restart must be the new one, not a redelivery').toBe('cursor-p:100');
      await consumer.acknowledge(after);
      await expect(consumer.receive(2000)).rejects.toThrow();
    } finally {
      await client.close().catch(() => undefined);
    }
  }, SCENARIO_TIMEOUT_MS);
});
