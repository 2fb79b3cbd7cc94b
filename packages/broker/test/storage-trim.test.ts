import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ManagedLedgerConfig, Position } from '../src/storage/api.js';
import type { ManagedLedgerImpl } from '../src/storage/managed-ledger.js';
import { StorageTestEnv, eventually, payloadOf, uniqueName } from './storage-helpers.js';

const SMALL: Partial<ManagedLedgerConfig> = { maxEntriesPerLedger: 5, minLedgerRolloverMs: 0 };

async function appendMany(ml: { append(p: Uint8Array): Promise<Position> }, n: number, payload = payloadOf): Promise<Position[]> {
  const out: Position[] = [];
  for (let i = 0; i < n; i++) out.push(await ml.append(payload(i)));
  return out;
}

function ledgerIdsOf(ml: unknown): number[] {
  return (ml as ManagedLedgerImpl).ledgerIds();
}

describe('retention trimming and TTL', () => {
  let env: StorageTestEnv;
  beforeEach(async () => {
    env = await StorageTestEnv.create();
  });
  afterEach(async () => {
    await env.close();
  });

  it('trims only ledgers every durable cursor has consumed (retention 0)', async () => {
    const factory = env.broker({ defaults: SMALL });
    const ml = await factory.open(uniqueName());
    const slow = await ml.openCursor('slow', { initialPosition: 'earliest' });
    const fast = await ml.openCursor('fast', { initialPosition: 'earliest' });
    const p = await appendMany(ml, 22); // ledgers: [0-4] [5-9] [10-14] [15-19] [20-21]
    const before = ledgerIdsOf(ml);
    expect(before.length).toBe(5);

    await factory.maintainAll();
    expect(ledgerIdsOf(ml)).toEqual(before);

    await fast.ackCumulative(p[21] as Position);
    await slow.ackCumulative(p[11] as Position);
    await factory.maintainAll();
    expect(ledgerIdsOf(ml)).toEqual(before.slice(2));
    expect(env.cluster.ledgers.has(before[0] as number)).toBe(false);
    expect(env.cluster.ledgers.has(before[1] as number)).toBe(false);
    expect(ml.stats().trimmedLedgers).toBe(2);
    expect(ml.firstPosition).toEqual(p[10]);
    expect(slow.backlog()).toBe(10);
    // A reader from a trimmed position starts at the first one kept.
    const reader = ml.newNonDurableCursor(p[0] as Position, { inclusive: true });
    expect((await reader.read({ maxEntries: 1 }))[0]?.position).toEqual(p[10]);

    // The list in metadata no longer names them: a new owner sees the trimmed list.
    const again = await env.broker().open(ml.name);
    expect(ledgerIdsOf(again).slice(0, 3)).toEqual(before.slice(2));
  });

  it('never trims the current ledger; with no cursor everything closed is consumed', async () => {
    const factory = env.broker({ defaults: SMALL });
    const ml = await factory.open(uniqueName());
    await appendMany(ml, 12);
    await factory.maintainAll();
    expect(ledgerIdsOf(ml).length).toBe(1);
    expect(ml.stats().entries).toBe(2);
  });

  it('retention time keeps consumed ledgers until they are old enough', async () => {
    const factory = env.broker({ defaults: { ...SMALL, retentionTimeMs: 60_000, retentionSizeBytes: -1 } });
    const ml = await factory.open(uniqueName());
    await appendMany(ml, 12);
    const before = ledgerIdsOf(ml);
    await factory.maintainAll();
    expect(ledgerIdsOf(ml)).toEqual(before);
    env.clock.advance(60_000);
    await factory.maintainAll();
    expect(ledgerIdsOf(ml)).toEqual(before.slice(2));
  });

  it('retention size keeps the newest consumed ledgers within the size', async () => {
    const factory = env.broker({ defaults: { ...SMALL, retentionTimeMs: -1, retentionSizeBytes: 100 } });
    const ml = await factory.open(uniqueName());
    // 5 entries of 10 bytes per ledger = 50 bytes per ledger; 4 full ledgers + 1 entry.
    await appendMany(ml, 21, () => Buffer.alloc(10));
    expect(ml.stats().sizeBytes).toBe(210);
    const before = ledgerIdsOf(ml);
    await factory.maintainAll();
    // Dropping ledgers while at least 100 bytes remain: 210 -> 160 -> 110 (the next would leave 60).
    expect(ledgerIdsOf(ml)).toEqual(before.slice(2));
    expect(ml.stats().sizeBytes).toBe(110);
  });

  it('infinite retention (-1, -1) keeps everything', async () => {
    const factory = env.broker({ defaults: { ...SMALL, retentionTimeMs: -1, retentionSizeBytes: -1 } });
    const ml = await factory.open(uniqueName());
    await appendMany(ml, 16);
    env.clock.advance(365 * 24 * 3600 * 1000);
    await factory.maintainAll();
    expect(ml.stats().entries).toBe(16);
  });

  it('TTL acknowledges entries older than ttlMs on every cursor (entry precision)', async () => {
    const entryTimeMs = (payload: Buffer) => Number(payload.toString());
    const factory = env.broker({ defaults: { ...SMALL, ttlMs: 10_000, entryTimeMs } });
    const ml = await factory.open(uniqueName());
    const c = await ml.openCursor('sub', { initialPosition: 'earliest' });
    const t0 = env.clock.now();
    const p = await appendMany(ml, 12, (i) => Buffer.from(String(t0 + i * 1000)));
    await factory.maintainAll();
    expect(c.backlog()).toBe(12);
    // Now entries 0..4 are older than 10 s.
    env.clock.advance(15_000);
    await factory.maintainAll();
    expect(c.markDeletePosition).toEqual(p[4]);
    expect(c.backlog()).toBe(7);
    // The first ledger is now consumed and (retention 0) trimmed in the same pass.
    expect(ml.firstPosition).toEqual(p[5]);
    env.clock.advance(60_000);
    await factory.maintainAll();
    expect(c.backlog()).toBe(0);
  });

  it('TTL without entryTimeMs expires whole closed ledgers by their close time', async () => {
    const factory = env.broker({ defaults: { ...SMALL, ttlMs: 10_000 } });
    const ml = await factory.open(uniqueName());
    const c = await ml.openCursor('sub', { initialPosition: 'earliest' });
    const p = await appendMany(ml, 7); // ledger 1 closed now, ledger 2 open with 2 entries
    env.clock.advance(10_000);
    await factory.maintainAll();
    expect(c.markDeletePosition).toEqual(p[4]);
    expect(c.backlog()).toBe(2);
  });

  it('the background task trims on its own and stops with the factory', async () => {
    const factory = env.broker({ defaults: SMALL, trimIntervalMs: 10 });
    await factory.start();
    const ml = await factory.open(uniqueName());
    const c = await ml.openCursor('sub', { initialPosition: 'earliest' });
    const p = await appendMany(ml, 11);
    await c.ackCumulative(p[9] as Position);
    await eventually(() => ledgerIdsOf(ml).length === 1);
    await factory.stop();
    await expect(ml.append(payloadOf(1))).rejects.toMatchObject({ code: 'SERVICE_NOT_READY' });
  });

  it('rolls over a ledger older than maxLedgerAgeMs', async () => {
    const factory = env.broker({ defaults: { maxLedgerAgeMs: 1000 } });
    const ml = await factory.open(uniqueName());
    const first = await ml.append(payloadOf(0));
    env.clock.advance(1000);
    await factory.maintainAll();
    const second = await ml.append(payloadOf(1));
    expect(second.ledgerId).toBeGreaterThan(first.ledgerId);
  });
});
