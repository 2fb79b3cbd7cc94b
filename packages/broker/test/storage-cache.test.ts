import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AckedSet } from '../src/storage/acked-set.js';
import type { Position } from '../src/storage/api.js';
import { EntryCache } from '../src/storage/entry-cache.js';
import { StorageTestEnv, payloadOf, uniqueName } from './storage-helpers.js';

const pos = (ledgerId: number, entryId: number): Position => ({ ledgerId, entryId });

describe('EntryCache', () => {
  it('stays within maxBytes, evicting the oldest entries first', () => {
    const cache = new EntryCache(100);
    for (let i = 0; i < 10; i++) cache.insert('a', { position: pos(1, i), payload: Buffer.alloc(30) });
    expect(cache.sizeBytes).toBe(90);
    expect(cache.get('a', pos(1, 6))).toBeUndefined();
    expect(cache.get('a', pos(1, 7))).toBeDefined();
    cache.insert('a', { position: pos(1, 10), payload: Buffer.alloc(101) }); // larger than the cache: not cached
    expect(cache.get('a', pos(1, 10))).toBeUndefined();
    expect(cache.sizeBytes).toBeLessThanOrEqual(100);
  });

  it('evicts per owner before a position, and shares the budget between owners', () => {
    const cache = new EntryCache(1000);
    for (let i = 0; i < 5; i++) {
      cache.insert('a', { position: pos(1, i), payload: Buffer.alloc(10) });
      cache.insert('b', { position: pos(7, i), payload: Buffer.alloc(10) });
    }
    cache.evictBefore('a', pos(1, 3));
    expect(cache.ownerSizeBytes('a')).toBe(20);
    expect(cache.ownerSizeBytes('b')).toBe(50);
    cache.clear('b');
    expect(cache.sizeBytes).toBe(20);
  });

  it('a zero budget disables caching', () => {
    const cache = new EntryCache(0);
    cache.insert('a', { position: pos(1, 0), payload: Buffer.alloc(1) });
    expect(cache.sizeBytes).toBe(0);
  });
});

describe('AckedSet', () => {
  it('merges adjacent and overlapping ranges and counts positions', () => {
    const s = new AckedSet();
    for (const e of [5, 7, 6, 1, 2, 10]) s.add(pos(3, e));
    expect(s.list().map((r) => [r.from.entryId, r.to.entryId])).toEqual([[1, 2], [5, 7], [10, 10]]);
    expect(s.entryCount).toBe(6);
    expect(s.rangeCount).toBe(3);
    expect(s.add(pos(3, 6))).toBe(false);
    expect(s.addRange(3, 0, 11)).toBe(6);
    expect(s.rangeCount).toBe(1);
    expect(s.contains(pos(3, 11))).toBe(true);
    expect(s.contains(pos(3, 12))).toBe(false);
    expect(s.contains(pos(4, 1))).toBe(false);
  });

  it('removeUpTo drops whole earlier ledgers and cuts a range', () => {
    const s = new AckedSet();
    s.addRange(1, 0, 9);
    s.addRange(2, 3, 8);
    s.addRange(3, 0, 0);
    s.removeUpTo(pos(2, 5));
    expect(s.list().map((r) => [r.from.ledgerId, r.from.entryId, r.to.entryId])).toEqual([[2, 6, 8], [3, 0, 0]]);
    expect(s.entryCount).toBe(4);
    expect(s.list(1).length).toBe(1);
  });
});

describe('entry cache in the managed ledger', () => {
  let env: StorageTestEnv;
  beforeEach(async () => {
    env = await StorageTestEnv.create();
  });
  afterEach(async () => {
    await env.close();
  });

  it('serves tailing cursors from memory and evicts what every active cursor has read', async () => {
    const ml = await env.broker({ entryCacheSizeBytes: 1024 * 1024 }).open(uniqueName());
    const a = await ml.openCursor('a');
    const b = await ml.openCursor('b');
    const snapshotOnly = await ml.openCursor('acked-only'); // never reads: never pins the cache
    // Tailing cursors have read before (and are waiting for more).
    expect(await a.read({ maxEntries: 1 })).toEqual([]);
    expect(await b.read({ maxEntries: 1 })).toEqual([]);
    for (let i = 0; i < 10; i++) await ml.append(payloadOf(i));
    await snapshotOnly.ackCumulative(ml.lastConfirmed, { properties: { seq: '9' } });
    expect(ml.stats().cacheSizeBytes).toBeGreaterThan(0);
    expect((await a.read({ maxEntries: 100 })).length).toBe(10);
    expect(ml.stats().cacheHits).toBe(10);
    expect(ml.stats().cacheMisses).toBe(0);
    // b has not read yet: entries stay.
    expect(ml.stats().cacheSizeBytes).toBeGreaterThan(0);
    expect((await b.read({ maxEntries: 100 })).length).toBe(10);
    expect(ml.stats().cacheSizeBytes).toBe(0);
    expect(ml.stats().cacheHits).toBe(20);
  });

  it('an inactive cursor does not pin the cache; catching up reads from the bookies', async () => {
    const ml = await env.broker({ entryCacheSizeBytes: 1024 * 1024 }).open(uniqueName());
    const tailing = await ml.openCursor('tailing');
    const idle = await ml.openCursor('idle');
    await tailing.read({ maxEntries: 1 });
    await idle.read({ maxEntries: 1 });
    idle.setActive(false);
    for (let i = 0; i < 5; i++) await ml.append(payloadOf(i));
    await tailing.read({ maxEntries: 100 });
    expect(ml.stats().cacheSizeBytes).toBe(0);
    idle.setActive(true);
    expect((await idle.read({ maxEntries: 100 })).map((e) => e.payload.toString())).toEqual([0, 1, 2, 3, 4].map((i) => `entry-${i}`));
    expect(ml.stats().cacheMisses).toBeGreaterThan(0);
  });

  it('the shared budget bounds the cache across managed ledgers', async () => {
    const factory = env.broker({ entryCacheSizeBytes: 1000 });
    const x = await factory.open(uniqueName());
    const y = await factory.open(uniqueName());
    await (await x.openCursor('s')).read({ maxEntries: 1 });
    await (await y.openCursor('s')).read({ maxEntries: 1 });
    for (let i = 0; i < 30; i++) {
      await x.append(Buffer.alloc(50));
      await y.append(Buffer.alloc(50));
    }
    expect(factory.cache.sizeBytes).toBeLessThanOrEqual(1000);
    expect(x.stats().cacheSizeBytes + y.stats().cacheSizeBytes).toBe(factory.cache.sizeBytes);
    // Evicted entries are still readable from the bookies.
    expect((await x.read(x.firstPosition, { maxEntries: 100 })).length).toBe(30);
  });
});
