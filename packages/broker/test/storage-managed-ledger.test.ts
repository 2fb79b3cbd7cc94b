import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { comparePositions, type Position } from '../src/storage/api.js';
import { FaultyMetadataStore, StorageTestEnv, payloadOf, uniqueName } from './storage-helpers.js';

const SMALL = { maxEntriesPerLedger: 10, minLedgerRolloverMs: 0 };

describe('managed ledger', () => {
  let env: StorageTestEnv;
  beforeEach(async () => {
    env = await StorageTestEnv.create();
  });
  afterEach(async () => {
    await env.close();
  });

  it('appends pipelined, rolls over by entries and reads across ledgers', async () => {
    const factory = env.broker({ defaults: SMALL });
    const ml = await factory.open(uniqueName());
    const resolved: number[] = [];
    const positions = await Promise.all(
      Array.from({ length: 35 }, (_, i) => ml.append(payloadOf(i)).then((p) => { resolved.push(i); return p; })),
    );
    expect(resolved).toEqual([...Array(35).keys()]);
    for (let i = 1; i < positions.length; i++) expect(comparePositions(positions[i - 1] as Position, positions[i] as Position)).toBeLessThan(0);
    const ledgerIds = new Set(positions.map((p) => p.ledgerId));
    expect(ledgerIds.size).toBeGreaterThanOrEqual(4);
    expect(ml.lastConfirmed).toEqual(positions[34]);

    const all = await ml.read(ml.firstPosition, { maxEntries: 100 });
    expect(all.map((e) => e.payload.toString())).toEqual(positions.map((_, i) => `entry-${i}`));
    expect(all.map((e) => e.position)).toEqual(positions);

    // From the middle of one ledger across the boundary into the next.
    const mid = await ml.read(positions[8] as Position, { maxEntries: 5 });
    expect(mid.map((e) => e.payload.toString())).toEqual(['entry-8', 'entry-9', 'entry-10', 'entry-11', 'entry-12']);

    // Bounded by bytes (each payload is 7-8 bytes): always at least one entry.
    expect((await ml.read(positions[0] as Position, { maxEntries: 100, maxBytes: 20 })).length).toBe(2);
    expect((await ml.read(positions[0] as Position, { maxEntries: 100, maxBytes: 1 })).length).toBe(1);
    expect(await ml.read(ml.nextPosition(ml.lastConfirmed), { maxEntries: 10 })).toEqual([]);

    const byPosition = await ml.readPositions([positions[20] as Position, positions[3] as Position, positions[4] as Position]);
    expect(byPosition.map((e) => e.payload.toString())).toEqual(['entry-3', 'entry-4', 'entry-20']);

    const stats = ml.stats();
    expect(stats.entries).toBe(35);
    expect(stats.ledgers).toBe(ledgerIds.size);
    expect(ml.countEntriesAfter(positions[29] as Position)).toBe(5);
  });

  it('rolls over by size', async () => {
    const ml = await env.broker({ defaults: { maxLedgerSizeBytes: 100, minLedgerRolloverMs: 0 } }).open(uniqueName());
    const positions = await Promise.all(Array.from({ length: 6 }, () => ml.append(Buffer.alloc(40))));
    // 40 + 40 + 40 >= 100: three entries per ledger.
    expect(positions.map((p) => p.entryId)).toEqual([0, 1, 2, 0, 1, 2]);
    expect(ml.stats().sizeBytes).toBe(240);
  });

  it('does not roll over before minLedgerRolloverMs, then does', async () => {
    const factory = env.broker({ defaults: { maxEntriesPerLedger: 2, minLedgerRolloverMs: 60_000 } });
    const ml = await factory.open(uniqueName());
    const first = await Promise.all([0, 1, 2, 3].map((i) => ml.append(payloadOf(i))));
    expect(new Set(first.map((p) => p.ledgerId)).size).toBe(1);
    env.clock.advance(60_000);
    await ml.append(payloadOf(4));
    const after = await ml.append(payloadOf(5));
    expect(after.ledgerId).toBeGreaterThan((first[0] as Position).ledgerId);
  });

  it('a second broker opening the topic recovers the ledger and fences the first', async () => {
    const name = uniqueName();
    const brokerA = env.broker({ defaults: SMALL });
    const a = await brokerA.open(name);
    const written = await Promise.all([0, 1, 2, 3, 4].map((i) => a.append(payloadOf(i))));
    expect(a.lost.aborted).toBe(false);

    const brokerB = env.broker({ defaults: SMALL });
    const b = await brokerB.open(name);
    expect(b.lastConfirmed).toEqual(written[4]);
    expect((await b.read(b.firstPosition, { maxEntries: 10 })).map((e) => e.payload.toString())).toEqual(written.map((_, i) => `entry-${i}`));

    await expect(a.append(payloadOf(99))).rejects.toMatchObject({ code: 'FENCED' });
    expect(a.lost.aborted).toBe(true);
    expect((a.lost.reason as { code: string }).code).toBe('FENCED');
    await expect(a.append(payloadOf(100))).rejects.toMatchObject({ code: 'FENCED' });

    const next = await b.append(payloadOf(5));
    expect(comparePositions(next, written[4] as Position)).toBeGreaterThan(0);
    expect(next.ledgerId).not.toBe((written[4] as Position).ledgerId);
    await a.close();
  });

  it('a fenced broker cannot roll over into the list the new owner wrote', async () => {
    const name = uniqueName();
    const a = await env.broker({ defaults: { maxEntriesPerLedger: 3, minLedgerRolloverMs: 0 } }).open(name);
    await a.append(payloadOf(0));
    const b = await env.broker().open(name);
    const results = await Promise.allSettled([1, 2, 3, 4].map((i) => a.append(payloadOf(i))));
    expect(results.every((r) => r.status === 'rejected' && (r.reason as { code: string }).code === 'FENCED')).toBe(true);
    expect(b.lastConfirmed.entryId).toBe(0);
    expect((await b.read(b.firstPosition, { maxEntries: 10 })).length).toBe(1);
  });

  it('a zombie owner that did not notice the takeover cannot trim or delete what the new owner lists', async () => {
    const name = uniqueName();
    const zombieFactory = env.broker({ defaults: SMALL });
    const zombie = await zombieFactory.open(name);
    for (let i = 0; i < 25; i++) await zombie.append(payloadOf(i));
    await zombie.openCursor('sub', { initialPosition: 'latest' });
    const owner = await env.broker({ defaults: SMALL }).open(name);
    const ids = (owner as unknown as { ledgerIds(): number[] }).ledgerIds();
    // The zombie's maintenance would trim its consumed ledgers: its list CAS loses and it is fenced.
    await zombieFactory.maintainAll();
    expect(zombie.lost.aborted).toBe(true);
    for (const id of ids) expect(env.cluster.ledgers.has(id)).toBe(true);
    await expect(zombie.delete()).rejects.toMatchObject({ code: 'FENCED' });
    await expect(zombie.deleteCursor('sub')).rejects.toMatchObject({ code: 'FENCED' });
    expect(owner.getCursor('sub')).toBeDefined();
    expect(await env.metadata.get(`managed-ledgers/${name}/cursors/sub`)).toBeDefined();
    expect((await owner.read(owner.firstPosition, { maxEntries: 100 })).length).toBe(25);
  });

  it('a zombie that deletes a cursor the new owner rewrote is fenced, and the cursor stays', async () => {
    const name = uniqueName();
    const zombie = await env.broker().open(name);
    await zombie.openCursor('sub');
    const owner = await env.broker().open(name);
    await expect(zombie.deleteCursor('sub')).rejects.toMatchObject({ code: 'FENCED' });
    expect(await env.metadata.get(`managed-ledgers/${name}/cursors/sub`)).toBeDefined();
    expect(owner.getCursor('sub')).toBeDefined();
  });

  it('a ledger list write whose reply is lost but which landed is recognised, not mistaken for a takeover', async () => {
    const name = uniqueName();
    const faulty = new FaultyMetadataStore(env.metadata);
    const ml = await env.broker({ defaults: { maxEntriesPerLedger: 2, minLedgerRolloverMs: 0 } }, {}, faulty).open(name);
    faulty.failNextPut(`managed-ledgers/${name}`, 'after');
    const positions = await Promise.all([0, 1, 2, 3, 4].map((i) => ml.append(payloadOf(i))));
    expect(new Set(positions.map((p) => p.ledgerId)).size).toBe(3);
    expect(ml.lost.aborted).toBe(false);
    const listed = (ml as unknown as { ledgerIds(): number[] }).ledgerIds();
    for (const id of listed) expect(env.cluster.ledgers.has(id)).toBe(true);
    await ml.close();
    const again = await env.broker().open(name);
    expect((await again.read(again.firstPosition, { maxEntries: 10 })).map((e) => e.payload.toString())).toEqual([0, 1, 2, 3, 4].map((i) => `entry-${i}`));
  });

  it('a ledger list write that failed fails the queued appends (retriable); the next append rolls over again', async () => {
    const name = uniqueName();
    const faulty = new FaultyMetadataStore(env.metadata);
    const ml = await env.broker({ defaults: { maxEntriesPerLedger: 2, minLedgerRolloverMs: 0 } }, {}, faulty).open(name);
    await ml.append(payloadOf(0));
    await ml.append(payloadOf(1));
    faulty.failNextPut(`managed-ledgers/${name}`, 'before');
    await expect(ml.append(payloadOf(2))).rejects.toMatchObject({ code: 'METADATA_UNAVAILABLE', retriable: true });
    expect(ml.lost.aborted).toBe(false);
    const p3 = await ml.append(payloadOf(3));
    expect(p3.entryId).toBe(0);
    const again = await env.broker().open(name);
    expect((await again.read(again.firstPosition, { maxEntries: 10 })).map((e) => e.payload.toString())).toEqual(['entry-0', 'entry-1', 'entry-3']);
  });

  it('a cursor write whose reply is lost but which landed does not fence the owner', async () => {
    const name = uniqueName();
    const faulty = new FaultyMetadataStore(env.metadata);
    const ml = await env.broker({}, {}, faulty).open(name);
    const c = await ml.openCursor('sub', { initialPosition: 'earliest' });
    const p = [await ml.append(payloadOf(0)), await ml.append(payloadOf(1))];
    await c.ackCumulative(p[0] as Position);
    faulty.failNextPut(`managed-ledgers/${name}/cursors/`, 'after');
    await c.flush();
    await c.ackCumulative(p[1] as Position);
    await c.flush();
    expect(ml.lost.aborted).toBe(false);
    const again = await env.broker().open(name);
    expect(again.getCursor('sub')?.markDeletePosition).toEqual(p[1]);
  });

  it('rejects appends past maxPendingAppends with a retriable TOO_MANY_REQUESTS', async () => {
    const factory = env.broker({ defaults: { maxPendingAppends: 3 } }, { addDelayMs: 20 });
    const ml = await factory.open(uniqueName());
    const accepted = [ml.append(payloadOf(0)), ml.append(payloadOf(1)), ml.append(payloadOf(2))];
    await expect(ml.append(payloadOf(3))).rejects.toMatchObject({ code: 'TOO_MANY_REQUESTS', retriable: true });
    expect(ml.stats().pendingAppends).toBe(3);
    await Promise.all(accepted);
    expect(ml.stats().pendingAppends).toBe(0);
    await expect(ml.append(payloadOf(4))).resolves.toMatchObject({ entryId: 3 });
  });

  it('rejects appends past maxPendingAppendBytes', async () => {
    const factory = env.broker({ defaults: { maxPendingAppendBytes: 100 } }, { addDelayMs: 20 });
    const ml = await factory.open(uniqueName());
    const big = ml.append(Buffer.alloc(150)); // alone: accepted even above the byte limit
    await expect(ml.append(Buffer.alloc(10))).rejects.toMatchObject({ code: 'TOO_MANY_REQUESTS' });
    await big;
  });

  it('after a failed append, fails the ones behind it and continues on a new ledger', async () => {
    const factory = env.broker({ defaults: { maxEntriesPerLedger: 1000, minLedgerRolloverMs: 0 } });
    const ml = await factory.open(uniqueName());
    const p0 = await ml.append(payloadOf(0));
    env.cluster.appendFault = (_ledgerId, entryId) => (entryId === 1 ? new Error('disk on fire') : undefined);
    const results = await Promise.allSettled([1, 2, 3].map((i) => ml.append(payloadOf(i))));
    env.cluster.appendFault = undefined;
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
    expect((results[0] as PromiseRejectedResult).reason).toMatchObject({ retriable: true });
    const p4 = await ml.append(payloadOf(4));
    expect(p4.ledgerId).toBeGreaterThan(p0.ledgerId);
    expect(ml.lost.aborted).toBe(false);
    const all = await ml.read(ml.firstPosition, { maxEntries: 10 });
    expect(all.map((e) => e.payload.toString())).toEqual(['entry-0', 'entry-4']);
  });

  it('waits for new entries and honours the abort signal', async () => {
    const ml = await env.broker().open(uniqueName());
    const p0 = await ml.append(payloadOf(0));
    await ml.waitForEntriesAfter({ ledgerId: p0.ledgerId, entryId: -1 });
    let woke = false;
    const waiting = ml.waitForEntriesAfter(p0).then(() => { woke = true; });
    await new Promise((r) => setTimeout(r, 20));
    expect(woke).toBe(false);
    await ml.append(payloadOf(1));
    await waiting;
    expect(woke).toBe(true);

    const controller = new AbortController();
    const aborted = ml.waitForEntriesAfter(ml.lastConfirmed, { signal: controller.signal });
    controller.abort(new Error('stop'));
    await expect(aborted).rejects.toThrow('stop');

    const pendingAtClose = ml.waitForEntriesAfter(ml.lastConfirmed);
    await ml.close();
    await expect(pendingAtClose).rejects.toMatchObject({ code: 'SERVICE_NOT_READY' });
  });

  it('reopen keeps the data; lastConfirmed survives a rollover to an empty ledger', async () => {
    const name = uniqueName();
    const a = await env.broker({ defaults: SMALL }).open(name);
    for (let i = 0; i < 12; i++) await a.append(payloadOf(i));
    const last = a.lastConfirmed;
    await a.close();
    const b = await env.broker({ defaults: SMALL }).open(name);
    expect(b.lastConfirmed).toEqual(last);
    expect((await b.read(b.firstPosition, { maxEntries: 100 })).length).toBe(12);
    await b.close();
    // Opening again without appends must not pile up empty ledgers.
    const c = await env.broker({ defaults: SMALL }).open(name);
    expect(c.stats().ledgers).toBe(3);
  });

  it('finds positions by publish time with a binary search', async () => {
    const name = uniqueName();
    const entryTimeMs = (payload: Buffer) => Number(JSON.parse(payload.toString()).t);
    const ml = await env.broker({ defaults: { ...SMALL, entryTimeMs } }).open(name);
    const positions: Position[] = [];
    for (let i = 0; i < 25; i++) positions.push(await ml.append(Buffer.from(JSON.stringify({ t: 1000 + i * 10 }))));
    expect(await ml.findPositionByTime(0)).toEqual(positions[0]);
    expect(await ml.findPositionByTime(1125)).toEqual(positions[13]);
    expect(await ml.findPositionByTime(1130)).toEqual(positions[13]);
    expect(await ml.findPositionByTime(5000)).toBeUndefined();
    const plain = await env.broker().open(uniqueName());
    await expect(plain.findPositionByTime(1)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('terminate stops appends for good, also after reopen', async () => {
    const name = uniqueName();
    const ml = await env.broker().open(name);
    await ml.append(payloadOf(0));
    const last = await ml.terminate();
    expect(last).toEqual(ml.lastConfirmed);
    await expect(ml.append(payloadOf(1))).rejects.toMatchObject({ code: 'LEDGER_CLOSED' });
    await ml.close();
    const again = await env.broker().open(name);
    expect(again.terminated).toBe(true);
    await expect(again.append(payloadOf(2))).rejects.toMatchObject({ code: 'LEDGER_CLOSED' });
    expect((await again.read(again.firstPosition, { maxEntries: 10 })).length).toBe(1);
  });

  it('delete removes the ledgers, cursors and the list', async () => {
    const name = uniqueName();
    const factory = env.broker({ defaults: SMALL });
    const ml = await factory.open(name);
    await ml.openCursor('sub');
    for (let i = 0; i < 15; i++) await ml.append(payloadOf(i));
    const ids = (ml as unknown as { ledgerIds(): number[] }).ledgerIds();
    expect(await factory.list(name.split('/').slice(0, 3).join('/') + '/')).toEqual([name]);
    await factory.delete(name);
    expect(await factory.exists(name)).toBe(false);
    expect(await env.metadata.get(`managed-ledgers/${name}/cursors/sub`)).toBeUndefined();
    for (const id of ids) expect(env.cluster.ledgers.has(id)).toBe(false);
    await expect(factory.open(name, { createIfMissing: false })).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('validates names and config', async () => {
    const factory = env.broker();
    await expect(factory.open('no-slashes')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(factory.open('a/b/c/../d')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(factory.open(uniqueName(), { config: { ensembleSize: 1, writeQuorum: 2 } })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(factory.open(uniqueName(), { config: { retentionTimeMs: -2 } })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(factory.open(uniqueName(), { config: { maxPendingAppends: 0 } })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    const ml = await factory.open(uniqueName());
    await expect(ml.read(ml.firstPosition, { maxEntries: 0 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('concurrent opens of one name share one instance', async () => {
    const factory = env.broker();
    const name = uniqueName();
    const [x, y] = await Promise.all([factory.open(name), factory.open(name)]);
    expect(x).toBe(y);
    expect(factory.get(name)).toBe(x);
    await x.close();
    expect(factory.get(name)).toBeUndefined();
  });
});
