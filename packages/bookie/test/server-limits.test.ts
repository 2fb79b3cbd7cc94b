// Limits of a real bookie process: a stream stops being read past its in-flight limit (and still
// answers everything in order), and a corrupt request message fails only its own stream.
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BookieProcess } from '../src/testing/bookie-process.js';
import { RawBookieClient } from './fixtures/raw-bookie-client.js';

let bookie: BookieProcess;
let client: RawBookieClient;

beforeAll(async () => {
  // A slow group commit keeps adds in flight long enough to watch the limit from outside.
  bookie = await BookieProcess.start({ args: ['--stream-max-in-flight-adds', '16', '--journal-group-wait-ms', '40'] });
  client = new RawBookieClient(bookie.address);
});

afterAll(async () => {
  client?.close();
  await bookie?.destroy();
});

async function inFlightGauge(): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${bookie.httpPort}/metrics`)).text();
  const m = /^bookie_in_flight_adds\{[^}]*\} (\d+)/m.exec(text) ?? /^bookie_in_flight_adds (\d+)/m.exec(text);
  return Number(m?.[1] ?? NaN);
}

describe('bookie limits', () => {
  it('stops reading a stream past its in-flight limit and answers every add, in order', async () => {
    const stream = client.openStream();
    const all: Array<Promise<{ errorCode: string }>> = [];
    // One add per message, so the bookie can stop reading between them.
    for (let e = 0; e < 400; e++) all.push(stream.add({ ledgerId: 77, entryId: e, payload: Buffer.alloc(100, e % 256) }));
    let maxSeen = 0;
    const done = Promise.all(all);
    let finished = false;
    void done.then(() => (finished = true));
    while (!finished) {
      maxSeen = Math.max(maxSeen, await inFlightGauge());
      await new Promise((r) => setTimeout(r, 5));
    }
    const results = await done;
    expect(results.every((r) => r.errorCode === '')).toBe(true);
    expect(stream.arrivals).toEqual([...stream.arrivals].sort((a, b) => a - b));
    expect(maxSeen).toBeGreaterThan(0);
    // The limit, plus at most the one message read when it was reached.
    expect(maxSeen).toBeLessThanOrEqual(17);
    stream.end();
    expect((await client.state(77)).entryCount).toBe(400);
  });

  it('fails only the stream of a corrupt request; the bookie keeps serving', async () => {
    const raw = new grpc.Client(bookie.address, grpc.credentials.createInsecure());
    const call = raw.makeBidiStreamRequest(
      '/strata.bookie.v1.Bookie/AddEntries',
      (b: Buffer) => b,
      (b: Buffer) => b,
    );
    const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
    call.on('error', () => undefined);
    call.on('data', () => undefined);
    call.write(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02])); // a field claiming 4 GiB
    call.end();
    expect((await status).code).not.toBe(grpc.status.OK);
    raw.close();
    const stream = client.openStream();
    expect((await stream.add({ ledgerId: 78, entryId: 0, payload: Buffer.from('still here') })).errorCode).toBe('');
    stream.end();
    expect(bookie.running).toBe(true);
  });
});

describe('journal trimming', () => {
  it('keeps the journal bounded: checkpoints let old journal files go', async () => {
    const b = await BookieProcess.start({ args: ['--checkpoint-interval-ms', '100', '--journal-max-file-bytes', String(1024 * 1024)] });
    const c = new RawBookieClient(b.address);
    try {
      const stream = c.openStream();
      // 8 MiB through a journal that rotates every 1 MiB.
      for (let batch = 0; batch < 8; batch++) {
        const res = await stream.addMany(
          Array.from({ length: 64 }, (_, k) => ({ ledgerId: 90, entryId: batch * 64 + k, payload: Buffer.alloc(16 * 1024, k) })),
        );
        expect(res.every((r) => r.errorCode === '')).toBe(true);
      }
      stream.end();
      const journalFiles = async () => (await readdir(join(b.dataDir, 'journal'))).filter((f) => f.endsWith('.jnl')).length;
      const deadline = Date.now() + 10_000;
      while ((await journalFiles()) > 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(await journalFiles()).toBeLessThanOrEqual(2);
      // Trimmed journal, data intact (from the segments).
      await b.kill('SIGKILL');
      await b.restart();
      const c2 = new RawBookieClient(b.address);
      expect(await c2.state(90)).toMatchObject({ entryCount: 512, lastEntryId: 511 });
      const read = await c2.read(90, 500, 511);
      expect(read.entries.map((e) => e.entryId)).toEqual(Array.from({ length: 12 }, (_, k) => 500 + k));
      c2.close();
    } finally {
      c.close();
      await b.destroy();
    }
  });
});
