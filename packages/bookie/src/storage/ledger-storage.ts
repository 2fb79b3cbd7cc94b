import { crc32c } from '@node-rs/crc32';
import { writevSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rm, stat, truncate, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '@strata/runtime';
import { BookieNotFoundError, BookieUnavailableError, EntryChecksumError, StorageCorruptError } from '../errors.js';
import {
  decodeLogHeader, encodeLogHeader, INDEX_RECORD, LOG_HEADER, LOG_MAGIC, numberedName, parseNumberedName, readU64, writeU64,
} from './format.js';
import { fsyncDir, writeFileAtomic } from './fsutil.js';
import { JOURNAL_START, type JournalPosition } from './journal.js';

/** What a ledger on this bookie looks like from outside. */
export interface LedgerInfo {
  ledgerId: number;
  fenced: boolean;
  /** The highest last-add-confirmed piggybacked on any stored entry (-1 if none). */
  lastAddConfirmed: number;
  /** Highest entry id stored (-1 if none). Entries may have gaps (striping when E > W). */
  lastEntryId: number;
  entryCount: number;
  /** Payload bytes stored. */
  sizeBytes: number;
}

export interface StoredEntry {
  entryId: number;
  lastAddConfirmed: number;
  payload: Buffer;
  crc32c: number;
}

/** A journaled operation, applied to the ledger storage in journal order. */
export type StorageOp =
  | { type: 'add'; ledgerId: number; entryId: number; lastAddConfirmed: number; crc32c: number; payload: Buffer }
  | { type: 'fence'; ledgerId: number };

export interface ReadOptions {
  maxBytes: number;
  maxEntries: number;
}

/**
 * Where entries live once the journal has them: per ledger, append-only segment files
 * `ledgers/<ledgerId>/<firstEntryId>.log` with a `.index` beside each (docs/storage.md).
 *
 * Invariants:
 * - `apply` is called with operations in journal order; `end` is the journal position after the last
 *   of them. Applying an add whose entry is already stored is a no-op (replay is idempotent).
 * - Within one segment entry ids strictly increase; an entry that arrives below a segment's last id
 *   starts a new segment, so a lookup is a binary search over a ledger's segments (by first id) and
 *   then over that segment's index. Segments of one ledger overlap only after such out-of-order
 *   arrivals, and lookups then also check the earlier segments whose range covers the id.
 * - A read sees an entry only after its bytes are written to the `.log` and `.index` (the in-memory
 *   index is updated after the writes complete). Every read checks the entry's CRC32C and header,
 *   and never returns bytes that fail them.
 * - Segment files are not fsync'd per add: the journal is what makes an add durable. `checkpoint()`
 *   fsyncs every file written since the last one and then records, atomically, the journal position
 *   up to which everything is in these files, plus each ledger's fenced flag, LAC and segment lengths.
 *   A sealed segment is fsync'd when sealed. On `open()` anything past the checkpoint's lengths is cut,
 *   and the journal is replayed from the checkpoint's position. In between, a background fdatasync every
 *   `writeBackBytes` keeps what a checkpoint or seal must flush small; correctness never depends on it.
 * - A fenced flag, once set, is never cleared (short of the ledger being deleted).
 * - Memory: the index of each ledger's active segment (24 bytes an entry, at most `segmentMaxEntries`)
 *   while that ledger is open for writing (at most `maxOpenWriters`, least recently written closed first);
 *   indexes of other segments are cached up to `indexCacheBytes`.
 */
export interface LedgerStorage {
  /** Loads the last checkpoint, cuts whatever came after it; returns where journal replay must start. */
  open(): Promise<JournalPosition>;
  apply(ops: StorageOp[], end: JournalPosition): Promise<void>;
  /** Sets the fenced flag in memory now; the journal's fence record makes it durable. */
  markFenced(ledgerId: number): LedgerInfo;
  getLedger(ledgerId: number): LedgerInfo | undefined;
  /** The CRC32C and length of a stored entry, or undefined. */
  findEntry(ledgerId: number, entryId: number): Promise<{ crc32c: number; length: number } | undefined>;
  /**
   * Entries of [first, last] that are stored, in id order, cut at maxBytes/maxEntries (at least one).
   * NOT_FOUND if the ledger or the first entry is not stored.
   */
  readEntries(ledgerId: number, first: number, last: number, options: ReadOptions): Promise<StoredEntry[]>;
  ledgerIds(): number[];
  /** Forgets a ledger and removes its files. Returns the bytes freed. */
  deleteLedger(ledgerId: number): Promise<number>;
  /** Makes everything applied so far durable in these files, then lets the journal be trimmed. */
  checkpoint(): Promise<JournalPosition>;
  close(): Promise<void>;
}

export interface SegmentLedgerStorageOptions {
  dir: string;
  /** Roll to a new segment past this many `.log` bytes. */
  segmentMaxBytes: number;
  segmentMaxEntries: number;
  indexCacheBytes: number;
  maxOpenWriters: number;
  /**
   * Start an fdatasync of a segment's files in the background each time this many bytes were written to
   * them (0: only checkpoints and seals sync). Spreads the segment write-back over time, so a checkpoint
   * or a seal finds little left to flush and journal writes never queue behind tens of MB (decision 0082).
   */
  writeBackBytes?: number;
  /** Called after each background write-back with how long its fdatasyncs took. */
  onWriteBack?: (ms: number) => void;
  logger: Logger;
  now?: () => number;
}

interface Writer {
  log: FileHandle;
  index: FileHandle;
  dirty: boolean;
  closed: boolean;
  /** Bytes written since the last write-back started. */
  unsyncedBytes: number;
  /** The write-back in progress, if any (at most one per writer; never rejects). */
  writeBack?: Promise<void>;
}

interface Segment {
  first: number;
  /** Highest entry id in the segment (-1 while empty). */
  last: number;
  count: number;
  logBytes: number;
  sealed: boolean;
  /** The active segment's index, pinned in memory (records of INDEX_RECORD bytes). */
  activeIndex?: Buffer;
  writer?: Writer;
}

interface Ledger {
  id: number;
  fenced: boolean;
  lac: number;
  /** Kept in step with `segments` (see recount()). */
  lastEntryId: number;
  entryCount: number;
  sizeBytes: number;
  segments: Segment[];
  active?: Segment;
  lastWriteMs: number;
}

interface CheckpointFile {
  version: 1;
  journal: JournalPosition;
  ledgers: Array<{
    id: number;
    fenced: boolean;
    lac: number;
    /** [first, last, count, logBytes]; the active one is `active`. */
    segments: Array<[number, number, number, number]>;
    active: number | null;
  }>;
}

const CHECKPOINT = 'checkpoint.json';

export class SegmentLedgerStorage implements LedgerStorage {
  private readonly logger: Logger;
  private readonly ledgersDir: string;
  private readonly ledgers = new Map<number, Ledger>();
  /** Sealed segments' indexes, least recently used first. Key: `${ledgerId}/${first}`. */
  private readonly indexCache = new Map<string, Buffer>();
  private indexCacheBytes = 0;
  /** Serialises apply, checkpoint snapshots, deletes and writer closes. */
  private lock: Promise<unknown> = Promise.resolve();
  private checkpointing: Promise<JournalPosition> | undefined;
  private applied: JournalPosition = JOURNAL_START;
  private readonly dirtyDirs = new Set<string>();
  private readonly openWriters = new Map<Ledger, true>();
  /** The first failed background write-back: from then on nothing is applied and no checkpoint trims the journal. */
  private writeBackError: Error | undefined;
  /** Reused to join a run's buffers into one write (writes are serialised under the lock). */
  private scratch: Buffer | undefined;
  private readonly now: () => number;

  constructor(private readonly options: SegmentLedgerStorageOptions) {
    this.logger = options.logger.child({ component: 'ledger-storage' });
    this.ledgersDir = join(options.dir, 'ledgers');
    this.now = options.now ?? Date.now;
  }

  async open(): Promise<JournalPosition> {
    await mkdir(this.ledgersDir, { recursive: true });
    let cp: CheckpointFile = { version: 1, journal: JOURNAL_START, ledgers: [] };
    try {
      cp = JSON.parse(await readFile(join(this.options.dir, CHECKPOINT), 'utf8')) as CheckpointFile;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new StorageCorruptError('cannot read the checkpoint', err);
    }
    if (cp.version !== 1) throw new StorageCorruptError(`unknown checkpoint version ${String(cp.version)}`);
    const known = new Set<number>();
    for (const l of cp.ledgers) {
      known.add(l.id);
      const ledger: Ledger = { id: l.id, fenced: l.fenced, lac: l.lac, lastEntryId: -1, entryCount: 0, sizeBytes: 0, segments: [], lastWriteMs: this.now() };
      const dir = this.ledgerDir(l.id);
      const files = new Set(await readdir(dir).catch(() => [] as string[]));
      for (const [first, last, count, logBytes] of l.segments) {
        const seg: Segment = { first, last, count, logBytes, sealed: first !== l.active };
        if (!(await this.cutSegment(ledger, seg, files))) continue;
        files.delete(numberedName(first, '.log'));
        files.delete(numberedName(first, '.index'));
        ledger.segments.push(seg);
        if (!seg.sealed) ledger.active = seg;
      }
      // Files made after the checkpoint: replay writes their entries again.
      for (const name of files) await rm(join(dir, name), { force: true });
      ledger.segments.sort((a, b) => a.first - b.first);
      recount(ledger);
      this.ledgers.set(l.id, ledger);
    }
    for (const name of await readdir(this.ledgersDir)) {
      const id = parseNumberedName(name, '');
      if (id === undefined || known.has(id)) continue;
      await rm(join(this.ledgersDir, name), { recursive: true, force: true });
    }
    this.applied = cp.journal;
    this.logger.info({ ledgers: this.ledgers.size, journal: cp.journal }, 'ledger storage open');
    return cp.journal;
  }

  /** Truncates a segment to its checkpointed length; false if its files are gone (it is dropped). */
  private async cutSegment(ledger: Ledger, seg: Segment, files: Set<string>): Promise<boolean> {
    const logPath = this.segmentPath(ledger.id, seg.first, '.log');
    const indexPath = this.segmentPath(ledger.id, seg.first, '.index');
    if (!files.has(numberedName(seg.first, '.log')) || !files.has(numberedName(seg.first, '.index'))) {
      this.logger.error({ ledgerId: ledger.id, segment: seg.first }, 'segment in the checkpoint is missing; dropped');
      return false;
    }
    const [logSize, indexSize] = [(await stat(logPath)).size, (await stat(indexPath)).size];
    if (logSize < seg.logBytes || indexSize < seg.count * INDEX_RECORD) {
      // Only a damaged disk (or a hand) shortens fsync'd files: keep the prefix both files still hold.
      const index = await readFile(indexPath);
      let count = 0;
      let logBytes = 0;
      let last = -1;
      while (count < Math.min(seg.count, Math.floor(index.length / INDEX_RECORD))) {
        const at = count * INDEX_RECORD;
        const end = readU64(index, at + 8) + LOG_HEADER + index.readUInt32LE(at + 16);
        if (end > logSize) break;
        last = readU64(index, at);
        logBytes = end;
        count++;
      }
      this.logger.error({ ledgerId: ledger.id, segment: seg.first, count, was: seg.count }, 'segment shorter than its checkpoint; cut to what remains');
      Object.assign(seg, { count, logBytes, last });
    }
    if (logSize !== seg.logBytes) await truncate(logPath, seg.logBytes);
    if (indexSize !== seg.count * INDEX_RECORD) await truncate(indexPath, seg.count * INDEX_RECORD);
    return true;
  }

  apply(ops: StorageOp[], end: JournalPosition): Promise<void> {
    return this.exclusive(async () => {
      this.throwIfWriteBackFailed();
      let i = 0;
      while (i < ops.length) {
        const op = ops[i] as StorageOp;
        if (op.type === 'fence') {
          this.ensureLedger(op.ledgerId).fenced = true;
          i++;
          continue;
        }
        // A run of adds to one ledger is written with one writev per file.
        let j = i;
        const run: Array<StorageOp & { type: 'add' }> = [];
        while (j < ops.length && (ops[j] as StorageOp).type === 'add' && (ops[j] as StorageOp).ledgerId === op.ledgerId) {
          run.push(ops[j] as StorageOp & { type: 'add' });
          j++;
        }
        await this.appendRun(this.ensureLedger(op.ledgerId), run);
        i = j;
      }
      this.applied = end;
    });
  }

  private async appendRun(ledger: Ledger, run: Array<StorageOp & { type: 'add' }>): Promise<void> {
    let seg: Segment | undefined;
    let logBufs: Buffer[] = [];
    let indexBuf: Buffer[] = [];
    let added: Array<{ entryId: number; length: number; lac: number }> = [];
    let logBytes = 0;
    const flush = async () => {
      if (!seg || added.length === 0) return;
      await this.writeToSegment(ledger, seg, logBufs, indexBuf, added, logBytes);
      logBufs = [];
      indexBuf = [];
      added = [];
      logBytes = 0;
    };
    // Ids above everything stored or taken in this run are new without a lookup (the common case).
    let maxSeen = ledger.lastEntryId;
    let taken: Set<number> | undefined;
    for (const add of run) {
      if (add.entryId <= maxSeen) {
        taken ??= new Set(added.map((a) => a.entryId));
        if (taken.has(add.entryId) || (await this.findEntry(ledger.id, add.entryId)) !== undefined) continue;
      }
      maxSeen = Math.max(maxSeen, add.entryId);
      taken?.add(add.entryId);
      const size = LOG_HEADER + add.payload.length;
      const target = seg ?? ledger.active;
      const lastId = added.length > 0 ? (added.at(-1) as { entryId: number }).entryId : (target?.last ?? -1);
      const count = (target?.count ?? 0) + added.length;
      const bytes = (target?.logBytes ?? 0) + logBytes;
      const roll = !target || (count > 0 && (bytes + size > this.options.segmentMaxBytes || count >= this.options.segmentMaxEntries || add.entryId <= lastId));
      if (roll) {
        await flush();
        seg = await this.startSegment(ledger, add.entryId);
      } else {
        seg = target;
      }
      const rec = Buffer.allocUnsafe(INDEX_RECORD);
      writeU64(rec, 0, add.entryId);
      writeU64(rec, 8, (seg as Segment).logBytes + logBytes);
      rec.writeUInt32LE(add.payload.length, 16);
      rec.writeUInt32LE(add.crc32c >>> 0, 20);
      logBufs.push(encodeLogHeader(ledger.id, add.entryId, add.lastAddConfirmed, add.crc32c, add.payload.length), add.payload);
      indexBuf.push(rec);
      added.push({ entryId: add.entryId, length: add.payload.length, lac: add.lastAddConfirmed });
      logBytes += size;
    }
    await flush();
  }

  private async writeToSegment(
    ledger: Ledger, seg: Segment, logBufs: Buffer[], indexBufs: Buffer[], added: Array<{ entryId: number; lac: number }>, logBytes: number,
  ): Promise<void> {
    const writer = await this.writerFor(ledger, seg);
    const index = Buffer.concat(indexBufs);
    await writeFully(writer.log, this.joined(logBufs, logBytes), seg.logBytes, logBytes);
    await writeFully(writer.index, [index], seg.count * INDEX_RECORD, index.length);
    writer.dirty = true;
    writer.unsyncedBytes += logBytes + index.length;
    const writeBackBytes = this.options.writeBackBytes ?? 0;
    if (writeBackBytes > 0 && writer.unsyncedBytes >= writeBackBytes && !writer.writeBack) this.startWriteBack(writer);
    // Only now is the data readable: publish it to the in-memory index.
    const active = seg.activeIndex ?? Buffer.alloc(0);
    const need = (seg.count + added.length) * INDEX_RECORD;
    let buf = active;
    if (buf.length < need) {
      buf = Buffer.alloc(Math.max(need, Math.min(active.length * 2, this.options.segmentMaxEntries * INDEX_RECORD), 64 * INDEX_RECORD));
      active.copy(buf, 0, 0, seg.count * INDEX_RECORD);
    }
    index.copy(buf, seg.count * INDEX_RECORD);
    seg.activeIndex = buf;
    seg.count += added.length;
    seg.logBytes += logBytes;
    seg.last = Math.max(seg.last, (added.at(-1) as { entryId: number }).entryId);
    ledger.lastEntryId = Math.max(ledger.lastEntryId, seg.last);
    ledger.entryCount += added.length;
    ledger.sizeBytes += logBytes - added.length * LOG_HEADER;
    for (const a of added) if (a.lac > ledger.lac) ledger.lac = a.lac;
    ledger.lastWriteMs = this.now();
  }

  /** Small buffers joined in the reused scratch buffer (one write, no per-run allocation); large ones go as they are. */
  private joined(buffers: Buffer[], total: number): Buffer[] {
    const limit = 8 * 1024 * 1024;
    if (buffers.length <= 2 || total > limit || total / buffers.length > 8 * 1024) return buffers;
    this.scratch ??= Buffer.allocUnsafeSlow(limit);
    let at = 0;
    for (const b of buffers) at += b.copy(this.scratch, at);
    return [this.scratch.subarray(0, total)];
  }

  private async startSegment(ledger: Ledger, first: number): Promise<Segment> {
    if (ledger.active) await this.seal(ledger, ledger.active);
    const dir = this.ledgerDir(ledger.id);
    if (ledger.segments.length === 0) {
      await mkdir(dir, { recursive: true });
      this.dirtyDirs.add(this.ledgersDir);
    }
    const seg: Segment = { first, last: -1, count: 0, logBytes: 0, sealed: false, activeIndex: Buffer.alloc(0) };
    seg.writer = await this.openWriter(ledger, seg, 'w');
    this.dirtyDirs.add(dir);
    const at = ledger.segments.findIndex((s) => s.first > first);
    if (at < 0) ledger.segments.push(seg);
    else ledger.segments.splice(at, 0, seg);
    ledger.active = seg;
    return seg;
  }

  /** A sealed segment is fsync'd now, so checkpoints only ever fsync active segments. */
  private async seal(ledger: Ledger, seg: Segment): Promise<void> {
    await this.closeWriter(ledger, seg);
    seg.sealed = true;
    // A copy, so that the cache holds (and counts) exactly the index, not the growable buffer behind it.
    if (seg.activeIndex) this.cacheIndex(ledger.id, seg, Buffer.from(seg.activeIndex.subarray(0, seg.count * INDEX_RECORD)));
    seg.activeIndex = undefined;
    if (ledger.active === seg) ledger.active = undefined;
  }

  private async writerFor(ledger: Ledger, seg: Segment): Promise<Writer> {
    if (seg.writer && !seg.writer.closed) {
      this.openWriters.delete(ledger);
      this.openWriters.set(ledger, true);
      return seg.writer;
    }
    if (!seg.activeIndex) {
      seg.activeIndex = await this.loadIndex(ledger.id, seg);
      this.uncacheIndex(ledger.id, seg);
    }
    seg.writer = await this.openWriter(ledger, seg, 'r+');
    return seg.writer;
  }

  private async openWriter(ledger: Ledger, seg: Segment, flags: 'w' | 'r+'): Promise<Writer> {
    // Bounded file handles: close the least recently written ledger's files (fsync'd first).
    while (this.openWriters.size >= this.options.maxOpenWriters) {
      const [victim] = this.openWriters.keys();
      if (!victim) break;
      this.openWriters.delete(victim);
      const seg = victim.active;
      if (seg) {
        await this.closeWriter(victim, seg);
        // Its index leaves memory too; reads reload it through the cache, a write pins it again.
        seg.activeIndex = undefined;
      }
    }
    const log = await open(this.segmentPath(ledger.id, seg.first, '.log'), flags);
    const index = await open(this.segmentPath(ledger.id, seg.first, '.index'), flags).catch(async (err: unknown) => {
      await log.close();
      throw err;
    });
    this.openWriters.set(ledger, true);
    return { log, index, dirty: true, closed: false, unsyncedBytes: 0 };
  }

  /**
   * An fdatasync of the writer's files that nobody waits for. Durability never depends on it (the journal
   * holds every add until a checkpoint fsyncs the files again); it only keeps the dirty data small. A failure
   * is kept: after a failed fsync Linux may report the next one clean although pages were lost, so no
   * checkpoint may trim the journal from then on (a restart replays it).
   */
  private startWriteBack(w: Writer): void {
    w.unsyncedBytes = 0;
    const started = performance.now();
    w.writeBack = Promise.all([w.log.datasync(), w.index.datasync()]).then(
      () => this.options.onWriteBack?.(performance.now() - started),
      (err: unknown) => {
        this.writeBackError ??= err instanceof Error ? err : new Error(String(err));
        this.logger.error({ err }, 'segment write-back failed; no more adds or checkpoints until a restart replays the journal');
      },
    ).finally(() => {
      w.writeBack = undefined;
    });
  }

  /** After a failed write-back the files may miss data an fsync said nothing of: no more writes, no checkpoint. */
  private throwIfWriteBackFailed(): void {
    if (this.writeBackError) throw new BookieUnavailableError('a segment write-back failed; restart to replay the journal', this.writeBackError);
  }

  private async closeWriter(ledger: Ledger, seg: Segment): Promise<void> {
    const w = seg.writer;
    if (!w || w.closed) return;
    await w.writeBack;
    await Promise.all([w.log.datasync(), w.index.datasync()]);
    w.closed = true;
    await Promise.all([w.log.close(), w.index.close()]);
    seg.writer = undefined;
    if (ledger.active === seg) this.openWriters.delete(ledger);
  }

  markFenced(ledgerId: number): LedgerInfo {
    const ledger = this.ensureLedger(ledgerId);
    ledger.fenced = true;
    return this.info(ledger);
  }

  getLedger(ledgerId: number): LedgerInfo | undefined {
    const ledger = this.ledgers.get(ledgerId);
    return ledger && this.info(ledger);
  }

  ledgerIds(): number[] {
    return [...this.ledgers.keys()];
  }

  async findEntry(ledgerId: number, entryId: number): Promise<{ crc32c: number; length: number } | undefined> {
    const ledger = this.ledgers.get(ledgerId);
    if (!ledger) return undefined;
    const hit = await this.locate(ledger, entryId);
    if (!hit) return undefined;
    return { crc32c: hit.index.readUInt32LE(hit.at + 20), length: hit.index.readUInt32LE(hit.at + 16) };
  }

  private async locate(ledger: Ledger, entryId: number): Promise<{ seg: Segment; index: Buffer; at: number } | undefined> {
    const segs = ledger.segments;
    // Binary search: the last segment whose first id <= entryId.
    let lo = 0;
    let hi = segs.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if ((segs[mid] as Segment).first <= entryId) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    for (let s = found; s >= 0; s--) {
      const seg = segs[s] as Segment;
      if (seg.last < entryId || seg.count === 0) continue;
      const { index, count } = await this.indexOf(ledger.id, seg);
      const pos = searchIndex(index, count, entryId);
      if (pos >= 0) return { seg, index, at: pos * INDEX_RECORD };
    }
    return undefined;
  }

  async readEntries(ledgerId: number, first: number, last: number, options: ReadOptions): Promise<StoredEntry[]> {
    const ledger = this.ledgers.get(ledgerId);
    if (!ledger) throw new BookieNotFoundError(ledgerId);
    if (!(await this.locate(ledger, first))) throw new BookieNotFoundError(ledgerId, first);
    // Collect index hits from every segment overlapping [first, last], then take them in id order.
    const hits: Array<{ seg: Segment; entryId: number; offset: number; length: number; crc: number }> = [];
    for (const seg of ledger.segments) {
      if (seg.first > last || seg.last < first || seg.count === 0) continue;
      const { index, count } = await this.indexOf(ledgerId, seg);
      let pos = lowerBound(index, count, first);
      let taken = 0;
      while (pos < count && taken < options.maxEntries) {
        const at = pos * INDEX_RECORD;
        const entryId = readU64(index, at);
        if (entryId > last) break;
        hits.push({ seg, entryId, offset: readU64(index, at + 8), length: index.readUInt32LE(at + 16), crc: index.readUInt32LE(at + 20) });
        pos++;
        taken++;
      }
    }
    hits.sort((a, b) => a.entryId - b.entryId);
    const chosen: typeof hits = [];
    let bytes = 0;
    for (const h of hits) {
      if (chosen.length >= options.maxEntries || (chosen.length > 0 && bytes + h.length > options.maxBytes)) break;
      chosen.push(h);
      bytes += h.length;
    }
    // Read runs that are contiguous in one .log with a single pread.
    const out: StoredEntry[] = [];
    let i = 0;
    while (i < chosen.length) {
      const start = chosen[i] as (typeof hits)[number];
      let j = i + 1;
      let end = start.offset + LOG_HEADER + start.length;
      while (j < chosen.length) {
        const h = chosen[j] as (typeof hits)[number];
        if (h.seg !== start.seg || h.offset !== end) break;
        end = h.offset + LOG_HEADER + h.length;
        j++;
      }
      const buf = await this.readSpan(ledgerId, start.seg, start.offset, end - start.offset);
      for (let k = i; k < j; k++) {
        const h = chosen[k] as (typeof hits)[number];
        out.push(checkEntry(ledgerId, h, buf, h.offset - start.offset));
      }
      i = j;
    }
    return out;
  }

  private async readSpan(ledgerId: number, seg: Segment, offset: number, length: number): Promise<Buffer> {
    let fh: FileHandle;
    try {
      fh = await open(this.segmentPath(ledgerId, seg.first, '.log'), 'r');
    } catch (err) {
      // Deleted by GC between lookup and read.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new BookieNotFoundError(ledgerId);
      throw err;
    }
    try {
      const buf = Buffer.allocUnsafe(length);
      let got = 0;
      while (got < length) {
        const { bytesRead } = await fh.read(buf, got, length - got, offset + got);
        if (bytesRead === 0) throw new StorageCorruptError(`segment ${seg.first} of ledger ${ledgerId} is shorter than its index`);
        got += bytesRead;
      }
      return buf;
    } finally {
      await fh.close();
    }
  }

  /**
   * A segment's index and how many of its records are valid, captured together: the records below
   * `count` never change, while a later append may grow (replace) the active buffer.
   */
  private async indexOf(ledgerId: number, seg: Segment): Promise<{ index: Buffer; count: number }> {
    if (seg.activeIndex) return { index: seg.activeIndex, count: seg.count };
    const key = `${ledgerId}/${seg.first}`;
    let index = this.indexCache.get(key);
    if (index) {
      this.indexCache.delete(key);
      this.indexCache.set(key, index);
    } else {
      index = await this.loadIndex(ledgerId, seg);
      this.cacheIndex(ledgerId, seg, index);
    }
    return { index, count: index.length / INDEX_RECORD };
  }

  private async loadIndex(ledgerId: number, seg: Segment): Promise<Buffer> {
    const fh = await open(this.segmentPath(ledgerId, seg.first, '.index'), 'r');
    try {
      const buf = Buffer.alloc(seg.count * INDEX_RECORD);
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
      if (bytesRead < buf.length) throw new StorageCorruptError(`index of segment ${seg.first} of ledger ${ledgerId} is short`);
      return buf;
    } finally {
      await fh.close();
    }
  }

  private cacheIndex(ledgerId: number, seg: Segment, index: Buffer): void {
    const key = `${ledgerId}/${seg.first}`;
    const old = this.indexCache.get(key);
    if (old) this.indexCacheBytes -= old.length;
    this.indexCache.set(key, index);
    this.indexCacheBytes += index.length;
    for (const [k, v] of this.indexCache) {
      if (this.indexCacheBytes <= this.options.indexCacheBytes || this.indexCache.size <= 1) break;
      this.indexCache.delete(k);
      this.indexCacheBytes -= v.length;
    }
  }

  private uncacheIndex(ledgerId: number, seg: Segment): void {
    const key = `${ledgerId}/${seg.first}`;
    const cached = this.indexCache.get(key);
    if (cached) {
      this.indexCacheBytes -= cached.length;
      this.indexCache.delete(key);
    }
  }

  async deleteLedger(ledgerId: number): Promise<number> {
    return this.exclusive(async () => {
      const ledger = this.ledgers.get(ledgerId);
      if (!ledger) return 0;
      let freed = 0;
      for (const seg of ledger.segments) {
        freed += seg.logBytes + seg.count * INDEX_RECORD;
        const w = seg.writer;
        if (w && !w.closed) {
          w.closed = true;
          await Promise.all([w.log.close(), w.index.close()]);
        }
        this.uncacheIndex(ledgerId, seg);
      }
      this.openWriters.delete(ledger);
      this.ledgers.delete(ledgerId);
      await rm(this.ledgerDir(ledgerId), { recursive: true, force: true });
      this.dirtyDirs.add(this.ledgersDir);
      return freed;
    });
  }

  checkpoint(): Promise<JournalPosition> {
    this.checkpointing ??= this.runCheckpoint().finally(() => {
      this.checkpointing = undefined;
    });
    return this.checkpointing;
  }

  private async runCheckpoint(): Promise<JournalPosition> {
    // Phase 1, under the lock: a consistent picture of what is applied, and the files to fsync.
    const snap = await this.exclusive(async () => {
      const writers: Writer[] = [];
      const file: CheckpointFile = { version: 1, journal: this.applied, ledgers: [] };
      for (const ledger of this.ledgers.values()) {
        file.ledgers.push({
          id: ledger.id,
          fenced: ledger.fenced,
          lac: ledger.lac,
          segments: ledger.segments.map((s) => [s.first, s.last, s.count, s.logBytes]),
          active: ledger.active?.first ?? null,
        });
        const w = ledger.active?.writer;
        if (w && w.dirty && !w.closed) {
          w.dirty = false;
          writers.push(w);
        }
      }
      const dirs = [...this.dirtyDirs];
      this.dirtyDirs.clear();
      return { file, writers, dirs };
    });
    // Phase 2, outside it: adds go on while we fsync. A writer closed meanwhile was fsync'd on close.
    await Promise.all(
      snap.writers.map(async (w) => {
        try {
          await w.writeBack;
          w.unsyncedBytes = 0;
          await Promise.all([w.log.datasync(), w.index.datasync()]);
        } catch (err) {
          if (!w.closed) throw err;
        }
      }),
    );
    this.throwIfWriteBackFailed();
    for (const dir of snap.dirs) await fsyncDir(dir).catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    });
    await writeFileAtomic(join(this.options.dir, CHECKPOINT), JSON.stringify(snap.file));
    return snap.file.journal;
  }

  async close(): Promise<void> {
    await this.checkpoint();
    await this.exclusive(async () => {
      for (const ledger of this.ledgers.values()) {
        for (const seg of ledger.segments) await this.closeWriter(ledger, seg);
      }
    });
  }

  private ensureLedger(ledgerId: number): Ledger {
    let ledger = this.ledgers.get(ledgerId);
    if (!ledger) {
      ledger = { id: ledgerId, fenced: false, lac: -1, lastEntryId: -1, entryCount: 0, sizeBytes: 0, segments: [], lastWriteMs: this.now() };
      this.ledgers.set(ledgerId, ledger);
    }
    return ledger;
  }

  private info(ledger: Ledger): LedgerInfo {
    return {
      ledgerId: ledger.id, fenced: ledger.fenced, lastAddConfirmed: ledger.lac, lastEntryId: ledger.lastEntryId, entryCount: ledger.entryCount,
      sizeBytes: ledger.sizeBytes,
    };
  }

  /** Milliseconds since the ledger was last created or written here (GC spares recent ones). */
  lastWriteMs(ledgerId: number): number | undefined {
    return this.ledgers.get(ledgerId)?.lastWriteMs;
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn, fn);
    this.lock = run.catch(() => undefined);
    return run;
  }

  private ledgerDir(ledgerId: number): string {
    return join(this.ledgersDir, numberedName(ledgerId, ''));
  }

  private segmentPath(ledgerId: number, first: number, ext: string): string {
    return join(this.ledgerDir(ledgerId), numberedName(first, ext));
  }
}

function recount(ledger: Ledger): void {
  ledger.lastEntryId = -1;
  ledger.entryCount = 0;
  ledger.sizeBytes = 0;
  for (const s of ledger.segments) {
    if (s.last > ledger.lastEntryId) ledger.lastEntryId = s.last;
    ledger.entryCount += s.count;
    ledger.sizeBytes += s.logBytes - s.count * LOG_HEADER;
  }
}

/**
 * Segment writes up to this size are made synchronously on the event loop: they only copy into the
 * page cache (no fsync; the journal holds durability until a checkpoint), which costs less than the
 * two thread wake-ups of an asynchronous file operation. Larger ones go through the thread pool so
 * the event loop is never held for long (decision 0080).
 */
export const SYNC_SEGMENT_WRITE_MAX_BYTES = 1024 * 1024;

async function writeFully(fh: FileHandle, buffers: Buffer[], position: number, total: number): Promise<void> {
  let written = 0;
  let bufs = buffers;
  while (written < total) {
    const bytesWritten = total <= SYNC_SEGMENT_WRITE_MAX_BYTES ? writevSync(fh.fd, bufs, position + written) : (await fh.writev(bufs, position + written)).bytesWritten;
    if (bytesWritten <= 0) throw new Error('segment write made no progress');
    written += bytesWritten;
    if (written < total) bufs = skipBytes(buffers, written);
  }
}

function skipBytes(buffers: Buffer[], skip: number): Buffer[] {
  const out: Buffer[] = [];
  for (const b of buffers) {
    if (skip >= b.length) {
      skip -= b.length;
      continue;
    }
    out.push(skip > 0 ? b.subarray(skip) : b);
    skip = 0;
  }
  return out;
}

/** Position of entryId in an index of `count` records sorted by entry id, or -1. */
function searchIndex(index: Buffer, count: number, entryId: number): number {
  const pos = lowerBound(index, count, entryId);
  return pos < count && readU64(index, pos * INDEX_RECORD) === entryId ? pos : -1;
}

/** First position whose entry id is >= entryId. */
function lowerBound(index: Buffer, count: number, entryId: number): number {
  let lo = 0;
  let hi = count;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (readU64(index, mid * INDEX_RECORD) < entryId) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function checkEntry(ledgerId: number, hit: { entryId: number; length: number; crc: number }, buf: Buffer, at: number): StoredEntry {
  const header = decodeLogHeader(buf, at);
  const payload = buf.subarray(at + LOG_HEADER, at + LOG_HEADER + hit.length);
  if (
    header.magic !== LOG_MAGIC || header.ledgerId !== ledgerId || header.entryId !== hit.entryId || header.length !== hit.length ||
    header.crc32c !== hit.crc || crc32c(payload) !== hit.crc
  ) {
    throw new EntryChecksumError(ledgerId, hit.entryId, 'disk');
  }
  return { entryId: hit.entryId, lastAddConfirmed: header.lastAddConfirmed, payload, crc32c: hit.crc };
}
