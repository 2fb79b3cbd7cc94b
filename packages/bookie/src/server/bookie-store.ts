import { crc32c } from '@node-rs/crc32';
import type { Logger } from '@strata/runtime';
import {
  BookieArgumentError, BookieFencedError, BookieNotFoundError, BookieReadOnlyError, BookieUnavailableError, EntryChecksumError,
  EntryConflictError, EntryTooLargeError,
} from '../errors.js';
import type { JournalRecord } from '../storage/format.js';
import type { Journal, JournalPosition } from '../storage/journal.js';
import type { LedgerInfo, LedgerStorage, StorageOp, StoredEntry } from '../storage/ledger-storage.js';

export interface AddRequest {
  ledgerId: number;
  entryId: number;
  lastAddConfirmed: number;
  payload: Buffer;
  crc32c: number;
  recovery: boolean;
}

function toOp(req: AddRequest): StorageOp {
  return {
    type: 'add', ledgerId: req.ledgerId, entryId: req.entryId, lastAddConfirmed: req.lastAddConfirmed, crc32c: req.crc32c >>> 0,
    payload: req.payload,
  };
}

export interface BookieStoreOptions {
  bookieId: string;
  journal: Journal;
  storage: LedgerStorage;
  maxEntryBytes: number;
  /** Largest read answer (bytes of payload); a read always returns at least one entry. */
  maxReadBytes: number;
  maxReadEntries: number;
  checkpointIntervalMs: number;
  logger: Logger;
  /** Batch size for journal replay into the ledger storage. */
  replayBatchBytes?: number;
}

interface ApplyItem {
  op: StorageOp;
  end: JournalPosition;
  resolve: () => void;
  reject: (err: unknown) => void;
  /** The pending-map key to forget once done. */
  key: string | undefined;
}

/**
 * The bookie's rules on top of its journal and ledger storage: validation, fencing, idempotent
 * duplicates, and the order add -> journal (fdatasync) -> ledger storage -> acknowledged.
 *
 * Invariants:
 * - `add` resolves only after its record is fdatasync'd in the journal and written to the ledger
 *   storage (so a read that follows the acknowledgement finds it).
 * - Operations reach the ledger storage in journal order; a fence resolves only after every add
 *   admitted before it was applied, so the state it reports includes them.
 * - After `fence` starts, plain adds to that ledger are refused; `recovery` adds are still taken.
 * - An add of an entry that is stored or in flight with the same CRC32C and length succeeds without
 *   writing again; with a different payload it fails with ALREADY_EXISTS.
 * - Nothing is refused that was acknowledged, and nothing is acknowledged that is not durable.
 */
export class BookieStore {
  private readonly logger: Logger;
  private readonly pending = new Map<string, { crc: number; length: number; promise: Promise<void> }>();
  private applyQueue: ApplyItem[] = [];
  private applying = false;
  private running = false;
  private readOnly = false;
  private checkpointTimer: NodeJS.Timeout | undefined;
  private checkpointRun: Promise<void> | undefined;

  constructor(private readonly options: BookieStoreOptions) {
    this.logger = options.logger.child({ component: 'bookie-store' });
  }

  /** Opens the storage, replays the journal after the last checkpoint, and starts checkpointing. */
  async start(): Promise<void> {
    const { storage, journal } = this.options;
    const from = await storage.open();
    let batch: StorageOp[] = [];
    let batchBytes = 0;
    let end = from;
    const limit = this.options.replayBatchBytes ?? 16 * 1024 * 1024;
    const stats = await journal.open(from, async (record, position) => {
      batch.push(record);
      batchBytes += record.type === 'add' ? record.payload.length : 0;
      end = position;
      if (batchBytes >= limit || batch.length >= 10_000) {
        await storage.apply(batch, end);
        batch = [];
        batchBytes = 0;
      }
    });
    if (batch.length > 0) await storage.apply(batch, end);
    // Everything replayed is now in the segment files; make that the new starting point.
    const cp = await storage.checkpoint();
    await journal.trim(cp);
    this.logger.info({ replayed: stats.records, cut: stats.cut }, 'bookie store started');
    this.running = true;
    this.scheduleCheckpoint();
  }

  setReadOnly(readOnly: boolean): void {
    if (readOnly !== this.readOnly) this.logger.warn({ readOnly }, 'read-only mode changed');
    this.readOnly = readOnly;
  }

  isReadOnly(): boolean {
    return this.readOnly;
  }

  add(req: AddRequest): Promise<void> {
    try {
      const info = this.admit(req);
      const key = `${req.ledgerId}:${req.entryId}`;
      const inFlight = this.pending.get(key);
      if (inFlight) {
        if (inFlight.crc === req.crc32c >>> 0 && inFlight.length === req.payload.length) return inFlight.promise;
        throw new EntryConflictError(req.ledgerId, req.entryId);
      }
      let promise: Promise<void>;
      if (info && req.entryId <= info.lastEntryId) {
        // May already be stored: look it up first (I/O), then journal it if not.
        promise = this.storeUnlessStored(req);
        const forget = () => {
          this.pending.delete(key);
        };
        promise.then(forget, forget);
      } else {
        // The common case, above everything stored: straight to the journal (which forgets the key).
        promise = this.journalThenApply(toOp(req), key);
      }
      this.pending.set(key, { crc: req.crc32c >>> 0, length: req.payload.length, promise });
      return promise;
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Checks everything that can be checked without I/O. */
  private admit(req: AddRequest): LedgerInfo | undefined {
    if (!this.running) throw new BookieUnavailableError(`bookie ${this.options.bookieId} is not running`);
    if (!Number.isSafeInteger(req.ledgerId) || req.ledgerId < 0) throw new BookieArgumentError(`bad ledger id ${req.ledgerId}`);
    if (!Number.isSafeInteger(req.entryId) || req.entryId < 0) {
      throw new BookieArgumentError(`bad entry id ${req.entryId} for ledger ${req.ledgerId}`);
    }
    if (!Number.isSafeInteger(req.lastAddConfirmed) || req.lastAddConfirmed < -1) {
      throw new BookieArgumentError(`bad last-add-confirmed ${req.lastAddConfirmed} for ledger ${req.ledgerId}`);
    }
    if (req.payload.length > this.options.maxEntryBytes) {
      throw new EntryTooLargeError(req.ledgerId, req.entryId, req.payload.length, this.options.maxEntryBytes);
    }
    if (this.readOnly) throw new BookieReadOnlyError(this.options.bookieId);
    if (crc32c(req.payload) !== req.crc32c >>> 0) throw new EntryChecksumError(req.ledgerId, req.entryId, 'request');
    const info = this.options.storage.getLedger(req.ledgerId);
    if (info?.fenced && !req.recovery) throw new BookieFencedError(req.ledgerId);
    return info;
  }

  private async storeUnlessStored(req: AddRequest): Promise<void> {
    const existing = await this.options.storage.findEntry(req.ledgerId, req.entryId);
    if (existing) {
      if (existing.crc32c === req.crc32c >>> 0 && existing.length === req.payload.length) return;
      throw new EntryConflictError(req.ledgerId, req.entryId);
    }
    await this.journalThenApply(toOp(req), undefined);
  }

  /** Journals a fence, waits until it (and every add before it) is applied, and reports the state. */
  async fence(ledgerId: number): Promise<LedgerInfo> {
    if (!this.running) throw new BookieUnavailableError(`bookie ${this.options.bookieId} is not running`);
    if (!Number.isSafeInteger(ledgerId) || ledgerId < 0) throw new BookieArgumentError(`bad ledger id ${ledgerId}`);
    this.options.storage.markFenced(ledgerId);
    await this.journalThenApply({ type: 'fence', ledgerId }, undefined);
    return this.ledgerState(ledgerId);
  }

  ledgerState(ledgerId: number): LedgerInfo {
    const info = this.options.storage.getLedger(ledgerId);
    if (!info) throw new BookieNotFoundError(ledgerId);
    return info;
  }

  readLastAddConfirmed(ledgerId: number): number {
    return this.ledgerState(ledgerId).lastAddConfirmed;
  }

  async read(ledgerId: number, first: number, last: number, maxBytes: number): Promise<{ entries: StoredEntry[]; lastAddConfirmed: number }> {
    if (!Number.isSafeInteger(first) || first < 0 || !Number.isSafeInteger(last) || last < first) {
      throw new BookieArgumentError(`bad entry range [${first}, ${last}] for ledger ${ledgerId}`);
    }
    const entries = await this.options.storage.readEntries(ledgerId, first, last, {
      maxBytes: maxBytes > 0 ? Math.min(maxBytes, this.options.maxReadBytes) : this.options.maxReadBytes,
      maxEntries: this.options.maxReadEntries,
    });
    return { entries, lastAddConfirmed: this.ledgerState(ledgerId).lastAddConfirmed };
  }

  private journalThenApply(op: StorageOp, key: string | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const fail = (err: unknown) => {
        if (key !== undefined) this.pending.delete(key);
        reject(err);
      };
      // Journal promises resolve in append order, so items join the apply queue in journal order.
      this.options.journal.append(op as JournalRecord).then(
        (end) => {
          this.applyQueue.push({ op, end, resolve, reject: fail, key });
          if (!this.applying) queueMicrotask(() => void this.drainApply());
        },
        fail,
      );
    });
  }

  private async drainApply(): Promise<void> {
    if (this.applying) return;
    this.applying = true;
    try {
      while (this.applyQueue.length > 0) {
        const items = this.applyQueue;
        this.applyQueue = [];
        const end = (items.at(-1) as ApplyItem).end;
        try {
          await this.options.storage.apply(items.map((i) => i.op), end);
        } catch (err) {
          // Journaled but not in the segment files: reads would miss it until a restart replays it.
          // Fail the bookie rather than acknowledge an add that a read cannot find.
          this.logger.error({ err }, 'ledger storage write failed; the bookie stops taking adds');
          this.running = false;
          const error = new BookieUnavailableError('ledger storage write failed', err);
          for (const i of items) i.reject(error);
          continue;
        }
        for (const i of items) {
          if (i.key !== undefined) this.pending.delete(i.key);
          i.resolve();
        }
      }
    } finally {
      this.applying = false;
    }
  }

  private scheduleCheckpoint(): void {
    if (!this.running) return;
    this.checkpointTimer = setTimeout(() => {
      this.checkpointRun = this.checkpointNow()
        .catch((err: unknown) => this.logger.error({ err }, 'checkpoint failed; will retry'))
        .finally(() => {
          this.checkpointRun = undefined;
          this.scheduleCheckpoint();
        });
    }, this.options.checkpointIntervalMs);
  }

  /** Flushes the ledger storage and trims the journal files it no longer needs. */
  async checkpointNow(): Promise<void> {
    const position = await this.options.storage.checkpoint();
    await this.options.journal.trim(position);
  }

  /** Stops taking adds, lets what is in flight finish, checkpoints and closes the files. */
  async stop(): Promise<void> {
    this.running = false;
    if (this.checkpointTimer) clearTimeout(this.checkpointTimer);
    this.checkpointTimer = undefined;
    await this.checkpointRun;
    await this.options.journal.close();
    await Promise.allSettled([...this.pending.values()].map((p) => p.promise));
    while (this.applying || this.applyQueue.length > 0) await new Promise((r) => setImmediate(r));
    await this.options.storage.close();
    await this.options.journal.trim(this.options.journal.position).catch(() => undefined);
  }
}
