/**
 * Where this client's own producers last stored a message, per topic (or partition): a lower bound
 * of each topic's end that needs no request. A reader's synchronous hasNext() uses it, so that
 * "send, flush, hasNext()" in one client answers true at once, as pulsar-client's blocking call does.
 * Bounded: past MAX_TOPICS the oldest entry goes (the reader then waits for the broker's answer).
 */
export class PublishedEnds {
  static readonly MAX_TOPICS = 10_000;
  readonly #ends = new Map<string, { ledgerId: number; entryId: number }>();

  note(topic: string, ledgerId: number, entryId: number): void {
    if (ledgerId < 0) return;
    const prev = this.#ends.get(topic);
    if (prev && (prev.ledgerId > ledgerId || (prev.ledgerId === ledgerId && prev.entryId >= entryId))) return;
    if (prev) this.#ends.delete(topic); // re-insert: the map's order is recency
    else if (this.#ends.size >= PublishedEnds.MAX_TOPICS) this.#ends.delete(this.#ends.keys().next().value!);
    this.#ends.set(topic, { ledgerId, entryId });
  }

  get(topic: string): { ledgerId: number; entryId: number } | undefined {
    return this.#ends.get(topic);
  }
}
