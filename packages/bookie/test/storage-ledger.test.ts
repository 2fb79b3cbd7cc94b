// SegmentLedgerStorage on a real temp dir: segments, binary search, out-of-order ids, checkpoint and
// the cut of everything after it on reopen, bounded writers, delete.
import { crc32c } from '@node-rs/crc32';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '@strata/runtime';
import { afterEach, describe, expect, it } from 'vitest';
import { SegmentLedgerStorage, SYNC_SEGMENT_WRITE_MAX_BYTES, type StorageOp } from '../src/storage/ledger-storage.js';

const dirs: string[] = [];
const opened: SegmentLedgerStorage[] = [];
afterEach(async () => {
  for (const s of opened.splice(0)) await s.close().catch(() => undefined);
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'strata-ledgers-'));
  dirs.push(d);
  return d;
}

type StorageOpts = Partial<{ segmentMaxBytes: number; segmentMaxEntries: number; maxOpenWriters: number; writeBackBytes: number; onWriteBack: (ms: number) => void }>;

async function openStorage(dir: string, opts: StorageOpts = {}) {
  const s = new SegmentLedgerStorage({
    dir, segmentMaxBytes: opts.segmentMaxBytes ?? 1024 * 1024, segmentMaxEntries: opts.segmentMaxEntries ?? 1000, indexCacheBytes: 1024 * 1024,
    maxOpenWriters: opts.maxOpenWriters ?? 16, writeBackBytes: opts.writeBackBytes, onWriteBack: opts.onWriteBack, logger: silentLogger(),
  });
  await s.open();
  opened.push(s);
  return s;
}

const body = (l: number, e: number) => Buffer.from(`ledger ${l} entry ${e} `.repeat(3));
const add = (l: number, e: number): StorageOp => ({ type: 'add', ledgerId: l, entryId: e, lastAddConfirmed: e - 1, crc32c: crc32c(body(l, e)), payload: body(l, e) });
const pos = (offset: number) => ({ file: 1, offset });
const ids = (entries: Array<{ entryId: number }>) => entries.map((e) => e.entryId);
const all = { maxBytes: 1 << 30, maxEntries: 100_000 };

describe('SegmentLedgerStorage', () => {
  it('rolls segments and finds every entry by binary search', async () => {
    const dir = await tempDir();
    const s = await openStorage(dir, { segmentMaxEntries: 16 });
    for (let e = 0; e < 100; e += 10) await s.apply(Array.from({ length: 10 }, (_, k) => add(1, e + k)), pos(e));
    const files = await readdir(join(dir, 'ledgers', '1'.padStart(20, '0')));
    expect(files.filter((f) => f.endsWith('.log')).length).toBeGreaterThanOrEqual(6);
    expect(files).toContain(`${'16'.padStart(20, '0')}.index`);
    for (const e of [0, 15, 16, 17, 63, 99]) expect(await s.findEntry(1, e)).toEqual({ crc32c: crc32c(body(1, e)), length: body(1, e).length });
    expect(await s.findEntry(1, 100)).toBeUndefined();
    const read = await s.readEntries(1, 10, 40, all);
    expect(ids(read)).toEqual(Array.from({ length: 31 }, (_, k) => 10 + k));
    expect(read.every((r) => r.payload.equals(body(1, r.entryId)))).toBe(true);
    expect(s.getLedger(1)).toMatchObject({ lastEntryId: 99, entryCount: 100, lastAddConfirmed: 98 });
  });

  it('writes small runs synchronously and large ones through the thread pool, both readable and kept after a checkpoint', async () => {
    const dir = await tempDir();
    const s = await openStorage(dir, { segmentMaxBytes: 64 * 1024 * 1024 });
    const big = (e: number) => Buffer.alloc(SYNC_SEGMENT_WRITE_MAX_BYTES / 2 + 1, e);
    const bigAdd = (e: number): StorageOp => ({ type: 'add', ledgerId: 30, entryId: e, lastAddConfirmed: e - 1, crc32c: crc32c(big(e)), payload: big(e) });
    const small = (e: number): StorageOp => ({ ...add(30, e), ledgerId: 30 });
    // Small run (sync write), then a run above the limit (async), then small again, interleaved in one segment.
    await s.apply([small(0), small(1)], pos(1));
    await s.apply([bigAdd(2), bigAdd(3), bigAdd(4)], pos(2));
    await s.apply([small(5)], pos(3));
    const check = async (st: SegmentLedgerStorage) => {
      const read = await st.readEntries(30, 0, 5, all);
      expect(ids(read)).toEqual([0, 1, 2, 3, 4, 5]);
      for (const r of read) expect(r.payload.equals(r.entryId >= 2 && r.entryId <= 4 ? big(r.entryId) : body(30, r.entryId))).toBe(true);
    };
    await check(s);
    await s.checkpoint();
    await s.close();
    opened.splice(opened.indexOf(s), 1);
    await check(await openStorage(dir, { segmentMaxBytes: 64 * 1024 * 1024 }));
  });

  it('writes a segment back in the background every writeBackBytes; checkpoint and close wait for what is in flight', async () => {
    const kib4 = (e: number) => Buffer.alloc(4096, e);
    const run = (l: number, first: number): StorageOp[] =>
      Array.from({ length: 5 }, (_, k) => ({ type: 'add', ledgerId: l, entryId: first + k, lastAddConfirmed: first + k - 1, crc32c: crc32c(kib4(first + k)), payload: kib4(first + k) }));
    const writeBacks = async (writeBackBytes: number) => {
      const dir = await tempDir();
      const done: number[] = [];
      const s = await openStorage(dir, { writeBackBytes, onWriteBack: (ms) => done.push(ms) });
      for (let r = 0; r < 20; r++) await s.apply(run(40, r * 5), pos(r)); // 400 KiB in runs of 20 KiB
      await s.close(); // with a write-back possibly still running
      opened.splice(opened.indexOf(s), 1);
      const again = await openStorage(dir);
      const read = await again.readEntries(40, 0, 99, all);
      expect(read.every((e) => e.payload.equals(kib4(e.entryId)))).toBe(true);
      expect(ids(read)).toHaveLength(100);
      return done;
    };
    // At most one in flight per writer, so between 400/64 and 1 of them; each one a real fdatasync.
    const every64k = await writeBacks(64 * 1024);
    expect(every64k.length).toBeGreaterThanOrEqual(1);
    expect(every64k.length).toBeLessThanOrEqual(7);
    expect(every64k.every((ms) => ms >= 0)).toBe(true);
    expect(await writeBacks(0)).toEqual([]);
  });

  it('takes entries out of order and below a segment\'s last id, and reads them in id order', async () => {
    const dir = await tempDir();
    const s = await openStorage(dir);
    await s.apply([add(2, 0), add(2, 5), add(2, 9)], pos(1));
    await s.apply([add(2, 3), add(2, 7)], pos(2));
    await s.apply([add(2, 5)], pos(3)); // a replayed duplicate: no-op
    expect(ids(await s.readEntries(2, 0, 9, all))).toEqual([0, 3, 5, 7, 9]);
    expect(ids(await s.readEntries(2, 3, 8, all))).toEqual([3, 5, 7]);
    expect(s.getLedger(2)?.entryCount).toBe(5);
    await expect(s.readEntries(2, 1, 9, all)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(s.readEntries(3, 0, 0, all)).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('after a checkpoint, reopening keeps what was checkpointed and cuts what came later', async () => {
    const dir = await tempDir();
    const s = await openStorage(dir, { segmentMaxEntries: 8 });
    await s.apply(Array.from({ length: 20 }, (_, e) => add(3, e)), pos(100));
    s.markFenced(4);
    await s.apply([{ type: 'fence', ledgerId: 4 }], pos(110));
    expect(await s.checkpoint()).toEqual(pos(110));
    // Written after the checkpoint (and not fsync'd): a crash may leave it or not; reopen cuts it.
    await s.apply(Array.from({ length: 12 }, (_, e) => add(3, 20 + e)), pos(200));
    await s.apply([add(5, 0)], pos(210));
    opened.splice(opened.indexOf(s), 1); // simulate a crash: no close()
    const again = await openStorage(dir, { segmentMaxEntries: 8 });
    expect(again.getLedger(3)).toMatchObject({ lastEntryId: 19, entryCount: 20 });
    expect(again.getLedger(4)).toMatchObject({ fenced: true, entryCount: 0 });
    expect(again.getLedger(5)).toBeUndefined();
    expect(ids(await again.readEntries(3, 0, 100, all))).toEqual(Array.from({ length: 20 }, (_, e) => e));
    // Replaying the journal after the checkpoint writes them again.
    await again.apply(Array.from({ length: 12 }, (_, e) => add(3, 20 + e)), pos(200));
    expect(ids(await again.readEntries(3, 0, 100, all))).toHaveLength(32);
    const segFiles = await readdir(join(dir, 'ledgers', '3'.padStart(20, '0')));
    expect(segFiles.filter((f) => f.endsWith('.log'))).toHaveLength(4);
  });

  it('closes the least recently written ledger\'s files past maxOpenWriters and still serves and appends', async () => {
    const dir = await tempDir();
    const s = await openStorage(dir, { maxOpenWriters: 2 });
    for (let round = 0; round < 3; round++) {
      for (const l of [10, 11, 12, 13]) await s.apply([add(l, round)], pos(round * 10 + l));
    }
    for (const l of [10, 11, 12, 13]) expect(ids(await s.readEntries(l, 0, 2, all))).toEqual([0, 1, 2]);
  });

  it('deletes a ledger\'s files and forgets it, also across reopen', async () => {
    const dir = await tempDir();
    const s = await openStorage(dir);
    await s.apply([add(20, 0), add(20, 1), add(21, 0)], pos(5));
    expect(await s.deleteLedger(20)).toBeGreaterThan(0);
    expect(s.getLedger(20)).toBeUndefined();
    await expect(stat(join(dir, 'ledgers', '20'.padStart(20, '0')))).rejects.toMatchObject({ code: 'ENOENT' });
    await s.close();
    opened.splice(opened.indexOf(s), 1);
    const again = await openStorage(dir);
    expect(again.ledgerIds()).toEqual([21]);
  });

  it('cuts a read at maxBytes and maxEntries but returns at least one entry', async () => {
    const dir = await tempDir();
    const s = await openStorage(dir);
    await s.apply(Array.from({ length: 10 }, (_, e) => add(30, e)), pos(1));
    const size = body(30, 0).length;
    expect(ids(await s.readEntries(30, 0, 9, { maxBytes: size * 3, maxEntries: 100 }))).toEqual([0, 1, 2]);
    expect(ids(await s.readEntries(30, 0, 9, { maxBytes: 1, maxEntries: 100 }))).toEqual([0]);
    expect(ids(await s.readEntries(30, 0, 9, { maxBytes: 1 << 20, maxEntries: 4 }))).toEqual([0, 1, 2, 3]);
  });
});
