/**
 * A record of what producers were told and what consumers saw, and the checks DESIGN.md "Guarantees"
 * promises (etcd robustness-suite style): every acknowledged message delivered, order per producer kept,
 * duplicates only where allowed.
 *
 * Messages carry `${producer}:${seq}` (seq from 0, one producer = one ordered stream) so the checker
 * needs nothing but the records.
 */
export interface HistoryReport {
  acknowledged: number;
  delivered: number;
  /** Acknowledged to a producer but never delivered: must be empty. */
  lost: string[];
  /** Delivered more than once (by message, ignoring redelivery of unacknowledged ones when allowed). */
  duplicates: string[];
  /** Delivered before a lower sequence of the same producer on the same consumer stream. */
  reordered: string[];
  /** Delivered but never sent: must be empty (would mean corruption). */
  phantom: string[];
  /**
   * Delivered under two or more message ids: stored twice (a producer's resend the broker did not
   * deduplicate), as opposed to a redelivery of one stored message. Must be empty with dedup on.
   * Only messages received with an id are counted.
   */
  storedTwice: string[];
}

export class History {
  private readonly sent = new Set<string>();
  private readonly acked = new Set<string>();
  private readonly received = new Map<string, number>();
  private readonly reorders: string[] = [];
  /** Highest sequence seen per (consumer stream, producer). */
  private readonly highest = new Map<string, number>();
  /** Distinct message ids each payload was delivered under. */
  private readonly ids = new Map<string, Set<string>>();

  static key(producer: string, seq: number): string {
    return `${producer}:${seq}`;
  }

  /** Call before send(). */
  sending(producer: string, seq: number): string {
    const key = History.key(producer, seq);
    this.sent.add(key);
    return key;
  }

  /** Call when send() resolved. */
  acknowledged(key: string): void {
    this.acked.add(key);
  }

  /**
   * Call for each message a consumer receives. `stream` names one ordered delivery stream (a consumer
   * of an Exclusive or Failover subscription, or a key on Key_Shared); order is checked within it,
   * allowing a redelivery to go back (a message already received may come again). `messageId` (its
   * string form) tells a redelivery from a second stored copy.
   */
  receivedBy(stream: string, payload: string, messageId?: string): void {
    if (messageId !== undefined) {
      const seen = this.ids.get(payload) ?? new Set<string>();
      seen.add(messageId);
      this.ids.set(payload, seen);
    }
    const match = /^(.*):(\d+)$/.exec(payload);
    if (!match) {
      this.received.set(payload, (this.received.get(payload) ?? 0) + 1);
      return;
    }
    const [, producer, seqText] = match as unknown as [string, string, string];
    const seq = Number(seqText);
    const count = (this.received.get(payload) ?? 0) + 1;
    this.received.set(payload, count);
    const orderKey = `${stream}\u0000${producer}`;
    const highest = this.highest.get(orderKey) ?? -1;
    if (seq < highest && count === 1) this.reorders.push(`${payload} after ${producer}:${highest} on ${stream}`);
    if (seq > highest) this.highest.set(orderKey, seq);
  }

  /** Every message acknowledged to its producer so far. */
  acknowledgedKeys(): string[] {
    return [...this.acked];
  }

  /** Acknowledged to a producer and not yet delivered (cheap enough to poll while draining). */
  missing(): number {
    let n = 0;
    for (const k of this.acked) if (!this.received.has(k)) n++;
    return n;
  }

  check(): HistoryReport {
    const lost = [...this.acked].filter((k) => !this.received.has(k));
    const duplicates = [...this.received].filter(([, n]) => n > 1).map(([k]) => k);
    const phantom = [...this.received.keys()].filter((k) => !this.sent.has(k));
    const storedTwice = [...this.ids].filter(([, s]) => s.size > 1).map(([k]) => k);
    return { acknowledged: this.acked.size, delivered: this.received.size, lost, duplicates, reordered: [...this.reorders], phantom, storedTwice };
  }
}
