// Invariants: an entry is in `#unackedSince` from the first time one of its messages was handed to the
// application until it is acknowledged, negatively acknowledged, purged or redelivered; its clock starts
// once, at that first hand-out, so that ackTimeoutMs bounds how long the application may sit on it.
// With ackTimeoutMs 0 nothing is ever tracked and no timer runs.
import type { Logger } from '../logger.js';
import { compareMessageIds, type MessageId } from '../message.js';
import type { Clock } from '../util.js';
import type { TopicConsumer } from './topic-consumer.js';

/** Redelivers entries handed out but not acknowledged within ackTimeoutMs. */
export class AckTimeouts {
  readonly #clock: Clock;
  readonly #ackTimeoutMs: number;
  readonly #log: Logger;
  /** Entry key -> when it was handed out, for ackTimeoutMs. */
  readonly #unackedSince = new Map<string, { at: number; id: MessageId; tc: TopicConsumer }>();
  #timer: NodeJS.Timeout | undefined;

  constructor(clock: Clock, ackTimeoutMs: number, log: Logger) {
    this.#clock = clock;
    this.#ackTimeoutMs = ackTimeoutMs;
    this.#log = log;
  }

  start(): void {
    if (this.#ackTimeoutMs > 0) {
      const every = Math.max(100, Math.min(1000, Math.floor(this.#ackTimeoutMs / 10)));
      this.#timer = setInterval(() => this.#redeliverExpired(), every);
      this.#timer.unref?.();
    }
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
  }

  /** A message of this entry was handed to the application. */
  handedOut(tc: TopicConsumer, id: MessageId): void {
    if (this.#ackTimeoutMs <= 0) return;
    const key = `${tc.topic}|${id.ledgerId}:${id.entryId}`;
    if (!this.#unackedSince.has(key)) this.#unackedSince.set(key, { at: this.#clock.now(), id, tc });
  }

  /** Acknowledged (or negatively acknowledged: the broker redelivers it after its own delay). */
  settled(tc: TopicConsumer, id: MessageId): void {
    if (this.#unackedSince.size > 0) this.#unackedSince.delete(`${tc.topic}|${id.ledgerId}:${id.entryId}`);
  }

  /** Acknowledged cumulatively: everything of `tc` up to `id`. */
  settledUpTo(tc: TopicConsumer, id: MessageId): void {
    for (const [key, v] of this.#unackedSince) if (v.tc === tc && compareMessageIds(v.id, id) <= 0) this.#unackedSince.delete(key);
  }

  /** The topic consumer's buffered messages were dropped (they come again). */
  forget(tc: TopicConsumer): void {
    for (const [key, v] of this.#unackedSince) if (v.tc === tc) this.#unackedSince.delete(key);
  }

  #redeliverExpired(): void {
    const limit = this.#clock.now() - this.#ackTimeoutMs;
    const byTc = new Map<TopicConsumer, MessageId[]>();
    for (const [key, v] of this.#unackedSince) {
      if (v.at > limit) continue;
      this.#unackedSince.delete(key);
      byTc.set(v.tc, [...(byTc.get(v.tc) ?? []), v.id]);
    }
    for (const [tc, ids] of byTc) {
      this.#log.debug({ topic: tc.topic, count: ids.length }, 'ack timeout: asking for redelivery');
      tc.redeliver(ids);
    }
  }
}
