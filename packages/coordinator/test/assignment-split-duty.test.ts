/**
 * The BundleAssigner's automatic split (decision 0068) under a real LeaderElector on the embedded store.
 * The broker is played by hand: a session, `brokers/<id>` with a load report listing per-bundle load,
 * and ownership keys it holds (and releases only when the test says so).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { Registry } from 'prom-client';
import { Random, silentLogger } from '@strata/runtime';
import {
  BundleAssigner, EmbeddedMetadataStore, LeaderElector, namespaceBundles,
  type BundleLoad, type BundlePolicy, type LoadReport, type MetadataStore, type Session, type SplitAction,
} from '../src/index.js';
import { sleep, unique, waitFor } from './contract.js';

let dir: string;
let store: MetadataStore;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'strata-split-duty-'));
  store = await EmbeddedMetadataStore.open({ dir, logger: silentLogger() });
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});
afterAll(async () => {
  await store?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const hot = (bundle: string): BundleLoad => ({
  bundle, topics: 3, producers: 3, consumers: 3, msgRateIn: 400, msgRateOut: 400, msgThroughputIn: 1000, msgThroughputOut: 1000,
});

class HandBroker {
  private seq = 0;
  constructor(readonly id: string, readonly session: Session) {}

  static async start(): Promise<HandBroker> {
    const b = new HandBroker(unique('broker'), await store.createSession({ ttlMs: 3_000 }));
    cleanups.push(() => b.session.close());
    await b.report([]);
    return b;
  }

  async report(bundles: BundleLoad[]): Promise<void> {
    const load: LoadReport = { seq: ++this.seq, atMs: Date.now(), cpuPercent: 0, memoryPercent: 0, memoryRssBytes: 0, msgRateIn: 0, msgRateOut: 0, bundleCount: 0, bundles };
    await store.put(`brokers/${this.id}`, JSON.stringify({ id: this.id, url: `${this.id}:6650`, startedAtMs: 0, load }), { session: this.session });
  }

  async own(bundle: string): Promise<void> {
    await store.put(`ownership/${bundle}`, JSON.stringify({ brokerId: this.id, url: `${this.id}:6650`, acquiredAtMs: Date.now() }), { expectedVersion: 0, session: this.session });
  }
}

/** The leader's duty metrics, of the last `leader()`. */
let metrics = new Registry();

async function leader(splitting: ConstructorParameters<typeof BundleAssigner>[0]['splitting']): Promise<SplitAction[]> {
  const splits: SplitAction[] = [];
  metrics = new Registry();
  const elector = new LeaderElector({
    store, election: unique('coordinator'), candidate: 'c1', sessionTtlMs: 3_000, logger: silentLogger(), metrics,
    duties: [new BundleAssigner({ random: new Random(1), tickMs: 100, shedding: false, splitting, onSplit: (s) => splits.push(s) })],
  });
  elector.start();
  cleanups.push(() => elector.stop());
  await waitFor('leadership', () => elector.leader || undefined);
  return splits;
}

async function policyOf(ns: string): Promise<BundlePolicy & Record<string, unknown>> {
  const kv = await store.get(`admin/policies/${ns}`);
  return JSON.parse((kv as { value: Buffer }).value.toString()) as BundlePolicy & Record<string, unknown>;
}

const LIMITS = { maxMsgRate: 100, maxTopics: 0, maxSessions: 0, maxBandwidthBytes: 0, cooldownMs: 60_000 };

describe('BundleAssigner: automatic split', () => {
  test('splits the hot bundle by a CAS of the policy (other fields kept); the halves wait for the old owner to release; then no more splits within the cooldown', async () => {
    const ns = `${unique('t')}/ns`;
    await store.put(`admin/policies/${ns}`, JSON.stringify({ bundles: 2, retentionTimeMinutes: 7, deduplicationEnabled: true }));
    const [b0, b1] = namespaceBundles(ns, { bundles: 2 }).map((b) => b.id) as [string, string];
    const broker = await HandBroker.start();
    await broker.own(b0);
    await broker.own(b1);
    const splits = await leader(LIMITS);
    await broker.report([hot(b1)]);

    const split = await waitFor('a split', () => splits[0]);
    expect(split).toMatchObject({ namespace: ns, bundle: b1, start: 0x80000000 });
    expect(split.reasons).toEqual(['msgRate 800 > 100']);
    const policy = await policyOf(ns);
    expect(policy).toEqual({ bundles: 3, retentionTimeMinutes: 7, deduplicationEnabled: true, bundleBoundaries: [0, 0x80000000, 0xbfffffff, 0xffffffff] });
    const halves = namespaceBundles(ns, policy).slice(1).map((b) => b.id);

    // The old owner has not released b1 yet: its halves must not be assigned.
    await sleep(500);
    for (const h of halves) expect(await store.get(`assignments/${h}`)).toBeUndefined();
    await store.delete(`ownership/${b1}`);
    await waitFor('both halves assigned to the broker', async () => {
      const a = await Promise.all(halves.map((h) => store.get(`assignments/${h}`)));
      return a.every((kv) => kv && (JSON.parse(kv.value.toString()) as { brokerId: string }).brokerId === broker.id) || undefined;
    });
    for (const h of halves) await broker.own(h);

    // Still hot (both halves), but the namespace is in its cooldown: no second split.
    await broker.report(halves.map(hot));
    await sleep(500);
    expect(splits).toHaveLength(1);
    expect((await policyOf(ns)).bundles).toBe(3);
    // On the coordinator's /metrics: the split, and the two halves' assignments.
    const values = async (name: string) => (await metrics.getSingleMetric(name)?.get())?.values ?? [];
    expect((await values('strata_coordinator_bundle_splits_total'))[0]?.value).toBe(1);
    expect(await values('strata_coordinator_bundle_assignments_total')).toContainEqual(expect.objectContaining({ labels: { reason: 'unowned' }, value: 2 }));
  });

  test('maxBundlesPerNamespace stops splitting; autoSplit off never splits', async () => {
    const capped = `${unique('t')}/ns`;
    const off = `${unique('t')}/ns`;
    await store.put(`admin/policies/${capped}`, JSON.stringify({ bundles: 2 }));
    const broker = await HandBroker.start();
    const cappedIds = namespaceBundles(capped, { bundles: 2 }).map((b) => b.id);
    for (const b of cappedIds) await broker.own(b);
    const splits = await leader({ ...LIMITS, maxBundlesPerNamespace: 2 });
    await broker.report(cappedIds.map(hot));
    await sleep(500);
    expect(splits).toEqual([]);
    expect((await policyOf(capped)).bundleBoundaries).toBeUndefined();
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);

    await store.put(`admin/policies/${off}`, JSON.stringify({ bundles: 1 }));
    const broker2 = await HandBroker.start();
    const offIds = namespaceBundles(off, { bundles: 1 }).map((b) => b.id);
    await broker2.own(offIds[0] as string);
    const none = await leader(false);
    await broker2.report(offIds.map(hot));
    await sleep(500);
    expect(none).toEqual([]);
    expect((await policyOf(off)).bundleBoundaries).toBeUndefined();
  });
});
