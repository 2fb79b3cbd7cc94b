import type { Entry, Position } from './api.js';
import { comparePositions } from './api.js';

interface Slot {
  readonly owner: string;
  readonly key: string;
  readonly entry: Entry;
}

/**
 * The broker-wide cache of recently appended entries, so that cursors that keep up are served from
 * memory. Bounded in payload bytes (`maxBytes`, shared by every managed ledger).
 *
 * Invariants:
 * - Only appends are inserted, in append order, so each owner's entries are ascending by position and
 *   eviction "before a position" pops from the front.
 * - Total bytes <= maxBytes after every insert: the globally oldest entries are evicted first. An entry
 *   larger than maxBytes is not cached.
 * - Entries are immutable once stored, so a cached payload equals what the bookies hold.
 */
export class EntryCache {
  private readonly global = new Map<string, Slot>();
  private readonly byOwner = new Map<string, Map<string, Slot>>();
  private readonly ownerBytes = new Map<string, number>();
  private bytes = 0;
  hits = 0;
  misses = 0;

  constructor(readonly maxBytes: number) {}

  get sizeBytes(): number {
    return this.bytes;
  }

  ownerSizeBytes(owner: string): number {
    return this.ownerBytes.get(owner) ?? 0;
  }

  insert(owner: string, entry: Entry): void {
    const size = entry.payload.length;
    if (size > this.maxBytes || this.maxBytes === 0) return;
    const key = `${owner}\u0000${entry.position.ledgerId}:${entry.position.entryId}`;
    if (this.global.has(key)) return;
    while (this.bytes + size > this.maxBytes) {
      const oldest = this.global.values().next().value as Slot | undefined;
      if (!oldest) break;
      this.remove(oldest);
    }
    const slot: Slot = { owner, key, entry };
    this.global.set(key, slot);
    let mine = this.byOwner.get(owner);
    if (!mine) this.byOwner.set(owner, (mine = new Map()));
    mine.set(key, slot);
    this.bytes += size;
    this.ownerBytes.set(owner, (this.ownerBytes.get(owner) ?? 0) + size);
  }

  get(owner: string, p: Position): Entry | undefined {
    const slot = this.byOwner.get(owner)?.get(`${owner}\u0000${p.ledgerId}:${p.entryId}`);
    if (slot) this.hits++;
    else this.misses++;
    return slot?.entry;
  }

  /** Drops the owner's entries strictly before `p` (every active reader is past them). */
  evictBefore(owner: string, p: Position): void {
    const mine = this.byOwner.get(owner);
    if (!mine) return;
    for (const slot of mine.values()) {
      if (comparePositions(slot.entry.position, p) >= 0) break;
      this.remove(slot);
    }
  }

  /** Drops everything of one owner (managed ledger closed, or no active reader). */
  clear(owner: string): void {
    const mine = this.byOwner.get(owner);
    if (!mine) return;
    for (const slot of [...mine.values()]) this.remove(slot);
    this.byOwner.delete(owner);
    this.ownerBytes.delete(owner);
  }

  private remove(slot: Slot): void {
    this.global.delete(slot.key);
    this.byOwner.get(slot.owner)?.delete(slot.key);
    const size = slot.entry.payload.length;
    this.bytes -= size;
    this.ownerBytes.set(slot.owner, (this.ownerBytes.get(slot.owner) ?? size) - size);
  }
}
