import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Position } from '../src/storage/api.js';
import { StorageTestEnv, payloadOf, uniqueName } from './storage-helpers.js';

const SMALL = { maxEntriesPerLedger: 4, minLedgerRolloverMs: 0 };

async function appendMany(ml: { append(p: Uint8Array): Promise<Position> }, n: number, from = 0): Promise<Position[]> {
  const out: Position[] = [];
  for (let i = from; i < from + n; i++) out.push(await ml.append(payloadOf(i)));
  return out;
}

describe('cursors', () => {
  let env: StorageTestEnv;
  beforeEach(async () => {
    env = await StorageTestEnv.create();
  });
  afterEach(async () => {
    await env.close();
  });

  it('starts at earliest or latest and reads everything after its position once', async () => {
    const ml = await env.broker({ defaults: SMALL }).open(uniqueName());
    await appendMany(ml, 6);
    const early = await ml.openCursor('early', { initialPosition: 'earliest' });
    const late = await ml.openCursor('late', { initialPosition: 'latest' });
    expect(early.backlog()).toBe(6);
    expect(late.backlog()).toBe(0);
    await appendMany(ml, 3, 6);
    expect((await early.read({ maxEntries: 100 })).map((e) => e.payload.toString())).toEqual([...Array(9).keys()].map((i) => `entry-${i}`));
    expect((await late.read({ maxEntries: 100 })).map((e) => e.payload.toString())).toEqual(['entry-6', 'entry-7', 'entry-8']);
    expect(await early.read({ maxEntries: 100 })).toEqual([]);
    expect(early.hasMoreEntries()).toBe(false);
    expect(await ml.openCursor('early', { initialPosition: 'latest' })).toBe(early);
  });

  it('individual acks fold into the mark-delete position across ledgers; cumulative acks drop ranges', async () => {
    const ml = await env.broker({ defaults: SMALL }).open(uniqueName());
    const c = await ml.openCursor('sub', { initialPosition: 'earliest' });
    const p = await appendMany(ml, 10); // ledgers of 4: [0..3] [4..7] [8..9]
    await c.ackIndividual([p[1] as Position, p[2] as Position, p[5] as Position, p[6] as Position]);
    expect(c.markDeletePosition).toEqual({ ledgerId: (p[0] as Position).ledgerId, entryId: -1 });
    expect(c.ackedRanges()).toEqual([{ from: p[1], to: p[2] }, { from: p[5], to: p[6] }]);
    expect(c.backlog()).toBe(6);
    await c.ackIndividual([p[0] as Position]);
    expect(c.markDeletePosition).toEqual(p[2]);
    await c.ackIndividual([p[3] as Position, p[4] as Position]); // crosses into the second ledger and joins 5..6
    expect(c.markDeletePosition).toEqual(p[6]);
    expect(c.ackedRanges()).toEqual([]);
    expect(c.backlog()).toBe(3);
    await c.ackIndividual([p[9] as Position]);
    await c.ackCumulative(p[8] as Position);
    expect(c.markDeletePosition).toEqual(p[9]);
    expect(c.backlog()).toBe(0);
    // Acks of positions that do not hold an entry are ignored.
    await c.ackIndividual([{ ledgerId: (p[9] as Position).ledgerId, entryId: 50 }, { ledgerId: 1, entryId: -1 }]);
    expect(c.markDeletePosition).toEqual(p[9]);
  });

  it('read skips individually acked entries; rewind and seekRead redeliver', async () => {
    const ml = await env.broker({ defaults: SMALL }).open(uniqueName());
    const c = await ml.openCursor('sub', { initialPosition: 'earliest' });
    const p = await appendMany(ml, 8);
    await c.ackIndividual([p[1] as Position, p[4] as Position, p[5] as Position]);
    const got = await c.read({ maxEntries: 100 });
    expect(got.map((e) => e.payload.toString())).toEqual(['entry-0', 'entry-2', 'entry-3', 'entry-6', 'entry-7']);
    c.rewind();
    expect((await c.read({ maxEntries: 2 })).map((e) => e.payload.toString())).toEqual(['entry-0', 'entry-2']);
    c.seekRead(p[6] as Position);
    expect((await c.read({ maxEntries: 10 })).map((e) => e.payload.toString())).toEqual(['entry-6', 'entry-7']);
  });

  it('a tailing read waits for the next append; only one read at a time', async () => {
    const ml = await env.broker().open(uniqueName());
    const c = await ml.openCursor('sub');
    const reading = c.read({ maxEntries: 10, wait: true });
    await expect(c.read({ maxEntries: 1 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await new Promise((r) => setTimeout(r, 10));
    await ml.append(payloadOf(1));
    expect((await reading).map((e) => e.payload.toString())).toEqual(['entry-1']);
    const controller = new AbortController();
    const stuck = c.read({ maxEntries: 10, wait: true, signal: controller.signal });
    controller.abort(new Error('consumer left'));
    await expect(stuck).rejects.toThrow('consumer left');
  });

  it('waitForEntries waits from the read position, so an append right after an empty read is not missed', async () => {
    const ml = await env.broker().open(uniqueName());
    const c = await ml.openCursor('sub');
    expect(await c.read({ maxEntries: 10 })).toEqual([]);
    await ml.append(payloadOf(0)); // lands after the empty read, before the wait
    await c.waitForEntries(); // resolves at once: the entry is at the read position
    expect((await c.read({ maxEntries: 10 })).map((e) => e.payload.toString())).toEqual(['entry-0']);
    let woke = false;
    const waiting = c.waitForEntries().then(() => { woke = true; });
    await new Promise((r) => setTimeout(r, 10));
    expect(woke).toBe(false);
    await ml.append(payloadOf(1));
    await waiting;
    const controller = new AbortController();
    await c.read({ maxEntries: 10 });
    const aborted = c.waitForEntries({ signal: controller.signal });
    controller.abort(new Error('gone'));
    await expect(aborted).rejects.toThrow('gone');
  });

  it('persists mark-delete, acked ranges and properties across a broker crash; later acks are redelivered', async () => {
    const name = uniqueName();
    const brokerA = env.broker({ defaults: SMALL });
    const a = await brokerA.open(name);
    const ca = await a.openCursor('sub', { initialPosition: 'earliest' });
    const p = await appendMany(a, 10);
    await ca.ackCumulative(p[2] as Position, { properties: { 'dedup.producer-1': '41' } });
    await ca.ackIndividual([p[5] as Position, p[7] as Position, p[8] as Position]);
    await brokerA.flushAll();
    expect(ca.stats().lastPersistedAtMs).toBeGreaterThan(0);
    // Not flushed: lost with the "crash" (the loss window), so redelivered, never lost.
    await ca.ackIndividual([p[3] as Position]);

    // Broker A "crashes" (never closes); broker B takes the topic over.
    const b = await env.broker({ defaults: SMALL }).open(name);
    const cb = b.getCursor('sub');
    expect(cb).toBeDefined();
    expect(cb?.markDeletePosition).toEqual(p[2]);
    // Ranges never span ledgers: 7 is the last entry of the second ledger, 8 the first of the third.
    expect(cb?.ackedRanges()).toEqual([{ from: p[5], to: p[5] }, { from: p[7], to: p[7] }, { from: p[8], to: p[8] }]);
    expect(cb?.properties).toEqual({ 'dedup.producer-1': '41' });
    expect((await cb?.read({ maxEntries: 100 }))?.map((e) => e.payload.toString())).toEqual(['entry-3', 'entry-4', 'entry-6', 'entry-9']);

    // The old owner's late flush must not overwrite the new owner's cursor: it is fenced instead.
    await expect(ca.flush()).rejects.toMatchObject({ code: 'FENCED' });
    expect(a.lost.aborted).toBe(true);
  });

  it('a clean close flushes acks made since the last flush', async () => {
    const name = uniqueName();
    const factory = env.broker();
    const ml = await factory.open(name);
    const c = await ml.openCursor('sub', { initialPosition: 'earliest' });
    const p = await appendMany(ml, 3);
    await c.ackCumulative(p[1] as Position);
    await ml.close();
    const again = await env.broker().open(name);
    expect(again.getCursor('sub')?.markDeletePosition).toEqual(p[1]);
    expect(again.getCursor('sub')?.backlog()).toBe(1);
  });

  it('persists at most maxAckedRangesPersisted ranges (the lowest); the rest is redelivered', async () => {
    const name = uniqueName();
    const factory = env.broker({ maxAckedRangesPersisted: 2 });
    const ml = await factory.open(name);
    const c = await ml.openCursor('sub', { initialPosition: 'earliest' });
    const p = await appendMany(ml, 10);
    await c.ackIndividual([p[1], p[3], p[5], p[7]] as Position[]);
    await c.flush();
    expect(c.stats().ackedRangesNotPersisted).toBe(2);
    const again = await env.broker().open(name);
    expect(again.getCursor('sub')?.ackedRanges()).toEqual([{ from: p[1], to: p[1] }, { from: p[3], to: p[3] }]);
    expect(again.getCursor('sub')?.backlog()).toBe(8);
  });

  it('the background flush loop persists acks within cursorFlushIntervalMs', async () => {
    const name = uniqueName();
    const factory = env.broker({ cursorFlushIntervalMs: 20 });
    await factory.start();
    const ml = await factory.open(name);
    const c = await ml.openCursor('sub', { initialPosition: 'earliest' });
    const p = await appendMany(ml, 3);
    await c.ackCumulative(p[2] as Position);
    const key = `managed-ledgers/${name}/cursors/sub`;
    const deadline = Date.now() + 5000;
    for (;;) {
      const kv = await env.metadata.get(key);
      if (kv && JSON.parse(kv.value.toString()).markDelete[1] === (p[2] as Position).entryId) break;
      if (Date.now() > deadline) throw new Error('cursor never flushed');
      await new Promise((r) => setTimeout(r, 10));
    }
    await factory.stop();
  });

  it('resetTo seeks the subscription by position, earliest and latest', async () => {
    const name = uniqueName();
    const ml = await env.broker({ defaults: SMALL }).open(name);
    const c = await ml.openCursor('sub', { initialPosition: 'earliest' });
    const p = await appendMany(ml, 9);
    await c.ackCumulative(p[8] as Position);
    await c.resetTo(p[4] as Position);
    expect(c.backlog()).toBe(5);
    expect((await c.read({ maxEntries: 1 }))[0]?.payload.toString()).toBe('entry-4');
    await c.resetTo('earliest');
    expect(c.backlog()).toBe(9);
    await c.resetTo('latest');
    expect(c.backlog()).toBe(0);
    await c.resetTo(p[6] as Position);
    // Persisted at once.
    const again = await env.broker().open(name);
    expect(again.getCursor('sub')?.markDeletePosition).toEqual(p[5]);
  });

  it('deleteCursor removes it from metadata', async () => {
    const name = uniqueName();
    const ml = await env.broker().open(name);
    await ml.openCursor('a/b c');
    expect(await env.metadata.get(`managed-ledgers/${name}/cursors/a%2Fb%20c`)).toBeDefined();
    await ml.deleteCursor('a/b c');
    expect(ml.getCursor('a/b c')).toBeUndefined();
    expect(await env.metadata.get(`managed-ledgers/${name}/cursors/a%2Fb%20c`)).toBeUndefined();
    await expect(ml.deleteCursor('nope')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(ml.openCursor('')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('re-subscribing while the same subscription is being deleted creates a fresh cursor, no fence', async () => {
    const name = uniqueName();
    const ml = await env.broker().open(name);
    const old = await ml.openCursor('sub', { initialPosition: 'earliest' });
    const p = await appendMany(ml, 3);
    await old.ackCumulative(p[2] as Position);
    await old.flush();
    const [, fresh] = await Promise.all([ml.deleteCursor('sub'), ml.openCursor('sub', { initialPosition: 'earliest' })]);
    expect(ml.lost.aborted).toBe(false);
    expect(fresh).not.toBe(old);
    expect(fresh.backlog()).toBe(3);
    expect(ml.getCursor('sub')).toBe(fresh);
    await expect(old.ackCumulative(p[0] as Position)).rejects.toMatchObject({ code: 'SERVICE_NOT_READY' });
    const again = await env.broker().open(name);
    expect(again.getCursor('sub')?.backlog()).toBe(3);
  });

  it('non-durable readers start inclusive or exclusive and persist nothing', async () => {
    const name = uniqueName();
    const ml = await env.broker({ defaults: SMALL }).open(name);
    const p = await appendMany(ml, 6);
    const inclusive = ml.newNonDurableCursor(p[3] as Position, { inclusive: true });
    const exclusive = ml.newNonDurableCursor(p[3] as Position);
    const earliest = ml.newNonDurableCursor('earliest');
    const latest = ml.newNonDurableCursor('latest');
    expect((await inclusive.read({ maxEntries: 10 })).map((e) => e.payload.toString())).toEqual(['entry-3', 'entry-4', 'entry-5']);
    expect((await exclusive.read({ maxEntries: 10 })).map((e) => e.payload.toString())).toEqual(['entry-4', 'entry-5']);
    expect((await earliest.read({ maxEntries: 10 })).length).toBe(6);
    expect(await latest.read({ maxEntries: 10 })).toEqual([]);
    await ml.append(payloadOf(6));
    expect((await latest.read({ maxEntries: 10 })).map((e) => e.payload.toString())).toEqual(['entry-6']);
    expect(inclusive.durable).toBe(false);
    await inclusive.close();
    expect(ml.cursors()).toEqual([]);
    expect((await env.metadata.list(`managed-ledgers/${name}/cursors/`)).items).toEqual([]);
  });
});
