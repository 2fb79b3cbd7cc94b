// A real bookie process over real gRPC: the add/read/fence contract and typed errors for bad input.
import { crc32c } from '@node-rs/crc32';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BookieProcess } from '../src/testing/bookie-process.js';
import { RawBookieClient } from './fixtures/raw-bookie-client.js';

let bookie: BookieProcess;
let client: RawBookieClient;
let nextLedger = 1000;
const ledger = () => nextLedger++;
const payload = (l: number, e: number, size = 100) => Buffer.alloc(size, `${l}:${e}|`);

beforeAll(async () => {
  bookie = await BookieProcess.start({ args: ['--max-entry-bytes', String(64 * 1024)] });
  client = new RawBookieClient(bookie.address);
});

afterAll(async () => {
  client?.close();
  await bookie?.destroy();
});

describe('bookie server', () => {
  it('stores pipelined adds, answers in order, and reads them back with the LAC', async () => {
    const l = ledger();
    const stream = client.openStream();
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, e) => stream.add({ ledgerId: l, entryId: e, payload: payload(l, e), lastAddConfirmed: e - 1 })),
    );
    expect(results.map((r) => r.errorCode)).toEqual(Array(200).fill(''));
    expect(results.map((r) => r.entryId)).toEqual(Array.from({ length: 200 }, (_, e) => e));
    stream.end();
    const read = await client.read(l, 0, 199);
    expect(read.entries.map((e) => e.entryId)).toEqual(Array.from({ length: 200 }, (_, e) => e));
    for (const e of read.entries) {
      expect(e.payload.equals(payload(l, e.entryId))).toBe(true);
      expect(e.crc32c).toBe(crc32c(e.payload));
    }
    expect(read.lastAddConfirmed).toBe(198);
    expect(await client.lac(l)).toBe(198);
    const state = await client.state(l);
    expect(state).toMatchObject({ ledgerId: l, fenced: false, lastEntryId: 199, entryCount: 200, sizeBytes: 200 * 100 });
  });

  it('cuts a range read at maxBytes but returns at least one entry', async () => {
    const l = ledger();
    const stream = client.openStream();
    await stream.addMany(Array.from({ length: 10 }, (_, e) => ({ ledgerId: l, entryId: e, payload: payload(l, e, 1000) })));
    stream.end();
    expect((await client.read(l, 0, 9, 2500)).entries.map((e) => e.entryId)).toEqual([0, 1]);
    expect((await client.read(l, 3, 9, 10)).entries.map((e) => e.entryId)).toEqual([3]);
  });

  it('accepts gaps in entry ids (striping) and reads what exists from the first id', async () => {
    const l = ledger();
    const stream = client.openStream();
    const r = await stream.addMany([0, 2, 4, 6].map((e) => ({ ledgerId: l, entryId: e, payload: payload(l, e) })));
    expect(r.every((x) => x.errorCode === '')).toBe(true);
    // Out of order (re-replication may fill a gap later).
    expect((await stream.add({ ledgerId: l, entryId: 3, payload: payload(l, 3) })).errorCode).toBe('');
    stream.end();
    expect((await client.read(l, 0, 6)).entries.map((e) => e.entryId)).toEqual([0, 2, 3, 4, 6]);
    await expect(client.read(l, 1, 6)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(client.read(l, 7, 7)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect((await client.state(l)).lastEntryId).toBe(6);
  });

  it('treats a duplicate add with the same payload as done, and a different payload as a conflict', async () => {
    const l = ledger();
    const stream = client.openStream();
    const [a, b] = await stream.addMany([
      { ledgerId: l, entryId: 0, payload: payload(l, 0) },
      { ledgerId: l, entryId: 0, payload: payload(l, 0) },
    ]);
    expect([a?.errorCode, b?.errorCode]).toEqual(['', '']);
    expect((await stream.add({ ledgerId: l, entryId: 0, payload: payload(l, 0) })).errorCode).toBe('');
    expect((await stream.add({ ledgerId: l, entryId: 0, payload: payload(l, 99) })).errorCode).toBe('ALREADY_EXISTS');
    stream.end();
    expect((await client.state(l)).entryCount).toBe(1);
  });

  it('refuses plain adds to a fenced ledger but takes recovery adds', async () => {
    const l = ledger();
    const stream = client.openStream();
    await stream.addMany([0, 1, 2].map((e) => ({ ledgerId: l, entryId: e, payload: payload(l, e), lastAddConfirmed: e - 1 })));
    const fenced = await client.fence(l);
    expect(fenced).toMatchObject({ fenced: true, lastEntryId: 2, lastAddConfirmed: 1 });
    expect(await client.fence(l)).toMatchObject({ fenced: true, lastEntryId: 2 });
    expect((await stream.add({ ledgerId: l, entryId: 3, payload: payload(l, 3) })).errorCode).toBe('FENCED');
    expect((await stream.add({ ledgerId: l, entryId: 3, payload: payload(l, 3), recovery: true })).errorCode).toBe('');
    stream.end();
    // Fencing a ledger this bookie never saw creates it, fenced and empty.
    const fresh = ledger();
    expect(await client.fence(fresh)).toMatchObject({ fenced: true, lastEntryId: -1, entryCount: 0 });
  });

  it('gives typed errors for bad input and keeps serving', async () => {
    const l = ledger();
    const stream = client.openStream();
    const good = payload(l, 0);
    const results = await stream.addMany([
      { ledgerId: l, entryId: 0, payload: good, crc32c: (crc32c(good) + 1) >>> 0 },
      { ledgerId: l, entryId: -5, payload: good },
      { ledgerId: l, entryId: 1, payload: Buffer.alloc(64 * 1024 + 1) },
      { ledgerId: l, entryId: 2, payload: good },
    ]);
    expect(results.map((r) => r.errorCode)).toEqual(['CHECKSUM_MISMATCH', 'INVALID_ARGUMENT', 'TOO_LARGE', '']);
    stream.end();
    await expect(client.read(424242, 0, 0)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(client.state(424242)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(client.lac(424242)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(client.read(l, 5, 2)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    // Nothing stored was harmed, and the process is still up.
    expect((await client.read(l, 2, 2)).entries[0]?.payload.equals(good)).toBe(true);
    expect(bookie.running).toBe(true);
    expect((await client.info()).bookieId).toBe(bookie.bookieId);
  });

  it('answers results in order per ledger when several ledgers share a stream', async () => {
    const ls = [ledger(), ledger(), ledger()];
    const stream = client.openStream();
    const adds = [];
    for (let e = 0; e < 100; e++) for (const l of ls) adds.push({ ledgerId: l, entryId: e, payload: payload(l, e, 50 + e) });
    const results = await stream.addMany(adds);
    expect(results.every((r) => r.errorCode === '')).toBe(true);
    expect(stream.arrivals).toEqual([...stream.arrivals].sort((a, b) => a - b));
    stream.end();
    for (const l of ls) expect((await client.state(l)).entryCount).toBe(100);
  });
});
