/**
 * One robustness scenario: start the workload, run a fault schedule under it, keep the load on a
 * little after the cluster is whole again (to see producers resume), stop, drain, and report.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { strataBin } from '@strata/runtime/testing';
import { expect } from 'vitest';
import type { Cluster } from '../harness/cluster.js';
import { describeSchedule, runSchedule, scenarioSeed, baseSeed, type FaultStep } from './faults.js';
import { summarize, Workload, type ProducerReport, type SubscriptionReport, type WorkloadOptions } from './workload.js';

export interface ScenarioResult {
  subscriptions: SubscriptionReport[];
  producers: ProducerReport[];
  /** Per producer: sends started after the last fault step finished and acknowledged. */
  resumed: Record<string, number>;
}

export interface ScenarioOptions {
  name: string;
  cluster: Cluster;
  topic: string;
  schedule: FaultStep[];
  /** Load after the schedule ends (default 3000 ms). */
  tailMs?: number;
  workload?: Partial<Omit<WorkloadOptions, 'serviceUrl' | 'topic' | 'log'>>;
  log?: (line: string) => void;
  /** Where to write the SDK's log (`client-<topic>.log`); default: nowhere. */
  logDir?: string;
  /**
   * How long after a consumer's acknowledgement the broker has surely persisted it (cursor flush
   * interval + a margin): an acknowledged message may come again only if acknowledged within this
   * window before the faults began, or while they lasted.
   * Default: not checked.
   */
  ackDurableAfterMs?: number;
}

const defaultLog = (line: string) => console.log(line);

export async function runScenario(options: ScenarioOptions): Promise<ScenarioResult> {
  const log = options.log ?? defaultLog;
  log(`[${options.name}] STRATA_SEED=${baseSeed()} (scenario seed ${scenarioSeed(options.name)}), topic ${options.topic}, schedule:\n${describeSchedule(options.schedule)}`);
  // The read-back needs the whole topic: without retention, ledgers every subscription acknowledged
  // are trimmed (as designed) and would look lost to a fresh subscription. Other policies stay.
  const namespace = options.topic.replace(/^persistent:\/\//, '').split('/').slice(0, 2).join('/');
  await admin(options.cluster, 'namespaces', 'policies', 'set', namespace, '--retention-time-minutes', '-1', '--retention-size-mb', '-1');
  const clientLogFile = options.logDir ? join(options.logDir, `client-${options.topic.split('/').pop()}.log`) : undefined;
  const workload = new Workload({ serviceUrl: options.cluster.serviceUrl, topic: options.topic, log, clientLogFile, ...options.workload });
  try {
    await workload.start();
    const startedAt = Date.now();
    const stepStarts: number[] = [];
    const healedAt = await runSchedule(options.schedule, startedAt, log, stepStarts);
    const faultPeriod = { fromMs: stepStarts[0] ?? healedAt, toMs: healedAt };
    // Keep the load on until every producer has had sends acknowledged that started after the last
    // fault (at least the tail, at most a minute): resuming is checked, how fast is only reported.
    const tailEnd = Date.now() + (options.tailMs ?? 3000);
    const resumeDeadline = Date.now() + 60_000;
    while (Date.now() < resumeDeadline && (Date.now() < tailEnd || Object.values(workload.ackedSentAfter(healedAt)).some((n) => n < 20))) {
      await new Promise((r) => setTimeout(r, 200));
    }
    await workload.stopProducing();
    await workload.drain();
    const readBack = await workload.readBack();
    const result = { subscriptions: [...workload.subscriptionReports({ faultPeriod, ackDurableAfterMs: options.ackDurableAfterMs }), readBack], producers: workload.producerReports(), resumed: workload.ackedSentAfter(healedAt) };
    log(`[${options.name}] producers ${JSON.stringify(result.producers)}\n  acknowledged sends started after the schedule: ${JSON.stringify(result.resumed)}\n${summarize(result.subscriptions)}`);
    return result;
  } finally {
    await workload.close();
  }
}

const exec = promisify(execFile);

/** `strata admin ...` against the cluster (the CLI is the admin surface the SDK offers). */
export async function admin(cluster: Cluster, ...args: string[]): Promise<string> {
  const { stdout } = await exec(process.execPath, [strataBin(), 'admin', ...args, '--service-url', cluster.serviceUrl], { timeout: 60_000 });
  return stdout;
}

/**
 * The guarantees (DESIGN.md "Guarantees") a scenario's history must show after any fault, as both
 * robustness suites check them. `dedup: false` (a namespace without dedup) reports "stored twice" only.
 */
export function expectClean(result: ScenarioResult, options: { dedup?: boolean } = {}): void {
  for (const sub of result.subscriptions) {
    const where = `${sub.subscription} (STRATA_SEED=${baseSeed()})`;
    expect(sub.acknowledged, `${where}: nothing was acknowledged`).toBeGreaterThan(0);
    expect(sub.lost, `${where}: acknowledged but never delivered`).toEqual([]);
    expect(sub.phantom, `${where}: delivered but never sent`).toEqual([]);
    // With dedup on, a producer's resend must not be stored a second time (redeliveries are allowed).
    if (options.dedup !== false) expect(sub.storedTwice, `${where}: stored twice despite dedup`).toEqual([]);
    expect(sub.redeliveredAfterAck, `${where}: acknowledged (and persisted) but delivered again`).toEqual([]);
    if (sub.ordered) expect(sub.reordered, `${where}: order per producer (per key on KeyShared)`).toEqual([]);
  }
  for (const p of result.producers) {
    expect(result.resumed[p.name], `producer ${p.name} never had a send acknowledged after the faults (STRATA_SEED=${baseSeed()})`).toBeGreaterThan(0);
    // sendTimeoutMs is 0: a send fails only if the SDK gives up, which no fault here should cause.
    expect(p.failed, `producer ${p.name}: ${p.firstError}`).toBe(0);
  }
}
