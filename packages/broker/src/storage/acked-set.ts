import type { AckedRange, Position } from './api.js';

/**
 * Individually acknowledged positions after a cursor's mark-delete position, as inclusive entry-id
 * ranges per ledger (a range never spans ledgers). Ranges in one ledger are sorted, disjoint and not
 * adjacent (adjacent ones are merged).
 */
export class AckedSet {
  private readonly ranges = new Map<number, Array<[number, number]>>();
  private total = 0;
  private rangeTotal = 0;

  get entryCount(): number {
    return this.total;
  }

  get rangeCount(): number {
    return this.rangeTotal;
  }

  contains(p: Position): boolean {
    const rs = this.ranges.get(p.ledgerId);
    if (!rs) return false;
    const i = this.indexOfFirstEndingAtOrAfter(rs, p.entryId);
    const r = rs[i];
    return r !== undefined && r[0] <= p.entryId;
  }

  /** Adds one position; returns false if it was already there. */
  add(p: Position): boolean {
    return this.addRange(p.ledgerId, p.entryId, p.entryId) > 0;
  }

  /** Adds [from, to] in one ledger; returns how many positions were new. */
  addRange(ledgerId: number, from: number, to: number): number {
    let rs = this.ranges.get(ledgerId);
    if (!rs) this.ranges.set(ledgerId, (rs = []));
    // Ranges that overlap or touch [from, to] are merged into one.
    let i = this.indexOfFirstEndingAtOrAfter(rs, from - 1);
    let lo = from;
    let hi = to;
    let removedCount = 0;
    let removedRanges = 0;
    const start = i;
    while (i < rs.length && (rs[i] as [number, number])[0] <= to + 1) {
      const r = rs[i] as [number, number];
      lo = Math.min(lo, r[0]);
      hi = Math.max(hi, r[1]);
      removedCount += r[1] - r[0] + 1;
      removedRanges++;
      i++;
    }
    rs.splice(start, removedRanges, [lo, hi]);
    const added = hi - lo + 1 - removedCount;
    this.total += added;
    this.rangeTotal += 1 - removedRanges;
    return added;
  }

  /** The range containing p, if any. */
  rangeAt(p: Position): [number, number] | undefined {
    const rs = this.ranges.get(p.ledgerId);
    if (!rs) return undefined;
    const r = rs[this.indexOfFirstEndingAtOrAfter(rs, p.entryId)];
    return r !== undefined && r[0] <= p.entryId ? [r[0], r[1]] : undefined;
  }

  /** Forgets every position <= p. */
  removeUpTo(p: Position): void {
    for (const [ledgerId, rs] of [...this.ranges]) {
      if (ledgerId < p.ledgerId) {
        this.dropLedger(ledgerId, rs);
      } else if (ledgerId === p.ledgerId) {
        while (rs.length > 0) {
          const r = rs[0] as [number, number];
          if (r[0] > p.entryId) break;
          if (r[1] <= p.entryId) {
            rs.shift();
            this.total -= r[1] - r[0] + 1;
            this.rangeTotal--;
          } else {
            this.total -= p.entryId - r[0] + 1;
            r[0] = p.entryId + 1;
            break;
          }
        }
        if (rs.length === 0) this.ranges.delete(ledgerId);
      }
    }
  }

  clear(): void {
    this.ranges.clear();
    this.total = 0;
    this.rangeTotal = 0;
  }

  /** All ranges ascending; at most `limit` (the lowest ones). */
  list(limit = Infinity): AckedRange[] {
    const out: AckedRange[] = [];
    for (const ledgerId of [...this.ranges.keys()].sort((a, b) => a - b)) {
      for (const [from, to] of this.ranges.get(ledgerId) ?? []) {
        if (out.length >= limit) return out;
        out.push({ from: { ledgerId, entryId: from }, to: { ledgerId, entryId: to } });
      }
    }
    return out;
  }

  private dropLedger(ledgerId: number, rs: Array<[number, number]>): void {
    for (const r of rs) this.total -= r[1] - r[0] + 1;
    this.rangeTotal -= rs.length;
    this.ranges.delete(ledgerId);
  }

  private indexOfFirstEndingAtOrAfter(rs: Array<[number, number]>, entryId: number): number {
    let lo = 0;
    let hi = rs.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((rs[mid] as [number, number])[1] < entryId) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
