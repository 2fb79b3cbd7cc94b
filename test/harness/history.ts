/**
 * A record of what producers were told and what consumers saw, and the checks DESIGN.md "Guarantees"
 * promises (etcd robustness-suite style): every acknowledged message delivered, order per producer kept,
 * duplicates only where allowed.
 *
 * Messages carry `${producer}:${seq}` (seq from 0, one producer = one ordered stream) so the checker
 * needs nothing but the records.
 *
 * Acknowledgements by consumers are durable only once the broker persisted its cursor (batched,
 * DESIGN.md "Guarantees"): an acknowledged message may come again only after a fault that struck less
 * than that window (`ackDurableAfterMs`) after its acknowledgement, never otherwise.
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
  /**
   * Delivered again after a consumer acknowledged it, with no fault within `ackDurableAfterMs` after
   * the acknowledgement (so it had been persisted): must be empty. Only with `check({ faultTimesMs })`.
   */
  redeliveredAfterAck: string[];
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
  /** When a consumer first acknowledged each payload. */
  private readonly consumerAckedAt = new Map<string, number>();
  /** Deliveries of a payload already delivered before. */
  private readonly redeliveries: Array<{ payload: string; stream: string; atMs: number }> = [];

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
  receivedBy(stream: string, payload: string, messageId?: string, atMs = Date.now()): void {
    if (this.received.has(payload)) this.redeliveries.push({ payload, stream, atMs });
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

  /** Call when a consumer acknowledged `payload` (the SDK accepted the acknowledgement). */
  consumerAcknowledged(payload: string, atMs = Date.now()): void {
    if (!this.consumerAckedAt.has(payload)) this.consumerAckedAt.set(payload, atMs);
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

  /**
   * `faultPeriod` (from the first fault step's start to the moment the cluster was whole again) and
   * `ackDurableAfterMs` turn on the redelivered-after-acknowledgement check.
   */
  check(options: { faultPeriod?: { fromMs: number; toMs: number }; ackDurableAfterMs?: number } = {}): HistoryReport {
    const lost = [...this.acked].filter((k) => !this.received.has(k));
    const duplicates = [...this.received].filter(([, n]) => n > 1).map(([k]) => k);
    const phantom = [...this.received.keys()].filter((k) => !this.sent.has(k));
    const storedTwice = [...this.ids].filter(([, s]) => s.size > 1).map(([k]) => k);
    return {
      acknowledged: this.acked.size, delivered: this.received.size, lost, duplicates, reordered: [...this.reorders], phantom, storedTwice,
      redeliveredAfterAck: options.faultPeriod && options.ackDurableAfterMs !== undefined
        ? this.#redeliveredAfterAck(options.faultPeriod, options.ackDurableAfterMs)
        : [],
    };
  }

  #redeliveredAfterAck(faults: { fromMs: number; toMs: number }, windowMs: number): string[] {
    const out: string[] = [];
    for (const r of this.redeliveries) {
      const ackedAt = this.consumerAckedAt.get(r.payload);
      if (ackedAt === undefined || ackedAt > r.atMs) continue;
      // An acknowledgement given less than the window before the faults, or while they lasted (to a
      // broker about to die or cut off etcd, or while the consumer was disconnected), may be lost with
      // them; one given well before, or well after the cluster was whole again, may not.
      const excused = r.atMs >= faults.fromMs && ackedAt >= faults.fromMs - windowMs && ackedAt <= faults.toMs + windowMs;
      if (!excused) out.push(`${r.payload} on ${r.stream}: acknowledged at ${ackedAt}, delivered again at ${r.atMs} (faults ${faults.fromMs}..${faults.toMs}, window ${windowMs} ms)`);
    }
    return out;
  }
}
