// Real bookie processes on real disks, killed with SIGKILL: everything acknowledged survives, a torn or
// corrupt journal tail is cut (never served), and fencing persists across restarts.
import { crc32c } from '@node-rs/crc32';
import { appendFile, open, readdir, readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BookieProcess } from '../src/testing/bookie-process.js';
import { RawBookieClient } from './fixtures/raw-bookie-client.js';

const started: BookieProcess[] = [];
const clients: RawBookieClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const b of started.splice(0).reverse()) await b.destroy();
});

async function startBookie(args: string[] = []): Promise<BookieProcess> {
  const b = await BookieProcess.start({ args });
  started.push(b);
  return b;
}

function connect(b: BookieProcess): RawBookieClient {
  const c = new RawBookieClient(b.address);
  clients.push(c);
  return c;
}

/** Deterministic payload of (ledger, entry), 200..4200 bytes. */
function payload(l: number, e: number): Buffer {
  const size = 200 + ((l * 7919 + e * 104729) % 4000);
  const buf = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4) buf.writeUInt32LE((l * 31 + e * 17 + i) >>> 0, Math.min(i, size - 4));
  return buf;
}

async function expectAllReadable(c: RawBookieClient, l: number, acked: Set<number>): Promise<void> {
  const ids = [...acked].sort((a, b) => a - b);
  let i = 0;
  while (i < ids.length) {
    const first = ids[i] as number;
    const res = await c.read(l, first, ids.at(-1) as number, 1024 * 1024);
    expect(res.entries.length).toBeGreaterThan(0);
    for (const e of res.entries) {
      expect(e.payload.equals(payload(l, e.entryId))).toBe(true);
      expect(e.crc32c).toBe(crc32c(e.payload));
    }
    const got = new Set(res.entries.map((e) => e.entryId));
    while (i < ids.length && (ids[i] as number) <= (res.entries.at(-1)?.entryId ?? -1)) {
      expect(got.has(ids[i] as number), `entry ${ids[i]} of ledger ${l} was acknowledged but is missing`).toBe(true);
      i++;
    }
  }
}

describe('crash safety', () => {
  it('serves every acknowledged add after kill -9 mid-stream, round after round', async () => {
    // Small segments and frequent checkpoints, so kills land during rolls, checkpoints and journal trims.
    const bookie = await startBookie(['--checkpoint-interval-ms', '150', '--segment-max-bytes', String(1024 * 1024), '--journal-max-file-bytes', String(2 * 1024 * 1024)]);
    const ledgers = [7001, 7002, 7003];
    const acked = new Map(ledgers.map((l) => [l, new Set<number>()]));
    const next = new Map(ledgers.map((l) => [l, 0]));
    for (let round = 0; round < 4; round++) {
      const c = connect(bookie);
      const stream = c.openStream();
      let stop = false;
      let dead = false;
      const writers = ledgers.map(async (l) => {
        // Up to 64 adds in flight per ledger, pipelined on one stream.
        const inFlight = new Set<Promise<void>>();
        while (!stop && !dead) {
          const e = next.get(l) as number;
          next.set(l, e + 1);
          const p = stream.add({ ledgerId: l, entryId: e, payload: payload(l, e), lastAddConfirmed: e - 1 }).then((r) => {
            if (r.errorCode === '') acked.get(l)?.add(e);
            else {
              expect(r.errorCode).toBe('STREAM_FAILED');
              dead = true;
            }
          });
          inFlight.add(p);
          void p.finally(() => inFlight.delete(p));
          if (inFlight.size >= 64) await Promise.race(inFlight);
          // Give I/O a turn: results of a dead stream arrive without any.
          if (e % 256 === 0) await new Promise((r) => setImmediate(r));
        }
        await Promise.all(inFlight);
      });
      const before = [...acked.values()].reduce((n, s) => n + s.size, 0);
      // Kill once this round has had some acknowledgements, at a time that varies per round.
      while ([...acked.values()].reduce((n, s) => n + s.size, 0) < before + 300 + round * 400) await new Promise((r) => setTimeout(r, 5));
      await new Promise((r) => setTimeout(r, round * 37));
      await bookie.kill('SIGKILL');
      stop = true;
      await Promise.all(writers);
      await bookie.restart();
      const after = connect(bookie);
      for (const l of ledgers) await expectAllReadable(after, l, acked.get(l) as Set<number>);
      // A writer resending what it saw acknowledged (e.g. after reconnecting) is not refused.
      const resend = after.openStream();
      for (const l of ledgers) {
        const last = [...(acked.get(l) as Set<number>)].sort((a, b) => a - b).slice(-50);
        const results = await resend.addMany(last.map((e) => ({ ledgerId: l, entryId: e, payload: payload(l, e), lastAddConfirmed: e - 1 })));
        expect(results.map((r) => r.errorCode)).toEqual(last.map(() => ''));
      }
      resend.end();
    }
    expect([...acked.values()].every((s) => s.size > 500)).toBe(true);
  });

  it('keeps a ledger fenced across kill -9 and restart', async () => {
    const bookie = await startBookie();
    const c = connect(bookie);
    const stream = c.openStream();
    expect((await stream.addMany([0, 1, 2].map((e) => ({ ledgerId: 11, entryId: e, payload: payload(11, e) })))).map((r) => r.errorCode)).toEqual(['', '', '']);
    await c.fence(11);
    await c.fence(12); // never written: fenced while empty
    await bookie.kill('SIGKILL');
    await bookie.restart();
    const c2 = connect(bookie);
    expect(await c2.state(11)).toMatchObject({ fenced: true, lastEntryId: 2 });
    expect(await c2.state(12)).toMatchObject({ fenced: true, lastEntryId: -1 });
    const s2 = c2.openStream();
    expect((await s2.add({ ledgerId: 11, entryId: 3, payload: payload(11, 3) })).errorCode).toBe('FENCED');
    expect((await s2.add({ ledgerId: 12, entryId: 0, payload: payload(12, 0) })).errorCode).toBe('FENCED');
    // And again after a clean stop (the fence now lives in the checkpoint, not only the journal).
    await bookie.stop();
    await bookie.restart();
    const c3 = connect(bookie);
    expect((await c3.state(11)).fenced).toBe(true);
    expect((await c3.openStream().add({ ledgerId: 11, entryId: 3, payload: payload(11, 3) })).errorCode).toBe('FENCED');
  });
});

describe('torn and corrupt files', () => {
  const L = 21;
  const N = 50;
  const SIZE = 1000;
  /** Journal record of an add: 8 header + 29 fixed + payload. */
  const REC = 8 + 29 + SIZE;
  const fixed = (e: number) => Buffer.alloc(SIZE, e % 251);

  /** A bookie that journaled N acknowledged adds and was killed before any later checkpoint. */
  async function killedAfterAdds(): Promise<{ bookie: BookieProcess; journal: string }> {
    const bookie = await startBookie(['--checkpoint-interval-ms', '600000']);
    const c = connect(bookie);
    const res = await c.openStream().addMany(Array.from({ length: N }, (_, e) => ({ ledgerId: L, entryId: e, payload: fixed(e) })));
    expect(res.every((r) => r.errorCode === '')).toBe(true);
    await bookie.kill('SIGKILL');
    const dir = join(bookie.dataDir, 'journal');
    const files = (await readdir(dir)).filter((f) => f.endsWith('.jnl')).sort();
    const journal = join(dir, files.at(-1) as string);
    expect((await stat(journal)).size).toBe(N * REC);
    return { bookie, journal };
  }

  async function readable(bookie: BookieProcess): Promise<number[]> {
    const c = connect(bookie);
    const got: number[] = [];
    for (let e = 0; e < N; e++) {
      try {
        const res = await c.read(L, e, e);
        expect(res.entries[0]?.payload.equals(fixed(e))).toBe(true);
        got.push(e);
      } catch (err) {
        expect((err as { code: string }).code).toBe('NOT_FOUND');
      }
    }
    return got;
  }

  it('cuts a torn record at the end of the journal and serves everything acknowledged', async () => {
    const { bookie, journal } = await killedAfterAdds();
    // A write that was in progress when the machine died: half a record, never acknowledged.
    const torn = Buffer.alloc(REC);
    torn.writeUInt32LE(29 + SIZE, 0);
    await appendFile(journal, torn.subarray(0, REC / 2));
    await bookie.restart();
    expect(await readable(bookie)).toEqual(Array.from({ length: N }, (_, e) => e));
    // The cut was made for good: the journal file ends at the last whole record.
    expect((await stat(journal)).size).toBe(N * REC);
  });

  it('serves the intact prefix when the journal is truncated inside a record', async () => {
    const { bookie, journal } = await killedAfterAdds();
    await truncate(journal, 30 * REC + 17);
    await bookie.restart();
    expect(await readable(bookie)).toEqual(Array.from({ length: 30 }, (_, e) => e));
    const c = connect(bookie);
    expect(await c.state(L)).toMatchObject({ lastEntryId: 29, entryCount: 30 });
    // The lost tail can be written again (as recovery would).
    expect((await c.openStream().add({ ledgerId: L, entryId: 30, payload: fixed(30) })).errorCode).toBe('');
  });

  it('never serves a record whose bytes were corrupted, and serves what precedes it', async () => {
    const { bookie, journal } = await killedAfterAdds();
    const fh = await open(journal, 'r+');
    await fh.write(Buffer.from([0xde, 0xad]), 0, 2, 40 * REC + 37 + 500); // inside entry 40's payload
    await fh.close();
    await bookie.restart();
    expect(await readable(bookie)).toEqual(Array.from({ length: 40 }, (_, e) => e));
  });

  it('answers CHECKSUM_MISMATCH for an entry corrupted in a segment file, and serves the others', async () => {
    const bookie = await startBookie();
    const c = connect(bookie);
    const res = await c.openStream().addMany(Array.from({ length: N }, (_, e) => ({ ledgerId: L, entryId: e, payload: fixed(e) })));
    expect(res.every((r) => r.errorCode === '')).toBe(true);
    await bookie.stop(); // clean: everything is in the segments and the checkpoint
    const ledgerDir = join(bookie.dataDir, 'ledgers', String(L).padStart(20, '0'));
    const log = join(ledgerDir, (await readdir(ledgerDir)).find((f) => f.endsWith('.log')) as string);
    const bytes = await readFile(log);
    const at = 10 * (36 + SIZE) + 36 + 100; // inside entry 10's payload
    bytes[at] = (bytes[at] as number) ^ 0xff;
    await writeFile(log, bytes);
    await bookie.restart();
    const c2 = connect(bookie);
    await expect(c2.read(L, 10, 10)).rejects.toMatchObject({ code: 'CHECKSUM_MISMATCH' });
    expect((await c2.read(L, 11, 11)).entries[0]?.payload.equals(fixed(11))).toBe(true);
    expect((await c2.read(L, 9, 9)).entries[0]?.payload.equals(fixed(9))).toBe(true);
    expect(bookie.running).toBe(true);
  });
});
