// The orphan-ledger sweep (decision 0086) on a real embedded metadata store: which ledgers it deletes
// and which it must keep; and the duty, run by a leader elector as the broker runs it.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ledgerKey, type LedgerState } from '@strata/bookie';
import { EmbeddedMetadataStore, LeaderElector, type MetadataStore } from '@strata/coordinator';
import { silentLogger } from '@strata/runtime';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { encodeLedgerList, listKey } from '../src/storage/formats.js';
import { orphanSweeperDuty, sweepOrphanLedgers } from '../src/storage/orphan-ledgers.js';
import { putLedgerMetadata } from './storage-helpers.js';

const HOUR = 3_600_000;
const NOW = Date.now();
let dir: string;
let store: EmbeddedMetadataStore;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'strata-orphans-'));
  store = await EmbeddedMetadataStore.open({ dir, logger: silentLogger() });
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

const ledger = (ledgerId: number, ageMs: number, managedLedger?: string, state: LedgerState = 'CLOSED') =>
  putLedgerMetadata(store, ledgerId, { managedLedger, ctime: NOW - ageMs, state });

async function list(managedLedger: string, ledgerIds: number[]): Promise<void> {
  const ledgers = ledgerIds.map((ledgerId) => ({ ledgerId, entries: 10, sizeBytes: 100, createdAtMs: NOW - 2 * HOUR, closedAtMs: NOW - HOUR }));
  await store.put(listKey(managedLedger), encodeLedgerList({ ledgers, terminated: false }));
}

const present = async (ids: number[]) => (await Promise.all(ids.map(async (id) => [id, (await store.get(ledgerKey(id))) !== undefined] as const)))
  .filter(([, here]) => here).map(([id]) => id);

/** A sweep that takes every key created so far as old by its own clock, and ctime older than an hour. */
const sweep = async (maxDeletesPerRun = 1_000, on: MetadataStore = store) =>
  sweepOrphanLedgers({ store: on, olderThan: { revision: await store.currentRevision(), timeMs: NOW - HOUR }, maxDeletesPerRun, logger: silentLogger() });

describe('orphan ledger sweep', () => {
  it('deletes old ledgers their managed ledger does not list, and nothing else', async () => {
    const topic = 'persistent://public/default/t';
    await list(topic, [3, 4]);
    await ledger(1, 2 * HOUR, topic); // trimmed from the list, a crash before its deletion: orphan
    await ledger(2, 2 * HOUR, topic); // the same
    await ledger(3, 2 * HOUR, topic); // listed
    await ledger(4, 2 * HOUR, topic); // listed
    await ledger(5, HOUR / 2, topic); // unlisted but young: its list write may still be on its way
    await ledger(6, 2 * HOUR); // no managed ledger made it: not ours
    await ledger(7, 2 * HOUR, 'persistent://public/default/deleted'); // its topic's list is gone: orphan
    await list('persistent://public/default/corrupt', []);
    await store.put(listKey('persistent://public/default/corrupt'), '{"format":99}');
    await ledger(8, 2 * HOUR, 'persistent://public/default/corrupt'); // a list we cannot read: kept

    await ledger(9, 2 * HOUR, 'persistent://public/default/deleted', 'OPEN'); // no list and still open: kept
    const before = await store.get(listKey(topic));

    const result = await sweep();
    expect(result.deleted.sort((a, b) => a - b)).toEqual([1, 2, 7]);
    expect(result.scanned).toBe(9);
    expect(await present([1, 2, 3, 4, 5, 6, 7, 8, 9])).toEqual([3, 4, 5, 6, 8, 9]);
    // The list was rewritten unchanged before its orphans went: a list write still on its way from an
    // owner that read it before (a paused broker naming a ledger it created) now fails.
    const after = await store.get(listKey(topic));
    expect(after?.value.toString()).toBe(before?.value.toString());
    expect(after?.version).toBe((before?.version ?? 0) + 1);
    await expect(store.put(listKey(topic), encodeLedgerList({ ledgers: [], terminated: false }), { expectedVersion: before?.version }))
      .rejects.toMatchObject({ code: 'BAD_VERSION' });
    expect((await sweep()).deleted).toEqual([]);
  });

  it('keeps a ledger created after the sweeper\'s revision even if its creator\'s clock makes it look old', async () => {
    const topic = 'persistent://public/default/skew';
    await list(topic, []);
    const olderThan = { revision: await store.currentRevision(), timeMs: NOW - HOUR };
    await ledger(30, 5 * HOUR, topic); // ctime says five hours, but the key is newer than the revision noted
    const result = await sweepOrphanLedgers({ store, olderThan, maxDeletesPerRun: 100, logger: silentLogger() });
    expect(result.deleted).toEqual([]);
    expect(await present([30])).toEqual([30]);
  });

  it('keeps a ledger that the list names by the time of the fresh read', async () => {
    const topic = 'persistent://public/default/fresh';
    await list(topic, []);
    await ledger(40, 2 * HOUR, topic);
    // The second read of the list (the fresh one, before any write) finds the ledger named meanwhile.
    let reads = 0;
    const racing = new Proxy(store, {
      get(target, prop, receiver) {
        if (prop !== 'get') return Reflect.get(target, prop, receiver) as unknown;
        return async (key: string, options?: object) => {
          if (key === listKey(topic) && ++reads === 2) await list(topic, [40]);
          return target.get(key, options);
        };
      },
    });
    expect((await sweep(1_000, racing)).deleted).toEqual([]);
    expect(reads).toBe(2);
    expect(await present([40])).toEqual([40]);
  });

  it('deletes at most maxDeletesPerRun per run; the next run goes on', async () => {
    const topic = 'persistent://public/default/many';
    await list(topic, [10]);
    for (const id of [10, 11, 12, 13]) await ledger(id, 2 * HOUR, topic);
    expect((await sweep(2)).deleted).toHaveLength(2);
    expect((await sweep(2)).deleted).toHaveLength(1);
    expect(await present([10, 11, 12, 13])).toEqual([10]);
  });

  it('runs as a leader duty: one of two electors sweeps, counts what it deleted, and ages keys by its own clock', async () => {
    const topic = 'persistent://public/default/duty';
    await list(topic, []);
    await ledger(20, 2 * HOUR, topic);
    const registries = [new Registry(), new Registry()];
    const electors = registries.map((metrics, i) => new LeaderElector({
      store, election: 'orphan-ledger-sweeper', candidate: `coordinator-${i}`, sessionTtlMs: 3_000, logger: silentLogger(), metrics,
      duties: [orphanSweeperDuty({ orphanLedgerSweepIntervalMs: 50, orphanLedgerGraceMs: 1_000 })],
    }));
    for (const e of electors) e.start();
    const until = async (what: () => Promise<boolean>) => {
      const deadline = Date.now() + 10_000;
      while (!(await what()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    };
    try {
      await until(async () => (await present([20])).length === 0);
      expect(await present([20])).toEqual([]);
      expect(electors.filter((e) => e.leader)).toHaveLength(1);
      const counted = await Promise.all(registries.map(async (r) => (await r.getSingleMetric('strata_coordinator_orphan_ledgers_deleted_total')?.get())?.values[0]?.value ?? 0));
      expect(counted.sort()).toEqual([0, 1]);
      // A new orphan whose creator's clock says it is two hours old waits a grace period of the leader's
      // clock (1 s here) although sweeps run every 50 ms.
      await ledger(21, 2 * HOUR, topic);
      const created = Date.now();
      await new Promise((r) => setTimeout(r, 400));
      expect(await present([21])).toEqual([21]);
      await until(async () => (await present([21])).length === 0);
      expect(await present([21])).toEqual([]);
      expect(Date.now() - created).toBeGreaterThanOrEqual(900);
    } finally {
      await Promise.all(electors.map((e) => e.stop()));
    }
  });
});
