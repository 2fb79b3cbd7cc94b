// FileJournal on a real temp dir: group commit, ordering, replay, torn-tail cut, trim.
import { crc32c } from '@node-rs/crc32';
import { constants as fsConstants } from 'node:fs';
import { appendFile, mkdtemp, readdir, readFile, readlink, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '@strata/runtime';
import { afterEach, describe, expect, it } from 'vitest';
import type { JournalRecord } from '../src/storage/format.js';
import { FileJournal, JOURNAL_START, type JournalPosition } from '../src/storage/journal.js';

const dirs: string[] = [];
const journals: FileJournal[] = [];
afterEach(async () => {
  for (const j of journals.splice(0)) await j.close().catch(() => undefined);
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'strata-journal-'));
  dirs.push(d);
  return d;
}

function makeJournal(dir: string, opts: Partial<{ groupWaitMs: number; maxGroupBytes: number; maxFileBytes: number }> = {}) {
  const syncs: number[] = [];
  const j = new FileJournal({
    dir, groupWaitMs: opts.groupWaitMs ?? 1, maxGroupBytes: opts.maxGroupBytes ?? 4 * 1024 * 1024, maxFileBytes: opts.maxFileBytes ?? 64 * 1024 * 1024,
    logger: silentLogger(), onSync: (records) => syncs.push(records),
  });
  journals.push(j);
  return { j, syncs };
}

const add = (e: number, size = 100): JournalRecord => {
  const payload = Buffer.alloc(size, e % 256);
  return { type: 'add', ledgerId: 5, entryId: e, lastAddConfirmed: e - 1, crc32c: crc32c(payload), payload };
};

async function replayAll(dir: string, from: JournalPosition = JOURNAL_START) {
  const { j } = makeJournal(dir);
  const records: JournalRecord[] = [];
  const stats = await j.open(from, (r) => {
    records.push(r);
  });
  await j.close();
  return { records, stats };
}

/** The open flags of this process's descriptors on files under `dir` (Linux /proc). */
async function openFlags(dir: string): Promise<number[]> {
  const flags: number[] = [];
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    if (!target.startsWith(dir)) continue;
    const info = await readFile(`/proc/self/fdinfo/${fd}`, 'utf8').catch(() => '');
    const m = /^flags:\s*([0-7]+)/m.exec(info);
    if (m) flags.push(parseInt(m[1]!, 8));
  }
  return flags;
}

describe('FileJournal', () => {
  it.runIf(process.platform === 'linux')('writes its files with O_DSYNC, so a completed write is durable without a separate fdatasync', async () => {
    const dir = await tempDir();
    const { j } = makeJournal(dir, { maxFileBytes: 1024 });
    await j.open(JOURNAL_START, () => undefined);
    await j.append(add(0, 2000)); // past maxFileBytes: the journal rotates to a new file
    await j.append(add(1));
    const flags = await openFlags(dir);
    expect(flags).toHaveLength(1);
    expect(flags[0]! & fsConstants.O_DSYNC).toBe(fsConstants.O_DSYNC);
    expect(flags[0]! & fsConstants.O_APPEND).toBe(fsConstants.O_APPEND);
  });

  it('covers a burst of appends with few fdatasyncs and resolves them in order', async () => {
    const dir = await tempDir();
    const { j, syncs } = makeJournal(dir, { groupWaitMs: 2 });
    await j.open(JOURNAL_START, () => undefined);
    const order: number[] = [];
    await Promise.all(Array.from({ length: 500 }, (_, e) => j.append(add(e)).then(() => order.push(e))));
    expect(order).toEqual(Array.from({ length: 500 }, (_, e) => e));
    expect(syncs.reduce((a, b) => a + b, 0)).toBe(500);
    // Everything was appended in one tick: a handful of groups, not one fdatasync per record.
    expect(syncs.length).toBeLessThan(10);
  });

  it('bounds a group by bytes (a single larger record goes alone)', async () => {
    const dir = await tempDir();
    const { j, syncs } = makeJournal(dir, { maxGroupBytes: 4096 });
    await j.open(JOURNAL_START, () => undefined);
    await Promise.all([j.append(add(0, 10_000)), ...Array.from({ length: 20 }, (_, e) => j.append(add(e + 1, 1000)))]);
    expect(syncs[0]).toBe(1);
    expect(Math.max(...syncs.slice(1))).toBeLessThanOrEqual(4);
    await j.close();
    // Both write paths (the oversized record alone, the groups joined) replay to the same records.
    const { records } = await replayAll(dir);
    expect(records.map((r) => (r.type === 'add' ? [r.entryId, r.payload.length] : []))).toEqual([
      [0, 10_000], ...Array.from({ length: 20 }, (_, e) => [e + 1, 1000]),
    ]);
  });

  it('replays records in order from a position, across files', async () => {
    const dir = await tempDir();
    const { j } = makeJournal(dir, { maxFileBytes: 2048 });
    await j.open(JOURNAL_START, () => undefined);
    const positions: JournalPosition[] = [];
    for (let e = 0; e < 40; e++) positions.push(await j.append(add(e)));
    await j.close();
    expect(new Set(positions.map((p) => p.file)).size).toBeGreaterThan(1);
    const all = await replayAll(dir);
    expect(all.records.map((r) => (r.type === 'add' ? r.entryId : -1))).toEqual(Array.from({ length: 40 }, (_, e) => e));
    const tail = await replayAll(dir, positions[24]);
    expect(tail.records.map((r) => (r.type === 'add' ? r.entryId : -1))).toEqual(Array.from({ length: 15 }, (_, e) => e + 25));
    const first = all.records[7];
    expect(first?.type === 'add' && first.payload.equals(Buffer.alloc(100, 7))).toBe(true);
  });

  it('writes groups of large records as they are and replays them intact', async () => {
    const dir = await tempDir();
    const { j, syncs } = makeJournal(dir, { groupWaitMs: 5 });
    await j.open(JOURNAL_START, () => undefined);
    await Promise.all([0, 1, 2, 3].map((e) => j.append(add(e, 40_000 + e))));
    expect(syncs).toEqual([4]);
    await j.close();
    const { records } = await replayAll(dir);
    expect(records.map((r) => (r.type === 'add' && r.payload.equals(Buffer.alloc(40_000 + r.entryId, r.entryId)) ? r.entryId : -1))).toEqual([0, 1, 2, 3]);
  });

  it('cuts a torn tail and keeps the records before it', async () => {
    const dir = await tempDir();
    const { j } = makeJournal(dir);
    await j.open(JOURNAL_START, () => undefined);
    let end: JournalPosition = JOURNAL_START;
    for (let e = 0; e < 10; e++) end = await j.append(add(e));
    await j.close();
    const file = join(dir, (await readdir(dir)).sort().at(-1) as string);
    await appendFile(file, Buffer.from([200, 0, 0, 0, 1, 2, 3, 4, 1, 5]));
    const { records, stats } = await replayAll(dir);
    expect(records).toHaveLength(10);
    expect(stats.cut).toHaveLength(1);
    expect((await stat(file)).size).toBe(end.offset);
  });

  it('cuts at a record whose payload does not match its CRC32C', async () => {
    const dir = await tempDir();
    const { j } = makeJournal(dir);
    await j.open(JOURNAL_START, () => undefined);
    const good = await j.append(add(0));
    const bad = add(1);
    if (bad.type === 'add') bad.crc32c = (bad.crc32c + 1) >>> 0;
    await j.append(bad);
    await j.append(add(2));
    await j.close();
    const { records, stats } = await replayAll(dir);
    expect(records).toHaveLength(1);
    expect(stats.cut[0]).toMatchObject({ offset: good.offset, reason: 'payload CRC32C mismatch' });
  });

  it('trims only whole files before the position, never the open one', async () => {
    const dir = await tempDir();
    const { j } = makeJournal(dir, { maxFileBytes: 1024 });
    await j.open(JOURNAL_START, () => undefined);
    let last: JournalPosition = JOURNAL_START;
    for (let e = 0; e < 30; e++) last = await j.append(add(e));
    const before = (await readdir(dir)).length;
    const removed = await j.trim(last);
    expect(removed).toBeGreaterThan(0);
    expect((await readdir(dir)).length).toBe(before - removed);
    // Appends still work after trimming.
    await j.append(add(30));
  });

  it('rejects appends after close', async () => {
    const dir = await tempDir();
    const { j } = makeJournal(dir);
    await j.open(JOURNAL_START, () => undefined);
    await j.close();
    await expect(j.append(add(0))).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });
});
