import { crc32c } from '@node-rs/crc32';
import { BadVersionError, listAll, type MetadataStore, type Watcher } from '@strata/coordinator';
import { ErrorCode, isStrataError, StrataError, systemClock, type Clock, type Logger } from '@strata/runtime';
import type { LedgerMetadata } from '../client/api.js';
import { AVAILABLE_BOOKIES_PREFIX } from '../client/bookie-registry.js';
import type { BookieLedgerClient } from '../client/client.js';
import { decodeMetadata, LEDGERS_PREFIX, writeSet } from '../client/metadata.js';
import type { ClientContext } from '../client/reader.js';

/** Markers of ledgers that need re-replication: `underreplicated/<ledgerId>`, JSON {@link UnderreplicatedMarker}. */
export const UNDERREPLICATED_PREFIX = 'underreplicated/';

export interface UnderreplicatedMarker {
  /** Bookies of this ledger's ensembles that are lost for good. */
  lostBookies: string[];
  /** Replacement chosen per (ensemble first entry id, index), so a resumed copy goes to the same bookie. */
  replacements: Record<string, string>;
  createdAt: number;
}

export interface AutoRecoveryOptions {
  /** A bookie missing from bookies/available/ this long is lost for good (default 60000). */
  lostBookieGraceMs?: number;
  /** Time between passes (default 5000); a bookie's disappearance also triggers one after the grace. */
  checkIntervalMs?: number;
  /** Copy adds in flight to a replacement bookie at most (default 256). */
  maxCopyInFlight?: number;
}

export interface AutoRecoveryDeps {
  metadata: MetadataStore;
  logger: Logger;
  clock?: Clock;
  /** The ledger client whose transport and metadata helpers are used (the caller owns and closes it). */
  ledgerClient: BookieLedgerClient;
  options?: AutoRecoveryOptions;
}

export interface PassResult {
  lostBookies: string[];
  /** Ledgers whose replication is complete after this pass. */
  replicated: number[];
  /** Ledgers still marked (open ledger's current ensemble, no replacement bookie, copy failure). */
  pending: number[];
}

type LedgerOutcome = 'done' | 'pending';

/**
 * Restores the replication factor of ledgers that had entries on a bookie lost for good
 * (docs/storage.md "Auto-recovery", decision 0028). The coordinator's leader runs one.
 *
 * Invariants:
 * - A bookie counts as lost only after it has been missing from bookies/available/ for
 *   lostBookieGraceMs, measured by this instance (a new leader starts the clock again, so it never
 *   replicates early); ledgers already marked under-replicated are resumed at once.
 * - Entries are copied (recovery adds, CRC-checked reads from surviving replicas) before the ensemble
 *   is changed by CAS: a reader with the new metadata always finds the data; one with the old
 *   metadata falls back to the surviving replicas.
 * - The current (last) ensemble of a ledger that is not CLOSED is never touched: its writer (or the
 *   recovery that closes it) replaces bookies there. The marker stays until the ledger is closed.
 * - Idempotent: re-adding an entry with the same payload succeeds; the marker records the lost bookies
 *   and the chosen replacements, so a pass after a crash resumes the same copy.
 */
export class AutoRecovery {
  private readonly metadata: MetadataStore;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly client: BookieLedgerClient;
  private readonly graceMs: number;
  private readonly intervalMs: number;
  private readonly maxCopyInFlight: number;
  /** Bookies seen registered at some point, and when each was first seen missing (monotonic ms). */
  private readonly known = new Set<string>();
  private readonly missingSince = new Map<string, number>();
  private watcher: Watcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private stopped = true;
  private stopping = false;
  /** Aborts a pass in progress on stop(). */
  private readonly abort = new AbortController();

  constructor(deps: AutoRecoveryDeps) {
    this.metadata = deps.metadata;
    this.logger = deps.logger.child({ component: 'auto-recovery' });
    this.clock = deps.clock ?? systemClock;
    this.client = deps.ledgerClient;
    this.graceMs = deps.options?.lostBookieGraceMs ?? 60_000;
    this.intervalMs = deps.options?.checkIntervalMs ?? 5_000;
    this.maxCopyInFlight = deps.options?.maxCopyInFlight ?? 256;
  }

  private get ctx(): ClientContext {
    return this.client.context;
  }

  /** Starts watching bookies and running passes until stop(). */
  async start(): Promise<void> {
    this.stopped = false;
    const revision = await this.metadata.currentRevision();
    this.watcher = await this.metadata.watch(AVAILABLE_BOOKIES_PREFIX, {
      fromRevision: revision + 1,
      onEvent: (event) => {
        const id = event.key.slice(event.key.lastIndexOf('/') + 1);
        if (event.type === 'put') {
          this.known.add(id);
          this.missingSince.delete(id);
        } else if (!this.missingSince.has(id)) {
          this.missingSince.set(id, this.clock.monotonic());
          this.logger.info({ bookieId: id, graceMs: this.graceMs }, 'bookie disappeared; re-replicating its ledgers after the grace period');
        }
      },
      onError: (err) => this.logger.error({ err }, 'bookie watch failed; relying on periodic passes'),
    });
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopping = true;
    this.abort.abort(new StrataError(ErrorCode.UNAVAILABLE, 'auto-recovery stopped', { retriable: false }));
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.watcher?.close().catch(() => undefined);
    await this.running?.catch(() => undefined);
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.runOnce(this.abort.signal).then(
        (result) => {
          if (result.pending.length > 0) this.logger.info({ pending: result.pending }, 'ledgers still under-replicated');
        },
        (err: unknown) => {
          if (!this.stopping) this.logger.error({ err }, 'auto-recovery pass failed');
        },
      ).finally(() => this.schedule(this.intervalMs));
    }, delayMs);
  }

  /** One pass: find lost bookies, mark their ledgers, re-replicate every marked ledger. */
  async runOnce(signal?: AbortSignal): Promise<PassResult> {
    const now = this.clock.monotonic();
    const registered = new Set((await listAll(this.metadata, AVAILABLE_BOOKIES_PREFIX, { signal })).items.map((kv) => kv.key.slice(AVAILABLE_BOOKIES_PREFIX.length)));
    for (const id of registered) {
      this.known.add(id);
      this.missingSince.delete(id);
    }
    const ledgers = await this.listLedgers(signal);
    for (const { metadata } of ledgers) {
      for (const e of metadata.ensembles) for (const b of e.bookies) this.known.add(b);
    }
    for (const id of this.known) if (!registered.has(id) && !this.missingSince.has(id)) this.missingSince.set(id, now);
    const lost = new Set([...this.missingSince].filter(([, since]) => now - since >= this.graceMs).map(([id]) => id));

    for (const { metadata } of ledgers) {
      const onLost = [...new Set(metadata.ensembles.flatMap((e) => e.bookies))].filter((b) => lost.has(b));
      if (onLost.length > 0) await this.mark(metadata.ledgerId, onLost, signal);
    }

    const result: PassResult = { lostBookies: [...lost], replicated: [], pending: [] };
    const markers = (await listAll(this.metadata, UNDERREPLICATED_PREFIX, { signal })).items;
    for (const kv of markers) {
      signal?.throwIfAborted();
      if (this.stopping) break;
      const ledgerId = Number(kv.key.slice(UNDERREPLICATED_PREFIX.length));
      if (!Number.isSafeInteger(ledgerId)) continue;
      try {
        const outcome = await this.replicateLedger(ledgerId, registered, signal);
        (outcome === 'done' ? result.replicated : result.pending).push(ledgerId);
      } catch (err) {
        signal?.throwIfAborted();
        result.pending.push(ledgerId);
        this.logger.warn({ ledgerId, err }, 'could not re-replicate ledger; will retry');
      }
    }
    return result;
  }

  private async listLedgers(signal?: AbortSignal): Promise<Array<{ metadata: LedgerMetadata; version: number }>> {
    const out: Array<{ metadata: LedgerMetadata; version: number }> = [];
    for (const kv of (await listAll(this.metadata, LEDGERS_PREFIX, { signal })).items) {
      const ledgerId = Number(kv.key.slice(LEDGERS_PREFIX.length));
      try {
        out.push({ metadata: decodeMetadata(ledgerId, kv.value), version: kv.version });
      } catch (err) {
        this.logger.error({ ledgerId, err }, 'unreadable ledger metadata; skipped');
      }
    }
    return out;
  }

  /** Creates or extends `underreplicated/<ledgerId>` (CAS, so concurrent markers merge). */
  private async mark(ledgerId: number, lostBookies: string[], signal?: AbortSignal): Promise<void> {
    for (let attempt = 0; attempt < 10; attempt++) {
      const kv = await this.metadata.get(UNDERREPLICATED_PREFIX + ledgerId, { signal });
      const marker: UnderreplicatedMarker = kv ? JSON.parse(kv.value.toString()) as UnderreplicatedMarker : { lostBookies: [], replacements: {}, createdAt: this.clock.now() };
      const missing = lostBookies.filter((b) => !marker.lostBookies.includes(b));
      if (missing.length === 0) return;
      marker.lostBookies.push(...missing);
      try {
        await this.metadata.put(UNDERREPLICATED_PREFIX + ledgerId, JSON.stringify(marker), { expectedVersion: kv?.version ?? 0, signal });
        this.logger.info({ ledgerId, lostBookies: marker.lostBookies }, 'ledger marked under-replicated');
        return;
      } catch (err) {
        if (!(err instanceof BadVersionError)) throw err;
      }
    }
  }

  /** Copies what the lost bookies held to replacements and CASes the ensembles; removes the marker when complete. */
  private async replicateLedger(ledgerId: number, registered: ReadonlySet<string>, signal?: AbortSignal): Promise<LedgerOutcome> {
    const markerKey = UNDERREPLICATED_PREFIX + ledgerId;
    const log = this.logger.child({ ledgerId });
    for (let attempt = 0; attempt < this.ctx.options.metadataRetries; attempt++) {
      const markerKv = await this.metadata.get(markerKey, { signal });
      if (!markerKv) return 'done';
      const marker = JSON.parse(markerKv.value.toString()) as UnderreplicatedMarker;
      // A bookie that came back with its data is not lost any more.
      const lost = new Set(marker.lostBookies.filter((b) => !registered.has(b)));
      let current: { metadata: LedgerMetadata; version: number };
      try {
        current = await this.ctx.readMetadata(ledgerId, signal);
      } catch (err) {
        if (isStrataError(err) && err.code === ErrorCode.NOT_FOUND) {
          await this.metadata.delete(markerKey, { expectedVersion: markerKv.version, signal }).catch(() => undefined);
          return 'done';
        }
        throw err;
      }
      const { metadata } = current;
      const work = this.fragments(metadata, lost);
      if (work.total === 0) {
        try {
          await this.metadata.delete(markerKey, { expectedVersion: markerKv.version, signal });
          log.info('ledger fully replicated; marker removed');
          return 'done';
        } catch (err) {
          if (err instanceof BadVersionError) continue;
          throw err;
        }
      }
      if (work.ready.length === 0) return 'pending';
      // Choose (or reuse) a replacement per fragment and record it before copying: a resumed pass copies to the same bookie.
      let markerChanged = false;
      // Replacements within one ensemble must differ from each other too (an ensemble holds distinct bookies).
      const takenIn = (f: Fragment, except: string) => work.ready
        .filter((o) => o.ensembleIndex === f.ensembleIndex && `${o.firstEntryId}:${o.index}` !== except)
        .map((o) => marker.replacements[`${o.firstEntryId}:${o.index}`])
        .filter((b): b is string => b !== undefined);
      for (const f of work.ready) {
        const key = `${f.firstEntryId}:${f.index}`;
        const chosen = marker.replacements[key];
        const ensemble = metadata.ensembles[f.ensembleIndex]!.bookies;
        const usable = chosen !== undefined && registered.has(chosen) && !ensemble.includes(chosen) && !takenIn(f, key).includes(chosen);
        if (!usable) {
          const exclude = new Set([...ensemble, ...lost, ...takenIn(f, key)]);
          marker.replacements[key] = (await this.ctx.pickBookies(1, exclude, signal))[0]!;
          markerChanged = true;
        }
      }
      if (markerChanged) {
        try {
          await this.metadata.put(markerKey, JSON.stringify(marker), { expectedVersion: markerKv.version, signal });
        } catch (err) {
          if (err instanceof BadVersionError) continue;
          throw err;
        }
      }
      for (const f of work.ready) {
        const target = marker.replacements[`${f.firstEntryId}:${f.index}`]!;
        const copied = await this.copyFragment(metadata, f, target, lost, signal);
        log.info({ firstEntryId: f.firstEntryId, lastEntryId: f.lastEntryId, lostBookie: f.bookieId, replacement: target, copied }, 'fragment copied');
      }
      // Swap the bookies in by CAS; if the metadata moved on, re-check against the fresh copy.
      const updated = await this.swapEnsembles(ledgerId, work.ready.map((f) => ({ ...f, replacement: marker.replacements[`${f.firstEntryId}:${f.index}`]! })), signal);
      if (updated) log.info({ fragments: work.ready.length }, 'ensembles updated');
      // Loop: the next round removes the marker if nothing is left, or reports what must wait.
    }
    return 'pending';
  }

  /** The (ensemble, index) pairs that reference a lost bookie; `ready` are those safe to re-replicate now. */
  private fragments(metadata: LedgerMetadata, lost: ReadonlySet<string>): { total: number; ready: Fragment[] } {
    const ready: Fragment[] = [];
    let total = 0;
    metadata.ensembles.forEach((e, k) => {
      const isLast = k === metadata.ensembles.length - 1;
      const lastEntryId = isLast ? (metadata.state === 'CLOSED' ? metadata.lastEntryId : Number.NaN) : metadata.ensembles[k + 1]!.firstEntryId - 1;
      e.bookies.forEach((b, i) => {
        if (!lost.has(b)) return;
        total++;
        if (isLast && metadata.state !== 'CLOSED') return;
        ready.push({ ensembleIndex: k, firstEntryId: e.firstEntryId, lastEntryId, index: i, bookieId: b });
      });
    });
    return { total, ready };
  }

  /**
   * Copies every entry of the fragment that the lost index stored, read (CRC-checked) from surviving
   * replicas, to `target` with recovery adds, a bounded number in flight. With E == W every survivor
   * holds the whole fragment, so it is read in ranges; with striping, entry by entry.
   */
  private async copyFragment(metadata: LedgerMetadata, f: Fragment, target: string, lost: ReadonlySet<string>, signal?: AbortSignal): Promise<number> {
    const { ledgerId, ensembleSize: E, writeQuorum: W } = metadata;
    const bookies = metadata.ensembles[f.ensembleIndex]!.bookies;
    const survivorsOf = (n: number) => writeSet(n, E, W).filter((i) => i !== f.index && !lost.has(bookies[i]!)).map((i) => bookies[i]!);
    const inFlight = new Set<Promise<void>>();
    let firstError: unknown;
    let copied = 0;
    let n = f.firstEntryId;
    while (n <= f.lastEntryId && !firstError) {
      signal?.throwIfAborted();
      if (!writeSet(n, E, W).includes(f.index)) {
        n++;
        continue;
      }
      const chunk = E === W
        ? await this.readRange(ledgerId, n, f.lastEntryId, survivorsOf(n), signal)
        : [{ entryId: n, payload: await this.readFromSurvivors(ledgerId, n, survivorsOf(n), signal) }];
      for (const e of chunk) {
        const p = this.ctx.transport.add(target, {
          ledgerId, entryId: e.entryId, lastAddConfirmed: -1, payload: e.payload, crc32c: crc32c(e.payload), recovery: true,
        }).then(() => { copied++; }, (err: unknown) => { firstError ??= err; });
        const tracked = p.finally(() => inFlight.delete(tracked));
        inFlight.add(tracked);
        if (inFlight.size >= this.maxCopyInFlight) await Promise.race(inFlight);
      }
      n = chunk[chunk.length - 1]!.entryId + 1;
    }
    await Promise.all(inFlight);
    if (firstError) throw firstError;
    return copied;
  }

  /** A CRC-checked run of entries starting at `first`, from the first survivor that serves one. */
  private async readRange(ledgerId: number, first: number, last: number, replicas: string[], signal?: AbortSignal): Promise<Array<{ entryId: number; payload: Buffer }>> {
    let lastError: unknown;
    for (const bookieId of replicas) {
      try {
        const got = await this.ctx.transport.read(bookieId, { ledgerId, firstEntryId: first, lastEntryId: last, maxBytes: this.ctx.options.readChunkBytes }, signal);
        const valid: Array<{ entryId: number; payload: Buffer }> = [];
        for (const e of got) {
          if (e.entryId !== first + valid.length || e.entryId > last || crc32c(e.payload) !== e.crc32c) break;
          valid.push(e);
        }
        if (valid.length > 0) return valid;
        lastError = new Error(`bookie ${bookieId} returned no valid entry`);
      } catch (err) {
        signal?.throwIfAborted();
        lastError = err;
      }
    }
    throw new StrataError(ErrorCode.UNAVAILABLE, `no surviving replica of entry ${first} of ledger ${ledgerId}`, { cause: lastError });
  }

  private async readFromSurvivors(ledgerId: number, entryId: number, replicas: string[], signal?: AbortSignal): Promise<Buffer> {
    let lastError: unknown;
    for (const bookieId of replicas) {
      try {
        const [e] = await this.ctx.transport.read(bookieId, { ledgerId, firstEntryId: entryId, lastEntryId: entryId, maxBytes: this.ctx.options.maxEntryBytes }, signal);
        if (e && e.entryId === entryId && crc32c(e.payload) === e.crc32c) return e.payload;
        lastError = new Error(`bookie ${bookieId} returned a bad copy of entry ${entryId}`);
      } catch (err) {
        lastError = err;
      }
    }
    throw new StrataError(ErrorCode.UNAVAILABLE, `no surviving replica of entry ${entryId} of ledger ${ledgerId}`, { cause: lastError });
  }

  private async swapEnsembles(ledgerId: number, swaps: Array<Fragment & { replacement: string }>, signal?: AbortSignal): Promise<boolean> {
    for (let attempt = 0; attempt < this.ctx.options.metadataRetries; attempt++) {
      const { metadata, version } = await this.ctx.readMetadata(ledgerId, signal);
      let changed = false;
      for (const s of swaps) {
        const e = metadata.ensembles[s.ensembleIndex];
        const isLast = s.ensembleIndex === metadata.ensembles.length - 1;
        // Only the fragment exactly as copied: same first entry, same bookie, and (if last) the ledger is closed at the same entry.
        if (!e || e.firstEntryId !== s.firstEntryId || e.bookies[s.index] !== s.bookieId) continue;
        if (isLast && (metadata.state !== 'CLOSED' || metadata.lastEntryId !== s.lastEntryId)) continue;
        if (!isLast && metadata.ensembles[s.ensembleIndex + 1]!.firstEntryId - 1 !== s.lastEntryId) continue;
        e.bookies[s.index] = s.replacement;
        changed = true;
      }
      if (!changed) return false;
      try {
        await this.ctx.casMetadata(metadata, version);
        return true;
      } catch (err) {
        if (!(err instanceof BadVersionError)) throw err;
        await this.ctx.backoff(attempt, signal);
      }
    }
    throw new StrataError(ErrorCode.BAD_VERSION, `ledger ${ledgerId}: metadata kept changing during re-replication`);
  }
}

interface Fragment {
  ensembleIndex: number;
  firstEntryId: number;
  lastEntryId: number;
  index: number;
  bookieId: string;
}
