import { decodeMetadata, LEDGERS_PREFIX } from '@strata/bookie';
import { BadVersionError, type LeaderDuty, type MetadataStore } from '@strata/coordinator';
import { field, sleep, type ConfigValues, type Logger } from '@strata/runtime';
import { Counter, type Registry } from 'prom-client';
import { decodeLedgerList, listKey } from './formats.js';

/**
 * Ledgers that a managed ledger created and no longer lists (decision 0086). They are left behind by a
 * crash between the two steps that trimming and topic deletion take (list first, then the ledgers), or by
 * a rollover whose list write had an unknown outcome. Deleting a ledger's metadata is all it takes: the
 * bookies' garbage collection then frees its data.
 *
 * A ledger is deleted only if all of these hold:
 * - its metadata names a managed ledger (`customMetadata.managedLedger`): ledgers made by anything else are
 *   never touched;
 * - it was created more than `graceMs` ago: a managed ledger lists a new ledger within seconds of creating
 *   it (or deletes it), so an unlisted young ledger may still be on its way into the list, and an old one
 *   can no longer get into it;
 * - that managed ledger's list does not name it, in the run's copy of the list and again in a fresh read
 *   just before the delete (a missing list means the topic was deleted; a list that cannot be decoded
 *   keeps every ledger it may name);
 * - its metadata is unchanged since it was read (the delete is a compare-and-swap on its version).
 *
 * A run reads each managed ledger's list once (kept for the run: memory in proportion to the lists'
 * sizes), plus one fresh read per ledger it deletes.
 */
export interface OrphanSweepOptions {
  store: MetadataStore;
  graceMs: number;
  /** At most this many deletions per run (bounded metadata writes); the rest wait for the next run. */
  maxDeletesPerRun: number;
  logger: Logger;
  now?: () => number;
  signal?: AbortSignal;
}

export interface OrphanSweepResult {
  scanned: number;
  deleted: number[];
}

/** The ledger ids a list names; `undefined`: no list (the topic is gone); 'unreadable': keep them all. */
type Listed = ReadonlySet<number> | undefined | 'unreadable';

export async function sweepOrphanLedgers(options: OrphanSweepOptions): Promise<OrphanSweepResult> {
  const { store, signal } = options;
  const now = options.now ?? Date.now;
  const result: OrphanSweepResult = { scanned: 0, deleted: [] };
  const lists = new Map<string, Listed>();
  const names = (listed: Listed, ledgerId: number) => listed === 'unreadable' || (listed?.has(ledgerId) ?? false);
  let startAfter: string | undefined;
  for (;;) {
    const page = await store.list(LEDGERS_PREFIX, { startAfter, signal });
    for (const kv of page.items) {
      if (result.deleted.length >= options.maxDeletesPerRun) return result;
      result.scanned++;
      const ledgerId = Number(kv.key.slice(LEDGERS_PREFIX.length));
      let owner: string | undefined;
      let ctime: number;
      try {
        const metadata = decodeMetadata(ledgerId, kv.value);
        owner = metadata.customMetadata.managedLedger;
        ctime = metadata.ctime;
      } catch {
        continue; // not ours to judge
      }
      if (owner === undefined || !(now() - ctime > options.graceMs)) continue;
      if (!lists.has(owner)) lists.set(owner, await readList(store, owner, signal));
      if (names(lists.get(owner), ledgerId)) continue;
      if (names(await readList(store, owner, signal), ledgerId)) continue;
      try {
        await store.delete(kv.key, { expectedVersion: kv.version, signal });
      } catch (err) {
        if (err instanceof BadVersionError) continue; // changed or gone since we read it
        throw err;
      }
      result.deleted.push(ledgerId);
      options.logger.info({ ledgerId, managedLedger: owner, createdAt: new Date(ctime).toISOString() }, 'deleted an orphan ledger');
    }
    if (!page.more || page.items.length === 0) return result;
    startAfter = page.items.at(-1)?.key;
  }
}

async function readList(store: MetadataStore, managedLedger: string, signal: AbortSignal | undefined): Promise<Listed> {
  const key = listKey(managedLedger);
  const kv = await store.get(key, { signal });
  if (!kv) return undefined;
  try {
    return new Set(decodeLedgerList(kv.value, key).ledgers.map((l) => l.ledgerId));
  } catch {
    return 'unreadable';
  }
}

/** Config fields of the orphan-ledger sweep, for the role that runs it (the coordinator). */
export const orphanLedgerConfigSpec = {
  orphanLedgerSweepIntervalMs: field.int(3_600_000, 'the leading coordinator deletes ledgers no managed ledger lists any more this often (0: never; decision 0086)', { min: 0 }),
  orphanLedgerGraceMs: field.int(3_600_000, 'a ledger younger than this is never deleted as an orphan', { min: 60_000 }),
};

/** Deletions per sweep, at most: metadata writes stay bounded; the rest wait for the next run. */
const MAX_DELETES_PER_RUN = 1_000;

/**
 * The sweep as a coordinator leader duty: the leader sweeps every `orphanLedgerSweepIntervalMs`, the
 * first time one interval after winning. A failed run is logged and retried at the next interval.
 */
export function orphanSweeperDuty(config: ConfigValues<typeof orphanLedgerConfigSpec>): LeaderDuty {
  let deletedTotal: Counter | undefined;
  return {
    name: 'orphan-ledger-sweeper',
    async run({ store, signal, logger, metrics }) {
      deletedTotal ??= orphanCounter(metrics);
      while (!signal.aborted) {
        if (!(await sleep(config.orphanLedgerSweepIntervalMs, signal).then(() => true, () => false))) return;
        try {
          const { scanned, deleted } = await sweepOrphanLedgers({
            store, graceMs: config.orphanLedgerGraceMs, maxDeletesPerRun: MAX_DELETES_PER_RUN, logger, signal,
          });
          deletedTotal.inc(deleted.length);
          logger.info({ scanned, deleted: deleted.length }, 'orphan ledger sweep done');
        } catch (err) {
          if (!signal.aborted) logger.warn({ err }, 'orphan ledger sweep failed; retrying at the next interval');
        }
      }
    },
  };
}

function orphanCounter(metrics: Registry): Counter {
  const name = 'strata_coordinator_orphan_ledgers_deleted_total';
  return (metrics.getSingleMetric(name) as Counter | undefined)
    ?? new Counter({ name, help: 'Ledgers deleted because the managed ledger that created them no longer lists them', registers: [metrics] });
}
