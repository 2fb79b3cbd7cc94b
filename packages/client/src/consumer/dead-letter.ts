// Invariants: an entry over maxRedeliverCount is acknowledged only after all its messages were written to
// the dead-letter topic, so a failure anywhere leaves it to be redelivered and dead-lettered again: a
// message may reach the dead-letter topic twice, but is never lost. One entry at a time (`#chain`), on one
// producer created on first use (after the policy's initial subscription, so that nothing is missed).
import type { Logger } from '../logger.js';
import type { Message, MessageId, ProducerMessage } from '../message.js';
import type { Producer, ProducerConfig } from '../producer.js';
import type { CompiledConsumerConfig, ConsumerOptions } from './config.js';
import type { TopicConsumer } from './topic-consumer.js';

/** What dead-lettering needs from the client. */
export interface DeadLetterHost {
  createProducer(config: ProducerConfig): Promise<Producer>;
  subscribe(config: Omit<ConsumerOptions<never>, 'listener'>): Promise<{ close(): Promise<unknown> }>;
}

type DeadLetterSettings = NonNullable<CompiledConsumerConfig<unknown>['deadLetter']>;

/** Moves over-delivered entries to the dead-letter topic. */
export class DeadLetterSender {
  readonly #dlq: DeadLetterSettings;
  readonly #host: DeadLetterHost;
  readonly #log: Logger;
  #producer: Promise<Producer> | undefined;
  #chain: Promise<void> = Promise.resolve();

  constructor(dlq: DeadLetterSettings, host: DeadLetterHost, log: Logger) {
    this.#dlq = dlq;
    this.#host = host;
    this.#log = log;
  }

  /** Queues the entry's messages for the dead-letter topic; calls tc.consumed() once dealt with. */
  send(tc: TopicConsumer, messages: Message[], entry: MessageId): void {
    const dlq = this.#dlq;
    this.#chain = this.#chain.then(async () => {
      try {
        await this.publish(messages);
        await tc.acknowledge(entry);
        this.#log.info({ entry: entry.toString(), deadLetterTopic: dlq.topic }, 'message sent to the dead-letter topic');
      } catch (err) {
        // Leave it unacknowledged: it comes again and the dead-lettering is retried.
        this.#log.error({ err, entry: entry.toString() }, 'cannot dead-letter a message; it will be redelivered');
        tc.negativeAcknowledge([entry]);
      } finally {
        tc.consumed();
      }
    });
  }

  /**
   * Writes messages to the dead-letter topic (resolves once stored), with Pulsar's REAL_TOPIC and
   * ORIGIN_MESSAGE_ID (kept from an earlier hop, such as the retry topic). Does not acknowledge them.
   */
  async publish(messages: readonly Message[]): Promise<void> {
    const dlq = this.#dlq;
    if (!this.#producer) {
      this.#producer = (async () => {
        if (dlq.initialSubscriptionName) {
          const sub = await this.#host.subscribe({ topic: dlq.topic, subscription: dlq.initialSubscriptionName, subscriptionInitialPosition: 'Earliest' });
          await sub.close();
        }
        return this.#host.createProducer({ topic: dlq.topic, batchingEnabled: false, sendTimeoutMs: 0 });
      })();
      this.#producer.catch(() => { this.#producer = undefined; });
    }
    const producer = await this.#producer;
    await Promise.all(messages.map((m) => producer.send(forwarded(m, {}))));
  }

  /** Waits for the entries queued so far, then closes the producer. */
  async close(): Promise<void> {
    await this.#chain;
    if (this.#producer) await this.#producer.then((p) => p.close()).catch(() => undefined);
  }
}

/**
 * A message as it is written to a retry or dead-letter topic: its data, key and event time, its
 * properties plus `extra`, and where it first came from (REAL_TOPIC, ORIGIN_MESSAGE_ID), which a
 * message from the retry topic already carries.
 */
export function forwarded(m: Message, extra: Record<string, string>): ProducerMessage {
  const props = m.getProperties();
  return {
    data: m.getData(),
    properties: {
      ...props, ...extra,
      REAL_TOPIC: props.REAL_TOPIC ?? m.getTopicName(),
      ORIGIN_MESSAGE_ID: props.ORIGIN_MESSAGE_ID ?? m.getMessageId().toString(),
    },
    ...(m.getPartitionKey() ? { partitionKey: m.getPartitionKey() } : {}),
    ...(m.getEventTimestamp() ? { eventTimestamp: m.getEventTimestamp() } : {}),
  };
}
