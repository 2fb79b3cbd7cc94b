import { crc32c } from '@node-rs/crc32';
import { BadVersionError } from '@strata/coordinator';
import { ErrorCode, isStrataError, StrataError } from '@strata/runtime';
import type { LedgerMetadata } from './api.js';
import { writeSet } from './metadata.js';
import { LedgerReaderImpl, type ClientContext } from './reader.js';
import { LedgerWriterImpl } from './writer.js';

/**
 * Whether the bookies that answered (indexes into the ensemble) rule out any further acknowledgement:
 * every write set must have at least W - A + 1 of them, so that at most A - 1 bookies of any write set
 * could still accept an add from the old writer, too few for an ack quorum.
 */
export function coversAckQuorum(responded: ReadonlySet<number>, ensembleSize: number, writeQuorum: number, ackQuorum: number): boolean {
  const needed = writeQuorum - ackQuorum + 1;
  const starts = ensembleSize === writeQuorum ? 1 : ensembleSize;
  for (let s = 0; s < starts; s++) {
    const n = writeSet(s, ensembleSize, writeQuorum).filter((i) => responded.has(i)).length;
    if (n < needed) return false;
  }
  return true;
}

export class RecoveryIncompleteError extends StrataError {
  constructor(ledgerId: number, reason: string) {
    super(ErrorCode.UNAVAILABLE, `cannot recover ledger ${ledgerId} now: ${reason}`);
    this.name = 'RecoveryIncompleteError';
  }
}

/**
 * Recovers and closes a ledger (docs/storage.md "Ledger client", decision 0026):
 * 1. CAS the metadata OPEN -> IN_RECOVERY (already IN_RECOVERY: a recovery that died or runs
 *    concurrently; go on, both do the same thing and the first close wins).
 * 2. Fence the ledger on every bookie of the last ensemble; proceed once the answers cover an ack quorum
 *    (coversAckQuorum). From then on the old writer can get no entry acknowledged.
 * 3. LAC = max of the answers (and the last ensemble's first entry - 1). Read forward from LAC + 1: an
 *    entry any replica has is re-written with recovery adds to its whole write set (acknowledged at the
 *    ack quorum, with ensemble changes if a bookie is down); the first entry that W - A + 1 replicas of
 *    its write set report missing ends the ledger. Fewer answers than that: fail, retriable.
 * 4. CAS CLOSED with that last entry and the ledger's length (the prefix up to LAC is read once to
 *    sum its sizes). A CAS loser re-reads: closed by someone else is success.
 */
export async function recoverLedger(ctx: ClientContext, ledgerId: number, signal?: AbortSignal): Promise<{ metadata: LedgerMetadata; version: number }> {
  const log = ctx.logger.child({ ledgerId, op: 'recovery' });
  let lastError: unknown;
  for (let attempt = 0; attempt < ctx.options.metadataRetries; attempt++) {
    signal?.throwIfAborted();
    let { metadata, version } = await ctx.readMetadata(ledgerId, signal);
    if (metadata.state === 'CLOSED') return { metadata, version };
    if (metadata.state === 'OPEN') {
      const inRecovery: LedgerMetadata = { ...metadata, state: 'IN_RECOVERY' };
      try {
        version = await ctx.casMetadata(inRecovery, version);
        metadata = inRecovery;
      } catch (err) {
        if (err instanceof BadVersionError) continue;
        throw err;
      }
    }
    try {
      const closed = await recoverOnce(ctx, metadata, version, signal);
      log.info({ lastEntryId: closed.metadata.lastEntryId }, 'ledger recovered and closed');
      return closed;
    } catch (err) {
      // Lost a race (another recovery closed it or changed its ensemble): re-read and decide again.
      if (isStrataError(err) && (err.code === ErrorCode.FENCED || err.code === ErrorCode.BAD_VERSION)) {
        lastError = err;
        await ctx.backoff(attempt, signal);
        continue;
      }
      throw err;
    }
  }
  throw lastError ?? new StrataError(ErrorCode.BAD_VERSION, `ledger ${ledgerId}: metadata kept changing during recovery`);
}

async function recoverOnce(ctx: ClientContext, metadata: LedgerMetadata, version: number, signal?: AbortSignal): Promise<{ metadata: LedgerMetadata; version: number }> {
  const { ledgerId, ensembleSize: E, writeQuorum: W, ackQuorum: A } = metadata;
  const last = metadata.ensembles[metadata.ensembles.length - 1]!;
  const answers = await Promise.allSettled(last.bookies.map((b) => ctx.transport.fence(b, ledgerId, signal)));
  const responded = new Set<number>();
  let lac = last.firstEntryId - 1;
  answers.forEach((a, i) => {
    if (a.status === 'fulfilled') {
      responded.add(i);
      lac = Math.max(lac, a.value.lastAddConfirmed);
    } else if (isStrataError(a.reason) && a.reason.code === ErrorCode.NOT_FOUND) {
      // The bookie has never seen the ledger; fencing it anyway is what the server does on Fence.
      responded.add(i);
    }
  });
  signal?.throwIfAborted();
  if (!coversAckQuorum(responded, E, W, A)) {
    throw new RecoveryIncompleteError(ledgerId, `only ${responded.size} of ${E} bookies answered the fence`);
  }
  const prefixBytes = await lengthUpTo(ctx, metadata, version, lac, signal);
  const writer = new LedgerWriterImpl(ctx, metadata, version, { recovery: true, lastAddConfirmed: lac, initialLength: prefixBytes });
  const rewrites: Array<Promise<number>> = [];
  let firstFailure: unknown;
  for (let entryId = lac + 1; ; entryId++) {
    const payload = await readForRecovery(ctx, metadata, entryId, signal);
    if (payload === undefined) break;
    const p = writer.appendRecovered(entryId, payload);
    p.catch((err: unknown) => { firstFailure ??= err; });
    rewrites.push(p);
    if (firstFailure) break;
  }
  await Promise.allSettled(rewrites);
  if (firstFailure) {
    // Never close on a failed re-write: the ledger stays IN_RECOVERY and the next recovery redoes it.
    writer.abandon(new RecoveryIncompleteError(ledgerId, 'a re-write failed'));
    throw firstFailure;
  }
  try {
    await writer.close();
  } catch (err) {
    if (isStrataError(err) && err.code === ErrorCode.FENCED) {
      const fresh = await ctx.readMetadata(ledgerId, signal);
      if (fresh.metadata.state === 'CLOSED') return fresh;
    }
    throw err;
  }
  return { metadata: writer.metadata, version: writer.metadataVersion };
}

/** Payload bytes of entries 0..lastEntryId, read from the bookies (recovery must record the ledger's length). */
async function lengthUpTo(ctx: ClientContext, metadata: LedgerMetadata, version: number, lastEntryId: number, signal?: AbortSignal): Promise<number> {
  if (lastEntryId < 0) return 0;
  const reader = new LedgerReaderImpl(ctx, { ...metadata, state: 'CLOSED', lastEntryId }, version);
  let bytes = 0;
  for (let next = 0; next <= lastEntryId;) {
    const chunk = await reader.read(next, lastEntryId, { maxBytes: ctx.options.readChunkBytes, signal });
    for (const e of chunk) bytes += e.payload.length;
    next = chunk[chunk.length - 1]!.entryId + 1;
  }
  return bytes;
}

/** The entry from any replica of its write set; undefined when enough replicas say it does not exist. */
async function readForRecovery(ctx: ClientContext, metadata: LedgerMetadata, entryId: number, signal?: AbortSignal): Promise<Buffer | undefined> {
  const { ledgerId, ensembleSize: E, writeQuorum: W, ackQuorum: A } = metadata;
  const bookies = metadata.ensembles[metadata.ensembles.length - 1]!.bookies;
  const replicas = writeSet(entryId, E, W).map((i) => bookies[i]!);
  const answers = await Promise.allSettled(replicas.map((b) =>
    ctx.transport.read(b, { ledgerId, firstEntryId: entryId, lastEntryId: entryId, maxBytes: ctx.options.maxEntryBytes }, signal)));
  let missing = 0;
  for (const a of answers) {
    if (a.status === 'fulfilled') {
      const e = a.value[0];
      if (e && e.entryId === entryId && crc32c(e.payload) === e.crc32c) return e.payload;
      if (!e) missing++;
    } else if (isStrataError(a.reason) && a.reason.code === ErrorCode.NOT_FOUND) {
      missing++;
    }
  }
  signal?.throwIfAborted();
  if (missing >= W - A + 1) return undefined;
  throw new RecoveryIncompleteError(ledgerId, `entry ${entryId}: ${missing} of ${W} replicas say it is missing, need ${W - A + 1} to end the ledger there`);
}
