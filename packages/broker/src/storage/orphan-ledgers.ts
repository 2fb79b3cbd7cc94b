import { decodeMetadata, LEDGERS_PREFIX, type LedgerMetadata } from '@strata/bookie';
import { dutyCounter, type LeaderDuty, type MetadataStore } from '@strata/coordinator';
import { ErrorCode, field, isStrataError, sleep, type ConfigValues, type Logger } from '@strata/runtime';
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
 * - it is old by the sweeper's own clock (its key was created at or before `olderThan.revision`, a store
 *   revision the caller saw at least the grace period ago) and by its creator's (`ctime` at or before
 *   `olderThan.timeMs`): a managed ledger lists a new ledger within seconds of creating it, or deletes it;
 * - that managed ledger's list does not name it, in the run's copy of the list (read once per run) and in
 *   a fresh read; a list that cannot be decoded keeps every ledger;
 * - if the list exists, it was rewritten unchanged (a compare-and-swap) after that fresh read: a list write
 *   still on its way from a paused owner that created the ledger then fails instead of naming it (the owner
 *   fences itself and reloads the topic, once per run with orphans); if there is no list (the topic was
 *   deleted), the ledger is closed (a paused owner's first list write names an open ledger);
 * - its metadata is unchanged since it was read (the delete is a compare-and-swap on its version).
 *
 * A run keeps each list it read (memory in proportion to the lists' sizes) and at most `maxDeletesPerRun`
 * candidates; it writes each affected list once and deletes each orphan once.
 */
export interface OrphanSweepOptions {
  store: MetadataStore;
  olderThan: { revision: number; timeMs: number };
  /** At most this many deletions per run (bounded metadata writes); the rest wait for the next run. */
  maxDeletesPerRun: number;
  logger: Logger;
  signal?: AbortSignal;
  /** Called after each deletion (metrics). */
  onDeleted?(ledgerId: number): void;
}

export interface OrphanSweepResult {
  scanned: number;
  deleted: number[];
}

/** The ledger ids a list names; `undefined`: no list (the topic is gone); 'unreadable': keep them all. */
type Listed = ReadonlySet<number> | undefined | 'unreadable';

interface Candidate {
  ledgerId: number;
  key: string;
  version: number;
  closed: boolean;
}

export async function sweepOrphanLedgers(options: OrphanSweepOptions): Promise<OrphanSweepResult> {
  const { store, signal } = options;
  const result: OrphanSweepResult = { scanned: 0, deleted: [] };
  const lists = new Map<string, Listed>();
  const candidates = new Map<string, Candidate[]>();
  let count = 0;
  let startAfter: string | undefined;
  scan: for (;;) {
    const page = await store.list(LEDGERS_PREFIX, { startAfter, signal });
    for (const kv of page.items) {
      if (count >= options.maxDeletesPerRun) break scan;
      result.scanned++;
      const ledgerId = Number(kv.key.slice(LEDGERS_PREFIX.length));
      let metadata: LedgerMetadata;
      try {
        metadata = decodeMetadata(ledgerId, kv.value);
      } catch {
        continue; // not ours to judge
      }
      const owner = metadata.customMetadata.managedLedger;
      if (owner === undefined || kv.createRevision > options.olderThan.revision || !(metadata.ctime <= options.olderThan.timeMs)) continue;
      if (!lists.has(owner)) lists.set(owner, await readList(store, owner, signal));
      if (names(lists.get(owner), ledgerId)) continue;
      const forOwner = candidates.get(owner) ?? [];
      forOwner.push({ ledgerId, key: kv.key, version: kv.version, closed: metadata.state === 'CLOSED' });
      candidates.set(owner, forOwner);
      count++;
    }
    if (!page.more || page.items.length === 0) break;
    startAfter = page.items.at(-1)?.key;
  }
  for (const [owner, forOwner] of candidates) {
    for (const c of await confirmOrphans(store, owner, forOwner, signal)) {
      try {
        await store.delete(c.key, { expectedVersion: c.version, signal });
      } catch (err) {
        if (badVersion(err)) continue; // changed or gone since we read it
        throw err;
      }
      result.deleted.push(c.ledgerId);
      options.onDeleted?.(c.ledgerId);
      options.logger.info({ ledgerId: c.ledgerId, managedLedger: owner }, 'deleted an orphan ledger');
    }
  }
  return result;
}

const badVersion = (err: unknown) => isStrataError(err) && err.code === ErrorCode.BAD_VERSION;
const names = (listed: Listed, ledgerId: number) => listed === 'unreadable' || (listed?.has(ledgerId) ?? false);

/**
 * The candidates a fresh read of the list still does not name, after fencing the list against writes in
 * flight (rewritten unchanged); with no list, the closed ones. None if the list changed meanwhile.
 */
async function confirmOrphans(store: MetadataStore, owner: string, forOwner: Candidate[], signal: AbortSignal | undefined): Promise<Candidate[]> {
  const key = listKey(owner);
  const kv = await store.get(key, { signal });
  if (!kv) return forOwner.filter((c) => c.closed);
  const listed = decodeList(kv.value, key);
  const orphans = forOwner.filter((c) => !names(listed, c.ledgerId));
  if (orphans.length === 0) return [];
  try {
    await store.put(key, kv.value, { expectedVersion: kv.version, signal });
  } catch (err) {
    if (badVersion(err)) return []; // written meanwhile: look again next run
    throw err;
  }
  return orphans;
}

async function readList(store: MetadataStore, managedLedger: string, signal: AbortSignal | undefined): Promise<Listed> {
  const key = listKey(managedLedger);
  const kv = await store.get(key, { signal });
  return kv ? decodeList(kv.value, key) : undefined;
}

function decodeList(value: Buffer, key: string): Listed {
  try {
    return new Set(decodeLedgerList(value, key).ledgers.map((l) => l.ledgerId));
  } catch {
    return 'unreadable';
  }
}

/** Config fields of the orphan-ledger sweep, for the role that runs it (the coordinator). */
export const orphanLedgerConfigSpec = {
  orphanLedgerSweepIntervalMs: field.int(3_600_000, 'the leading coordinator deletes ledgers no managed ledger lists any more this often (0: never; decision 0086)', { min: 0 }),
  orphanLedgerGraceMs: field.int(3_600_000, 'a ledger younger than this (by the leader\'s clock and its creator\'s) is never deleted as an orphan', { min: 1_000 }),
};

/** Deletions per sweep, at most: metadata writes stay bounded; the rest wait for the next run. */
const MAX_DELETES_PER_RUN = 1_000;

/**
 * The sweep as a coordinator leader duty. Age is measured on the leader's own clock, not only on the
 * ledger creators' (whose clocks may be behind): at the start of its term and of every run the leader notes
 * the store's revision and the time, and a run treats as old only the keys created at or before a revision
 * noted at least `orphanLedgerGraceMs` ago. So the first deletions of a term come one grace period after
 * it began; runs are `orphanLedgerSweepIntervalMs` apart. A failed run is logged and retried next time.
 */
export function orphanSweeperDuty(config: ConfigValues<typeof orphanLedgerConfigSpec>): LeaderDuty {
  return {
    name: 'orphan-ledger-sweeper',
    async run({ store, signal, logger, metrics }) {
      const counter = dutyCounter(metrics, 'strata_coordinator_orphan_ledgers_deleted_total', 'Ledgers deleted because the managed ledger that created them no longer lists them');
      /** (revision, when noted), oldest first; only the newest one past the grace period is ever needed. */
      const noted: Array<{ revision: number; at: number }> = [];
      for (;;) {
        try {
          const started = { revision: await store.currentRevision({ signal }), at: performance.now() };
          const cutoff = started.at - config.orphanLedgerGraceMs;
          while ((noted[1]?.at ?? Infinity) <= cutoff) noted.shift();
          const oldEnough = noted[0] && noted[0].at <= cutoff ? noted[0] : undefined;
          if (oldEnough) {
            const { scanned, deleted } = await sweepOrphanLedgers({
              store, maxDeletesPerRun: MAX_DELETES_PER_RUN, logger, signal, onDeleted: () => counter.inc(),
              olderThan: { revision: oldEnough.revision, timeMs: Date.now() - config.orphanLedgerGraceMs },
            });
            logger.info({ scanned, deleted: deleted.length }, 'orphan ledger sweep done');
          }
          noted.push(started);
        } catch (err) {
          if (!signal.aborted) logger.warn({ err }, 'orphan ledger sweep failed; retrying at the next interval');
        }
        if (!(await sleep(config.orphanLedgerSweepIntervalMs, signal).then(() => true, () => false))) return;
      }
    },
  };
}
