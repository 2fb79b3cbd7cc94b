import { silentLogger, systemClock } from '@strata/runtime';
import { describe, expect, it } from 'vitest';
import { encodeEnvelope } from '../src/codec.js';
import { Consumer, type DispatchEntry, type SubscriptionType } from '../src/consumer.js';
import { RateMeter } from '../src/rate.js';
import type { Cursor, Entry, ManagedLedger, Position } from '../src/storage/index.js';
import { keyHashOf, Subscription } from '../src/subscription.js';

/** A hand-written fake of the storage seam: one ledger (id 1) of entries in memory. */
class FakeLedger {
  readonly entries: Entry[] = [];
  private waiters: Array<() => void> = [];

  append(key: string): void {
    const payload = encodeEnvelope({
      producerName: 'p', sequenceId: this.entries.length, highestSequenceId: 0, numMessages: 1, compression: 'NONE',
      uncompressedSize: 0, batchKey: key, deliverAtTime: 0, publishTime: 1, replicatedFrom: '',
    }, Buffer.from(`${key}:${this.entries.length}`));
    this.entries.push({ position: { ledgerId: 1, entryId: this.entries.length }, payload });
    for (const w of this.waiters.splice(0)) w();
  }

  get lastConfirmed(): Position {
    return { ledgerId: 1, entryId: this.entries.length - 1 };
  }

  async readPositions(positions: readonly Position[]): Promise<Entry[]> {
    return [...positions].sort((a, b) => a.entryId - b.entryId).map((p) => this.entries[p.entryId]!).filter(Boolean);
  }

  waitForEntriesAfter(after: Position, options: { signal?: AbortSignal }): Promise<void> {
    if (this.entries.length - 1 > after.entryId) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.waiters.push(resolve);
      options.signal?.addEventListener('abort', () => reject(options.signal?.reason), { once: true });
    });
  }
}

class FakeCursor {
  readonly durable = true;
  readonly name = 'sub';
  read = 0;
  readonly acked = new Set<number>();

  constructor(private readonly ledger: FakeLedger) {}

  async readEntries(max: number): Promise<Entry[]> {
    const out: Entry[] = [];
    while (out.length < max && this.read < this.ledger.entries.length) {
      if (!this.acked.has(this.read)) out.push(this.ledger.entries[this.read]!);
      this.read++;
    }
    return out;
  }

  isAcked(p: Position): boolean {
    return this.acked.has(p.entryId);
  }
}

function makeSubscription(partitionIndex = -1, readAheadEntries = 100) {
  const ledger = new FakeLedger();
  const fc = new FakeCursor(ledger);
  const cursor = {
    durable: true, name: 'sub',
    read: (o: { maxEntries: number }) => fc.readEntries(o.maxEntries),
    isAcked: (p: Position) => fc.isAcked(p),
    ackIndividual: async (ps: Position[]) => ps.forEach((p) => fc.acked.add(p.entryId)),
    ackCumulative: async (p: Position) => {
      for (let i = 0; i <= p.entryId; i++) fc.acked.add(i);
    },
    resetTo: async (p: Position) => {
      fc.acked.clear();
      fc.read = p.entryId;
    },
    close: async () => undefined,
  } as unknown as Cursor;
  const sub = new Subscription('sub', cursor, ledger as unknown as ManagedLedger, {
    readAheadEntries, readMaxBytes: 1 << 20, maxRedeliveryPositions: 1000, partitionIndex, clock: systemClock, logger: silentLogger(),
  }, () => undefined);
  return { sub, ledger, fc };
}

let ids = 0;
function consumer(name: string, options: { priority?: number; sticky?: Array<{ start: number; end: number }> } = {}) {
  const got: DispatchEntry[] = [];
  const active: boolean[] = [];
  const c = new Consumer(
    { id: ++ids, name, priority: options.priority ?? 0, stickyRanges: options.sticky ?? [], nackDelayMs: 10 },
    { deliver: (es) => got.push(...es), activeChange: (a) => active.push(a), closed: () => undefined },
    new RateMeter(systemClock),
  );
  return { c, got, active, payloads: () => got.map((e) => Buffer.from(e.envelope.batch).toString()) };
}

const settle = () => new Promise((r) => setTimeout(r, 20));

describe('Subscription dispatch (fake storage)', () => {
  it('failover on a partition picks the (partition mod n)-th top-priority consumer', async () => {
    const { sub, ledger } = makeSubscription(1);
    const a = consumer('a');
    const b = consumer('b');
    const low = consumer('0-low', { priority: 5 });
    for (const x of [low, a, b]) sub.addConsumer(x.c, 'FAILOVER_SUB');
    for (const x of [low, a, b]) sub.flow(x.c, 10);
    ledger.append('k');
    await settle();
    expect(b.got).toHaveLength(1);
    expect(a.got).toHaveLength(0);
    expect(b.active.at(-1)).toBe(true);
    expect(low.active.at(-1)).toBe(false);
  });

  it('exclusive delivers in order and never beyond the permits', async () => {
    const { sub, ledger } = makeSubscription();
    const a = consumer('a');
    sub.addConsumer(a.c, 'EXCLUSIVE_SUB');
    for (let i = 0; i < 10; i++) ledger.append('k');
    sub.flow(a.c, 4);
    await settle();
    expect(a.payloads()).toEqual(['k:0', 'k:1', 'k:2', 'k:3']);
    sub.flow(a.c, 100);
    await settle();
    expect(a.got.map((e) => e.position.entryId)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('key_shared sticky ranges route by key slot; overlapping ranges are refused', async () => {
    const { sub, ledger } = makeSubscription();
    const lo = consumer('lo', { sticky: [{ start: 0, end: 32767 }] });
    const hi = consumer('hi', { sticky: [{ start: 32768, end: 65535 }] });
    sub.addConsumer(lo.c, 'KEY_SHARED_SUB');
    sub.addConsumer(hi.c, 'KEY_SHARED_SUB');
    expect(() => sub.addConsumer(consumer('x', { sticky: [{ start: 100, end: 200 }] }).c, 'KEY_SHARED_SUB')).toThrow(expect.objectContaining({ code: 'CONSUMER_BUSY' }));
    sub.flow(lo.c, 100);
    sub.flow(hi.c, 100);
    const keys = Array.from({ length: 20 }, (_, i) => `key${i}`);
    for (const k of keys) ledger.append(k);
    await settle();
    for (const e of lo.got) expect(e.keyHash).toBeLessThan(32768);
    for (const e of hi.got) expect(e.keyHash).toBeGreaterThanOrEqual(32768);
    expect(lo.got.length + hi.got.length).toBe(20);
    expect(keyHashOf('key3')).toBe(lo.got.concat(hi.got).find((e) => Buffer.from(e.envelope.batch).toString().startsWith('key3:'))!.keyHash);
  });

  it('nack redelivers after the delay with a count; cumulative ack is refused on shared', async () => {
    const { sub, ledger } = makeSubscription();
    const a = consumer('a');
    sub.addConsumer(a.c, 'SHARED_SUB' as SubscriptionType);
    sub.flow(a.c, 10);
    ledger.append('k');
    ledger.append('k');
    await settle();
    expect(a.got).toHaveLength(2);
    sub.nack(a.c, [a.got[0]!.position]);
    await settle();
    expect(a.got).toHaveLength(3);
    expect(a.got[2]!.position).toEqual(a.got[0]!.position);
    expect(a.got[2]!.redeliveryCount).toBe(1);
    await expect(sub.ack(a.c, [a.got[1]!.position], true)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await sub.ack(a.c, [a.got[1]!.position, a.got[2]!.position], false);
    expect(sub.unackedCount()).toBe(0);
  });
});
