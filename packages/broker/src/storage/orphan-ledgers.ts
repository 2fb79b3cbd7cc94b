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
 *   it (or deletes it), so an unlisted young ledger may still be on its way into the list;
 * - a read of that managed ledger's list made after the ledger's metadata was read does not name it (a
 *   missing list means the topic was deleted); a list that cannot be decoded stops the decision (kept);
 * - its metadata is unchanged since it was read (the delete is a compare-and-swap on its version).
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

export async function sweepOrphanLedgers(options: OrphanSweepOptions): Promise<OrphanSweepResult> {
  const { store, signal } = options;
  const now = options.now ?? Date.now;
  const result: OrphanSweepResult = { scanned: 0, deleted: [] };
  let startAfter: string | undefined;
  for (;;) {
    const page = await store.list(LEDGERS_PREFIX, { startAfter, signal });
    for (const kv of page.items) {
      result.scanned++;
      if (result.deleted.length >= options.maxDeletesPerRun) return result;
      const ledgerId = Number(kv.key.slice(LEDGERS_PREFIX.length));
      let owner: string | undefined;
      let ctime: number;
      try {
        const metadata = decodeMetadata(ledgerId, Buffer.from(kv.value));
        owner = metadata.customMetadata.managedLedger;
        ctime = metadata.ctime;
      } catch {
        continue; // not ours to judge
      }
      if (owner === undefined || !(now() - ctime > options.graceMs)) continue;
      if (await listed(store, owner, ledgerId, signal)) continue;
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

/** True if the managed ledger's list names the ledger, or if the list cannot be read as one (keep it). */
async function listed(store: MetadataStore, managedLedger: string, ledgerId: number, signal: AbortSignal | undefined): Promise<boolean> {
  const key = listKey(managedLedger);
  const kv = await store.get(key, { signal });
  if (!kv) return false;
  try {
    return decodeLedgerList(Buffer.from(kv.value), key).ledgers.some((l) => l.ledgerId === ledgerId);
  } catch {
    return true;
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
