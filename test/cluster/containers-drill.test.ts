// The failover drills of deploy/k8s/drills, run against a cluster of containers (etcd x3, bookies x3,
// brokers x2, a coordinator) through the same steps as on Kubernetes, with the docker platform:
// `docker kill` where Kubernetes would force-delete a pod. Each drill must recover (a send is
// acknowledged again) and lose no acknowledged message.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startContainerCluster, type ContainerCluster } from './containers-harness.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const dockerUp = spawnSync('docker', ['info'], { timeout: 20_000 }).status === 0;
const binRuns = spawnSync('node', ['packages/cli/dist/bin.js', '--help'], { cwd: root }).status === 0;
// Opt-in: each drill takes about 45 s (a 20 s load, then reading everything back) on top of a minute to
// start the cluster; docs/deploy.md has the results.
const drills = (process.env.STRATA_DRILLS ?? '').split(',').map((d) => d.trim()).filter(Boolean);
const skip = !dockerUp
  ? 'no Docker engine answers `docker info` (bash scripts/setup.sh starts one)'
  : !binRuns
    ? 'the strata bin is not built (npm run build)'
    : drills.length === 0
      ? 'set STRATA_DRILLS=broker-kill,bookie-kill,node-drain,broker-rolling-restart to run the drills'
      : '';
if (skip) console.warn(`SKIPPED test/cluster/containers-drill.test.ts: ${skip}`);

interface DrillReport {
  drill: string;
  target: string;
  recoveryMs: number;
  perfAcknowledged: number;
  tracerAcknowledged: number;
  tracerLost: number;
  tracerDuplicates: number;
  firstLost: string;
}

describe.skipIf(skip !== '')('failover drills on a container cluster', () => {
  let cluster: ContainerCluster;
  // The drills' logs (load, tracer, probes, read-back), kept with STRATA_KEEP_TEST_DIRS=1.
  const workDir = mkdtempSync(join(tmpdir(), 'strata-drills-'));

  beforeAll(async () => {
    const built = spawnSync('bash', ['scripts/build-image.sh'], { cwd: root, encoding: 'utf8', timeout: 300_000 });
    if (built.status !== 0) throw new Error(`scripts/build-image.sh failed:\n${built.stderr}`);
    cluster = await startContainerCluster({ bookies: 3, brokers: 2, coordinators: 1 });
  }, 300_000);

  afterAll(async () => {
    await cluster?.stop();
    if (process.env.STRATA_KEEP_TEST_DIRS !== '1') rmSync(workDir, { recursive: true, force: true });
  }, 120_000);

  function drill(name: string): DrillReport {
    const out = spawnSync('bash', ['deploy/k8s/drills/drill.sh', '--platform', 'docker', name], {
      cwd: root,
      encoding: 'utf8',
      timeout: 240_000,
      env: {
        ...process.env,
        DOCKER_NETWORK: cluster.networkName,
        SERVICE_URL: cluster.serviceUrl,
        LOAD_SECONDS: '20',
        LOAD_RATE: '100',
        TRACER_RATE: '10',
        SETTLE_SECONDS: '5',
        VERIFY_SECONDS: process.env.VERIFY_SECONDS ?? '20',
        GRACE_SECONDS: '30',
        DRILL_ID: `${name}-${process.pid}`,
        WORK_DIR: mkdtempSync(join(workDir, `${name}-`)),
      },
    });
    console.log(`drill ${name}:\n${out.stderr}\n${out.stdout}`);
    const line = out.stdout.trim().split('\n').at(-1) ?? '';
    if (!line.startsWith('{')) throw new Error(`drill ${name} printed no report (exit ${String(out.status)}):\n${out.stderr}`);
    return JSON.parse(line) as DrillReport;
  }

  it.each(drills)('%s: recovers, and no acknowledged message is lost', (name) => {
    const report = drill(name);
    expect(report.tracerAcknowledged).toBeGreaterThan(0);
    expect(report.tracerLost, `first lost: ${report.firstLost}`).toBe(0);
    expect(report.recoveryMs).toBeGreaterThanOrEqual(0);
  }, 300_000);
});
