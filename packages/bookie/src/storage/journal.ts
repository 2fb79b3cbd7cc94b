import { constants as fsConstants } from 'node:fs';
import { mkdir, open, readdir, rm, truncate, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '@strata/runtime';
import { BookieUnavailableError } from '../errors.js';
import {
  decodeJournalRecord, encodeJournalRecord, encodeJournalRecordInto, journalRecordBytes, numberedName, parseNumberedName, type JournalRecord,
} from './format.js';
import { fsyncDir } from './fsutil.js';

/** A place in the journal: the file's sequence number and a byte offset in it. */
export interface JournalPosition {
  file: number;
  offset: number;
}

export const JOURNAL_START: JournalPosition = { file: 0, offset: 0 };

export function comparePositions(a: JournalPosition, b: JournalPosition): number {
  return a.file !== b.file ? a.file - b.file : a.offset - b.offset;
}

/**
 * The bookie's write-ahead log. Every add and fence is written here first; the ledger storage is
 * written after, and may lose anything newer than its last checkpoint in a crash.
 *
 * Invariants:
 * - `append` resolves only after the record is on disk: written by a completed O_DSYNC write (data and
 *   the metadata to read it synced, as write + fdatasync would). Records
 *   are durable in the order they were appended, and their promises resolve in that order.
 * - Group commit: one synchronous write covers every record appended within `groupWaitMs` of the first one
 *   waiting (or up to `maxGroupBytes`, whichever comes first; a single larger record goes alone).
 * - Each record carries a CRC32C. `replay` yields records in order from a position and stops a file
 *   at its first torn or corrupt record, truncating it there: such a tail was never acknowledged
 *   (its write had not completed), so cutting it loses nothing that was promised.
 * - `trim(position)` deletes only whole files that end before `position`; the open file is never deleted.
 * - After a write or fdatasync error the journal is failed for good: every pending and later append
 *   rejects (the state of the file after a failed fsync is unknown), and the owner must restart.
 * - The caller bounds what is in flight (the bookie's in-flight limits); the journal queues what it is given.
 */
export interface Journal {
  /** Replays durable records from `from`, then opens a new file for appends. Call once, before append. */
  open(from: JournalPosition, onRecord: (record: JournalRecord, end: JournalPosition) => Promise<void> | void): Promise<ReplayStats>;
  append(record: JournalRecord): Promise<JournalPosition>;
  trim(upTo: JournalPosition): Promise<number>;
  /** Flushes what is queued, then closes. Appends after close reject. */
  close(): Promise<void>;
  /** Where the next record will go (the end of everything appended so far). */
  readonly position: JournalPosition;
}

export interface ReplayStats {
  records: number;
  bytes: number;
  /** Files whose tail was cut (torn or corrupt), with the offset of the cut. */
  cut: Array<{ file: number; offset: number; reason: string }>;
}

export interface FileJournalOptions {
  dir: string;
  groupWaitMs: number;
  maxGroupBytes: number;
  /** Start a new file once the current one is at least this big. */
  maxFileBytes: number;
  logger: Logger;
  /** Called after each group commit (for metrics). */
  onSync?: (records: number, bytes: number, durationMs: number) => void;
  /** Called once when the journal fails for good (the owner should stop serving adds and restart). */
  onFailure?: (err: Error) => void;
}

interface Pending {
  record: JournalRecord;
  bytes: number;
  resolve: (position: JournalPosition) => void;
  reject: (err: unknown) => void;
}

const EXT = '.jnl';
/**
 * Journal files are written with O_DSYNC: a write returns once its data (and the metadata needed to
 * read it back) is on stable storage, i.e. write + fdatasync in one system call. In Node each file
 * operation is a round trip through the libuv thread pool (two thread wake-ups), so this halves the
 * round trips of a group commit (decision 0080).
 */
const APPEND_DSYNC = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_APPEND | fsConstants.O_DSYNC;
const READ_CHUNK = 8 * 1024 * 1024;

export class FileJournal implements Journal {
  private readonly logger: Logger;
  private fh: FileHandle | undefined;
  private fileSeq = 0;
  private fileBytes = 0;
  private queue: Pending[] = [];
  private queuedBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private failure: Error | undefined;
  private closed = false;
  /**
   * One reused buffer that a group of records is copied into before its write: a fresh multi-MiB
   * buffer per group would be external memory that drives V8's GC. Only one flush runs at a time.
   */
  private scratch: Buffer | undefined;

  constructor(private readonly options: FileJournalOptions) {
    this.logger = options.logger.child({ component: 'journal' });
  }

  get position(): JournalPosition {
    return { file: this.fileSeq, offset: this.fileBytes };
  }

  async open(from: JournalPosition, onRecord: (record: JournalRecord, end: JournalPosition) => Promise<void> | void): Promise<ReplayStats> {
    await mkdir(this.options.dir, { recursive: true });
    const files = await this.listFiles();
    const stats: ReplayStats = { records: 0, bytes: 0, cut: [] };
    for (const seq of files) {
      if (seq < from.file) continue;
      await this.replayFile(seq, seq === from.file ? from.offset : 0, onRecord, stats);
    }
    // Appends always go to a fresh file, so a cut tail is never followed by new records in one file.
    this.fileSeq = Math.max(from.file, files.at(-1) ?? 0) + 1;
    this.fh = await open(join(this.options.dir, numberedName(this.fileSeq, EXT)), APPEND_DSYNC);
    this.fileBytes = 0;
    await fsyncDir(this.options.dir);
    this.logger.info({ file: this.fileSeq, replayed: stats.records, bytes: stats.bytes, cut: stats.cut.length }, 'journal open');
    return stats;
  }

  append(record: JournalRecord): Promise<JournalPosition> {
    if (this.failure) return Promise.reject(new BookieUnavailableError('journal failed; restart the bookie', this.failure));
    if (this.closed || !this.fh) return Promise.reject(new BookieUnavailableError('journal is not open'));
    return new Promise<JournalPosition>((resolve, reject) => {
      const bytes = journalRecordBytes(record);
      this.queue.push({ record, bytes, resolve, reject });
      this.queuedBytes += bytes;
      this.schedule();
    });
  }

  async trim(upTo: JournalPosition): Promise<number> {
    let removed = 0;
    for (const seq of await this.listFiles()) {
      if (seq >= upTo.file || seq >= this.fileSeq) break;
      await rm(join(this.options.dir, numberedName(seq, EXT)), { force: true });
      removed++;
    }
    if (removed > 0) this.logger.debug({ removed, upToFile: upTo.file }, 'journal trimmed');
    return removed;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    while (this.flushing || (this.queue.length > 0 && !this.failure)) {
      await (this.flushing ?? this.flush());
    }
    for (const p of this.queue.splice(0)) p.reject(new BookieUnavailableError('journal closed'));
    await this.fh?.close();
    this.fh = undefined;
  }

  private schedule(): void {
    if (this.flushing || this.queue.length === 0) return;
    if (this.queuedBytes >= this.options.maxGroupBytes || this.closed) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
      void this.flush();
      return;
    }
    if (this.timer) return;
    const fire = () => {
      this.timer = undefined;
      void this.flush();
    };
    if (this.options.groupWaitMs <= 0) {
      this.timer = setTimeout(fire, 0);
    } else {
      this.timer = setTimeout(fire, this.options.groupWaitMs);
    }
  }

  /** Writes one group durably (O_DSYNC); never rejects (errors fail the journal and its pending appends). */
  private flush(): Promise<void> {
    if (this.flushing) return this.flushing;
    const run = async () => {
      const group: Pending[] = [];
      let bytes = 0;
      while (this.queue.length > 0) {
        const next = this.queue[0] as Pending;
        if (group.length > 0 && bytes + next.bytes > this.options.maxGroupBytes) break;
        group.push(next);
        bytes += next.bytes;
        this.queue.shift();
      }
      this.queuedBytes -= bytes;
      if (group.length === 0) return;
      const fh = this.fh;
      try {
        if (!fh) throw new Error('journal file is not open');
        const started = performance.now();
        let buffers: Buffer[];
        // Small records: encode into one buffer (cheaper than writev bookkeeping); large ones: writev
        // the payloads where they are (a copy of each would cost more than the iovec).
        if (bytes <= this.options.maxGroupBytes && bytes / group.length < 16 * 1024) {
          // Encode straight into the reused buffer: no per-record header allocation, one write.
          this.scratch ??= Buffer.allocUnsafeSlow(this.options.maxGroupBytes);
          let at = 0;
          for (const p of group) at += encodeJournalRecordInto(p.record, this.scratch, at);
          buffers = [this.scratch.subarray(0, bytes)];
        } else {
          buffers = group.flatMap((p) => encodeJournalRecord(p.record));
        }
        let written = 0;
        // writev may write less than asked; loop until the whole group is in the file. The file is
        // O_DSYNC, so each completed write is durable (no separate fdatasync).
        while (written < bytes) {
          const { bytesWritten } = await fh.writev(sliceBuffers(buffers, written));
          if (bytesWritten <= 0) throw new Error('journal write made no progress');
          written += bytesWritten;
        }
        this.options.onSync?.(group.length, bytes, performance.now() - started);
      } catch (err) {
        this.failure = err instanceof Error ? err : new Error(String(err));
        this.logger.error({ err }, 'journal write or fdatasync failed; the journal is failed until restart');
        this.options.onFailure?.(this.failure);
        const error = new BookieUnavailableError('journal write failed', err);
        for (const p of group) p.reject(error);
        for (const p of this.queue.splice(0)) p.reject(error);
        this.queuedBytes = 0;
        return;
      }
      let offset = this.fileBytes;
      const file = this.fileSeq;
      for (const p of group) {
        offset += p.bytes;
        p.resolve({ file, offset });
      }
      this.fileBytes = offset;
      if (this.fileBytes >= this.options.maxFileBytes) await this.rotate();
    };
    this.flushing = run().finally(() => {
      this.flushing = undefined;
      // Whatever arrived during the synchronous write has already waited: commit it at once.
      if (this.queue.length > 0 && !this.failure) {
        if (this.timer) clearTimeout(this.timer);
        this.timer = undefined;
        void this.flush();
      }
    });
    return this.flushing;
  }

  private async rotate(): Promise<void> {
    try {
      const next = this.fileSeq + 1;
      const fh = await open(join(this.options.dir, numberedName(next, EXT)), APPEND_DSYNC);
      await fsyncDir(this.options.dir);
      const old = this.fh;
      this.fh = fh;
      this.fileSeq = next;
      this.fileBytes = 0;
      await old?.close();
      this.logger.debug({ file: next }, 'journal rotated');
    } catch (err) {
      this.failure = err instanceof Error ? err : new Error(String(err));
      this.logger.error({ err }, 'journal rotation failed; the journal is failed until restart');
      this.options.onFailure?.(this.failure);
    }
  }

  private async listFiles(): Promise<number[]> {
    const names = await readdir(this.options.dir);
    return names
      .map((n) => parseNumberedName(n, EXT))
      .filter((n): n is number => n !== undefined)
      .sort((a, b) => a - b);
  }

  private async replayFile(
    seq: number,
    startOffset: number,
    onRecord: (record: JournalRecord, end: JournalPosition) => Promise<void> | void,
    stats: ReplayStats,
  ): Promise<void> {
    const path = join(this.options.dir, numberedName(seq, EXT));
    const fh = await open(path, 'r');
    let cutAt: { offset: number; reason: string } | undefined;
    try {
      const size = (await fh.stat()).size;
      let fileOffset = startOffset;
      let carry = Buffer.alloc(0);
      let eof = fileOffset >= size;
      while (!eof || carry.length > 0) {
        let buf = carry;
        if (!eof) {
          const want = Math.min(READ_CHUNK, size - fileOffset - carry.length);
          const chunk = Buffer.allocUnsafe(want);
          const { bytesRead } = await fh.read(chunk, 0, want, fileOffset + carry.length);
          buf = carry.length > 0 ? Buffer.concat([carry, chunk.subarray(0, bytesRead)]) : chunk.subarray(0, bytesRead);
          eof = fileOffset + buf.length >= size || bytesRead === 0;
        }
        let at = 0;
        for (;;) {
          const decoded = decodeJournalRecord(buf, at);
          if (decoded.kind === 'record') {
            at += decoded.bytes;
            stats.records++;
            stats.bytes += decoded.bytes;
            await onRecord(decoded.record, { file: seq, offset: fileOffset + at });
            continue;
          }
          if (decoded.kind === 'corrupt') cutAt = { offset: fileOffset + at, reason: decoded.reason };
          else if (eof) cutAt = buf.length - at > 0 ? { offset: fileOffset + at, reason: 'torn record at end of file' } : undefined;
          break;
        }
        if (cutAt) break;
        fileOffset += at;
        carry = buf.subarray(at);
        if (eof) break;
        // A record longer than the carry plus one chunk: read it whole next time round.
        if (carry.length >= READ_CHUNK) carry = Buffer.from(carry);
      }
    } finally {
      await fh.close();
    }
    if (cutAt) {
      this.logger.warn({ file: seq, offset: cutAt.offset, reason: cutAt.reason }, 'journal tail cut');
      await truncate(path, cutAt.offset);
      stats.cut.push({ file: seq, ...cutAt });
    }
  }
}

function sliceBuffers(buffers: Buffer[], skip: number): Buffer[] {
  if (skip === 0) return buffers;
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
