import { Random, silentLogger, systemClock } from '@strata/runtime';
import { describe, expect, it } from 'vitest';
import { encodeEnvelope } from '../src/topics/codec.js';
import { Consumer, type DispatchEntry, type SubscriptionType } from '../src/topics/consumer.js';
import { RateMeter } from '../src/topics/rate.js';
import type { Cursor, Entry, ManagedLedger, Position } from '../src/storage/index.js';
import { keyHashOf, Subscription } from '../src/topics/subscription.js';

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
    durable: true, name: 'sub', properties: {},
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
/** Every delivery to any consumer, in the order it happened. */
const deliveryLog: DispatchEntry[] = [];
function consumer(name: string, options: { priority?: number; sticky?: Array<{ start: number; end: number }> } = {}) {
  const got: DispatchEntry[] = [];
  const active: boolean[] = [];
  const c = new Consumer(
    { id: ++ids, name, priority: options.priority ?? 0, stickyRanges: options.sticky ?? [], nackDelayMs: 10 },
    { deliver: (es) => { got.push(...es); deliveryLog.push(...es); }, activeChange: (a) => active.push(a), closed: () => undefined },
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

  it('shared prefers the lowest priority level while it has permits', async () => {
    const { sub, ledger } = makeSubscription();
    const hi = consumer('hi', { priority: 0 });
    const lo = consumer('lo', { priority: 1 });
    sub.addConsumer(lo.c, 'SHARED_SUB');
    sub.addConsumer(hi.c, 'SHARED_SUB');
    sub.flow(lo.c, 100);
    sub.flow(hi.c, 3);
    for (let i = 0; i < 5; i++) ledger.append('k');
    await settle();
    expect(hi.got).toHaveLength(3);
    expect(lo.got).toHaveLength(2);
    expect(hi.got.map((e) => e.position.entryId)).toEqual([0, 1, 2]);
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

  it('key_shared: when a consumer leaves, its unacked entries reach the new owner before newer ones of the key', async () => {
    const { sub, ledger } = makeSubscription();
    const a = consumer('a');
    sub.addConsumer(a.c, 'KEY_SHARED_SUB');
    sub.flow(a.c, 100);
    for (let i = 0; i < 5; i++) ledger.append('K');
    await settle();
    expect(a.got).toHaveLength(5);
    const b = consumer('b');
    sub.addConsumer(b.c, 'KEY_SHARED_SUB');
    sub.flow(b.c, 100);
    for (let i = 0; i < 5; i++) ledger.append('K');
    await settle();
    // K is held by a (unacked): if K now maps to b, b must not have it yet.
    expect(b.got).toHaveLength(0);
    sub.removeConsumer(a.c);
    await settle();
    expect(b.got.map((e) => e.position.entryId)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(b.got.slice(0, 5).every((e) => e.redeliveryCount === 1)).toBe(true);
  });

  it.each(['SHARED_SUB', 'KEY_SHARED_SUB', 'FAILOVER_SUB'] as const)('randomized %s: consumers come and go, nack and redeliver; nothing is lost, no entry is held twice', async (type) => {
    for (const seed of [1, 2, 3]) {
      deliveryLog.length = 0;
      const random = new Random(seed);
      const { sub, ledger, fc } = makeSubscription(-1, 8);
      const live: Array<ReturnType<typeof consumer>> = [];
      const keys = ['a', 'b', 'c', 'd', 'e'];
      let appended = 0;
      const check = () => {
        const held = new Map<number, string>();
        const holderOfKey = new Map<number, string>();
        for (const x of live) {
          expect(x.c.permits).toBeGreaterThanOrEqual(0);
          for (const p of x.c.pending.values()) {
            expect(held.has(p.position.entryId)).toBe(false);
            held.set(p.position.entryId, x.c.name);
            if (type === 'KEY_SHARED_SUB') {
              const other = holderOfKey.get(p.keyHash);
              expect(other === undefined || other === x.c.name).toBe(true);
              holderOfKey.set(p.keyHash, x.c.name);
            }
          }
        }
      };
      for (let step = 0; step < 300; step++) {
        const r = random.next();
        if (r < 0.1 || live.length === 0) {
          const x = consumer(`c${step}`);
          sub.addConsumer(x.c, type);
          live.push(x);
        } else if (r < 0.15 && live.length > 1) {
          const x = live.splice(random.int(0, live.length), 1)[0]!;
          sub.removeConsumer(x.c);
        } else if (r < 0.45) {
          ledger.append(keys[random.int(0, keys.length)]!);
          appended++;
        } else if (r < 0.6) {
          sub.flow(random.pick(live).c, random.int(1, 5));
        } else if (r < 0.85) {
          const x = random.pick(live);
          const pending = [...x.c.pending.values()].map((p) => p.position);
          const some = pending.filter(() => random.next() < 0.7);
          if (some.length) await sub.ack(x.c, some, false);
        } else if (r < 0.95) {
          const x = random.pick(live);
          const pending = [...x.c.pending.values()].map((p) => p.position);
          if (pending.length) sub.redeliverUnacknowledged(x.c, pending.slice(0, 1));
        } else {
          const x = random.pick(live);
          const pending = [...x.c.pending.values()].map((p) => p.position);
          if (pending.length) sub.nack(x.c, pending.slice(0, 1));
        }
        await new Promise((res) => setImmediate(res));
        check();
      }
      // Drain: everyone gets permits and acks everything until all entries are acked.
      const deadline = Date.now() + 5000;
      while (fc.acked.size < appended && Date.now() < deadline) {
        for (const x of live) {
          sub.flow(x.c, 10);
          const pending = [...x.c.pending.values()].map((p) => p.position);
          if (pending.length) await sub.ack(x.c, pending, false);
        }
        await settle();
        check();
      }
      expect(fc.acked.size).toBe(appended);
      if (type === 'KEY_SHARED_SUB') {
        // First deliveries of each key, across all consumers, happened in entry order.
        const byKey = new Map<string, number[]>();
        for (const e of deliveryLog.filter((g) => g.redeliveryCount === 0)) {
          const k = e.envelope.metadata!.batchKey;
          byKey.set(k, [...(byKey.get(k) ?? []), e.position.entryId]);
        }
        for (const l of byKey.values()) expect(l).toEqual([...l].sort((m, n) => m - n));
      }
      await sub.close('test over');
    }
  });
});
