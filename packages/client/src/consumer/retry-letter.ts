// Invariants: a message is acknowledged on its topic only after its copy is stored on the retry (or
// dead-letter) topic, so a crash in between leaves a duplicate, never a loss. RECONSUMETIMES counts the
// hops: a message whose next hop would exceed maxReconsumeTimes goes to the dead-letter topic instead.
import type { Message } from '../message.js';
import type { Producer, ProducerConfig } from '../producer.js';
import type { CompiledConsumerConfig } from './config.js';
import { forwarded, type DeadLetterSender } from './dead-letter.js';

type RetrySettings = NonNullable<CompiledConsumerConfig<unknown>['retry']>;

/** Pulsar's longest retry delay is unbounded; Strata's is a week, past which a delay is refused. */
export const MAX_RECONSUME_DELAY_MS = 7 * 24 * 3600_000;

/** Moves messages to the retry letter topic, to come back after a delay (Pulsar's reconsumeLater). */
export class RetryLetterSender {
  readonly #retry: RetrySettings;
  readonly #deadLetters: DeadLetterSender;
  readonly #createProducer: (config: ProducerConfig) => Promise<Producer>;
  #producer: Promise<Producer> | undefined;

  constructor(retry: RetrySettings, deadLetters: DeadLetterSender, createProducer: (config: ProducerConfig) => Promise<Producer>) {
    this.#retry = retry;
    this.#deadLetters = deadLetters;
    this.#createProducer = createProducer;
  }

  /**
   * Stores the message's next hop (retry topic, or dead-letter topic past the limit); resolves once
   * stored. `delayMs` is an integer in [0, MAX_RECONSUME_DELAY_MS] (the caller checked).
   */
  async forward(message: Message, delayMs: number): Promise<void> {
    const times = Number(message.getProperties().RECONSUMETIMES ?? 0) + 1;
    if (!(times <= this.#retry.maxReconsumeTimes)) {
      await this.#deadLetters.publish([message]);
      return;
    }
    this.#producer ??= this.#createProducer({ topic: this.#retry.topic, batchingEnabled: false, sendTimeoutMs: 0 });
    this.#producer.catch(() => { this.#producer = undefined; });
    const producer = await this.#producer;
    await producer.send({ ...forwarded(message, { RECONSUMETIMES: String(times), DELAY_TIME: String(delayMs) }), deliverAfter: delayMs });
  }

  async close(): Promise<void> {
    if (this.#producer) await this.#producer.then((p) => p.close()).catch(() => undefined);
  }
}
