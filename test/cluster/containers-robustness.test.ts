// The robustness scenarios (test/robustness) on a cluster of containers from the locally built images:
// 3 etcd members, 3 bookies, a coordinator and 2 brokers (E=W=A=2, dedup on), each container on a
// fixed IP; the clients' service URL lists both brokers. The same workload and history checks as
// test/cluster-robustness.test.ts, with `docker kill` for kill -9 aimed at the topic's OWNER broker,
// plus what only containers can do here: cut the owner off etcd alone (host iptables on the bridge),
// or off the network altogether (etcd, bookies and clients), and plug it back in.
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, beforeEach, describe, it } from 'vitest';
import type { Random } from '@strata/runtime';
import {
  bookieKill, brokerEtcdCut, etcdMemberKill, healCluster, ownerBrokerKill, rounds, scenarioRandom, topicOwner, type FaultStep, type Log,
} from '../robustness/faults.js';
import { admin, expectClean, runScenario } from '../robustness/scenario.js';
import { containerCutUnavailable, ContainerScenarioCluster, type ContainerNode } from './containers-harness.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const NAMESPACE = 'public/containers';
const RATE = Number(process.env.STRATA_ROBUSTNESS_RATE ?? 40);
const LOG_LEVEL = process.env.STRATA_ROBUSTNESS_LOG_LEVEL ?? 'warn';
// With STRATA_KEEP_TEST_DIRS the SDK's log per scenario goes here (the containers' logs: see the harness).
const LOG_DIR = process.env.STRATA_KEEP_TEST_DIRS ? mkdtempSync(join(tmpdir(), 'strata-containers-client-')) : undefined;
const dockerUp = spawnSync('docker', ['info'], { timeout: 20_000 }).status === 0;
const binRuns = spawnSync('node', ['packages/cli/dist/bin.js', '--help'], { cwd: root }).status === 0;
const skip = !dockerUp ? 'no Docker engine answers `docker info` (bash scripts/setup.sh starts one)' : !binRuns ? 'the strata bin is not built (npm run build)' : '';
if (skip) console.warn(`SKIPPED test/cluster/containers-robustness.test.ts: ${skip}`);

describe.skipIf(skip !== '')('robustness on a container cluster', () => {
  let cluster: ContainerScenarioCluster;
  let counter = 0;
  const topic = (name: string) => `persistent://${NAMESPACE}/${name}-${Date.now().toString(36)}-${counter++}`;

  beforeAll(async () => {
    const built = spawnSync('bash', ['scripts/build-image.sh'], { cwd: root, encoding: 'utf8', timeout: 300_000 });
    if (built.status !== 0) throw new Error(`scripts/build-image.sh failed:\n${built.stderr}`);
    cluster = await ContainerScenarioCluster.start({
      etcdMembers: 3, bookies: 3, brokers: 2, coordinators: 1,
      env: {
        broker: { STRATA_ENSEMBLE_SIZE: '2', STRATA_WRITE_QUORUM: '2', STRATA_ACK_QUORUM: '2', STRATA_CURSOR_FLUSH_INTERVAL_MS: '1000', STRATA_LOG_LEVEL: LOG_LEVEL },
        bookie: { STRATA_LOG_LEVEL: LOG_LEVEL },
        coordinator: { STRATA_LOG_LEVEL: LOG_LEVEL },
      },
    });
    await admin(cluster, 'namespaces', 'create', NAMESPACE);
    await admin(cluster, 'namespaces', 'policies', 'set', NAMESPACE, '--deduplication', 'true');
  }, 300_000);

  afterAll(async () => {
    await cluster?.stop();
    if (LOG_DIR) console.log(`the SDK's logs kept in ${LOG_DIR}`);
  }, 120_000);

  beforeEach(async () => {
    if (cluster) await healCluster(cluster, { restartUnready: true });
  }, 180_000);

  const scenario = (name: string, make: (rng: Random, topic: string) => FaultStep[], options: { skipReason?: string } = {}) =>
    it.skipIf(options.skipReason !== undefined)(name, async () => {
      const rng = scenarioRandom(`containers: ${name}`);
      const scenarioTopic = topic(name.replace(/[^a-z0-9]+/gi, '-'));
      const result = await runScenario({
        name, cluster, topic: scenarioTopic, schedule: rounds(1, rng, (r) => make(r, scenarioTopic)),
        logDir: LOG_DIR,
        // The brokers' default cursor flush (1 s) plus a margin for the SDK's ack grouping and the write.
        ackDurableAfterMs: 3000,
        workload: { ratePerProducer: RATE, maxMessagesPerProducer: 1000 + 500 * Math.ceil(RATE / 40) },
      });
      expectClean(result);
    }, 240_000);

  const log = (line: string) => console.log(line);

  scenario('docker kill the owner broker (of 2), then start it', (rng, t) => ownerBrokerKill(cluster, t, rng, log));
  scenario('docker kill a bookie of the ensemble, later start it', (rng) => bookieKill(cluster, rng, log));
  // Was a known bug (docs/robustness.md "Fixed: publishing stalled after an etcd container was killed").
  scenario('docker kill an etcd member mid-load, later start it', (rng) => etcdMemberKill(cluster, rng));
  const cutSkip = dockerUp ? containerCutUnavailable() : undefined;
  if (cutSkip) console.warn(`SKIPPED "cut the owner broker off etcd": ${cutSkip}`);
  scenario('cut the owner broker off etcd (iptables), past its session, then heal', (rng, t) => brokerEtcdCut(cluster, t, rng, log), {
    skipReason: cutSkip,
  });
  scenario('cut the owner broker off the network (etcd, bookies, clients), past its session, then plug it back in', (rng, t) => ownerDisconnect(cluster, t, rng, log));
});

/**
 * Cuts the topic's owner broker off the network (it reaches nothing, nothing reaches it) for longer than
 * its session TTL (3 s, the broker's default), then plugs it back in at its address. The other broker
 * takes the bundle once the session is gone; the clients must follow it, and the old owner, back, must
 * not serve the topic any more.
 */
function ownerDisconnect(cluster: ContainerScenarioCluster, topic: string, rng: Random, log: Log): FaultStep[] {
  const at = rng.int(1500, 3000);
  const off = rng.int(6_000, 9_000);
  let victim: ContainerNode | undefined;
  return [
    {
      atMs: at, description: `disconnect the owner broker of the topic from the network for ${off} ms`,
      run: async () => {
        const owner = (await topicOwner(cluster, topic)).node;
        victim = cluster.brokers.find((b) => b === owner);
        if (!victim) throw new Error(`the owner ${owner.address} is not one of this cluster's brokers`);
        log(`  owner: broker-${victim.index} (${victim.address})`);
        cluster.disconnect(victim);
      },
    },
    { atMs: at + off, description: 'reconnect that broker', run: async () => victim && cluster.reconnect(victim) },
  ];
}
