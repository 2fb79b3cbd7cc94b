// The robustness scenarios (test/robustness) on a cluster of containers from the locally built images:
// 3 etcd members, 3 bookies, a coordinator and a broker (E=W=A=2, dedup on), each container on a fixed
// IP. The same workload and history checks as test/cluster-robustness.test.ts, with `docker kill` for
// kill -9, plus what only containers can do here: cut a broker off the network (etcd, bookies and
// clients alike) and plug it back in.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { baseSeed, bookieKill, brokerKill, healCluster, etcdMemberKill, rounds, scenarioRandom, type FaultStep } from '../robustness/faults.js';
import { admin, runScenario, type ScenarioResult } from '../robustness/scenario.js';
import { ContainerScenarioCluster } from './containers-harness.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const NAMESPACE = 'public/containers';
const RATE = Number(process.env.STRATA_ROBUSTNESS_RATE ?? 40);
const dockerUp = spawnSync('docker', ['info'], { timeout: 20_000 }).status === 0;
const binRuns = spawnSync('node', ['packages/cli/dist/bin.js', '--help'], { cwd: root }).status === 0;
const skip = !dockerUp ? 'no Docker engine answers `docker info` (bash scripts/setup.sh starts one)' : !binRuns ? 'the strata bin is not built (npm run build)' : '';
if (skip) console.warn(`SKIPPED test/cluster/containers-robustness.test.ts: ${skip}`);

/** DESIGN.md's guarantees, as test/cluster-robustness.test.ts checks them. */
function expectClean(result: ScenarioResult): void {
  for (const sub of result.subscriptions) {
    const where = `${sub.subscription} (STRATA_SEED=${baseSeed()})`;
    expect(sub.acknowledged, `${where}: nothing was acknowledged`).toBeGreaterThan(0);
    expect(sub.lost, `${where}: acknowledged but never delivered`).toEqual([]);
    expect(sub.phantom, `${where}: delivered but never sent`).toEqual([]);
    expect(sub.storedTwice, `${where}: stored twice despite dedup`).toEqual([]);
    if (sub.ordered) expect(sub.reordered, `${where}: order per producer`).toEqual([]);
  }
  for (const p of result.producers) {
    expect(result.resumed[p.name], `producer ${p.name} never had a send acknowledged after the faults`).toBeGreaterThan(0);
    expect(p.failed, `producer ${p.name}: ${p.firstError}`).toBe(0);
  }
}

describe.skipIf(skip !== '')('robustness on a container cluster', () => {
  let cluster: ContainerScenarioCluster;
  let counter = 0;
  const topic = (name: string) => `persistent://${NAMESPACE}/${name}-${Date.now().toString(36)}-${counter++}`;

  beforeAll(async () => {
    const built = spawnSync('bash', ['scripts/build-image.sh'], { cwd: root, encoding: 'utf8', timeout: 300_000 });
    if (built.status !== 0) throw new Error(`scripts/build-image.sh failed:\n${built.stderr}`);
    cluster = await ContainerScenarioCluster.start({
      etcdMembers: 3, bookies: 3, brokers: 1, coordinators: 1,
      env: {
        broker: { STRATA_ENSEMBLE_SIZE: '2', STRATA_WRITE_QUORUM: '2', STRATA_ACK_QUORUM: '2', STRATA_CURSOR_FLUSH_INTERVAL_MS: '1000', STRATA_LOG_LEVEL: 'warn' },
        bookie: { STRATA_LOG_LEVEL: 'warn' },
        coordinator: { STRATA_LOG_LEVEL: 'warn' },
      },
    });
    await admin(cluster, 'namespaces', 'create', NAMESPACE);
    await admin(cluster, 'namespaces', 'policies', 'set', NAMESPACE, '--deduplication', 'true');
  }, 300_000);

  afterAll(async () => {
    await cluster?.stop();
  }, 120_000);

  beforeEach(async () => {
    if (cluster) await healCluster(cluster);
  }, 180_000);

  const scenario = (name: string, make: (rng: ReturnType<typeof scenarioRandom>) => FaultStep[], options: { skipReason?: string } = {}) =>
    it.skipIf(options.skipReason !== undefined)(name, async () => {
      const rng = scenarioRandom(`containers: ${name}`);
      const result = await runScenario({
        name, cluster, topic: topic(name.replace(/[^a-z0-9]+/gi, '-')), schedule: rounds(1, rng, make),
        workload: { ratePerProducer: RATE, maxMessagesPerProducer: 1000 + 500 * Math.ceil(RATE / 40) },
      });
      expectClean(result);
    }, 240_000);

  const log = (line: string) => console.log(line);

  scenario('docker kill the broker, then start it', (rng) => brokerKill(cluster, rng));
  scenario('docker kill a bookie of the ensemble, later start it', (rng) => bookieKill(cluster, rng, log));
  // Known bug (docs/robustness.md "Open: publishing stalls after an etcd container is killed"): in some
  // runs publishing stalls for minutes after the etcd member dies (a killed container's IP drops packets
  // instead of refusing them); nothing acknowledged is lost. Run it with STRATA_KNOWN_BUGS=1.
  const etcdKillBug = 'publishing can stall for minutes after an etcd container is killed (known bug; STRATA_KNOWN_BUGS=1 runs it)';
  if (process.env.STRATA_KNOWN_BUGS !== '1') console.warn(`SKIPPED "docker kill an etcd member": ${etcdKillBug}`);
  scenario('docker kill an etcd member mid-load, later start it', (rng) => etcdMemberKill(cluster, rng), {
    skipReason: process.env.STRATA_KNOWN_BUGS === '1' ? undefined : etcdKillBug,
  });
  scenario('cut the broker off the network (etcd, bookies, clients), then plug it back in', (rng) => {
    const at = rng.int(1500, 3000);
    const off = rng.int(12_000, 16_000); // past the broker's 10 s session TTL: it must stop serving
    return [
      { atMs: at, description: 'disconnect broker-0 from the network', run: async () => cluster.disconnect(cluster.brokers[0]!) },
      { atMs: at + off, description: 'reconnect broker-0', run: async () => cluster.reconnect(cluster.brokers[0]!) },
    ];
  });
});
