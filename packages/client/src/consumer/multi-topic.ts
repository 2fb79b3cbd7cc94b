// Invariants: `#byTopic` holds exactly the topic consumers of the base topics in `#groups` (one per
// partition, or one for a non-partitioned topic), so a message id always routes to the stream it came
// from. With topicsPattern, `#groups` follows the pattern's matches: a topic gone is closed and its
// buffered messages purged. After close() no topic is added (one racing it is closed again at once).
import type { ClientContext } from '../context.js';
import { ClientErrorCode, operationError } from '../errors.js';
import type { Logger } from '../logger.js';
import { MessageId } from '../message.js';
import { partitionTopicName } from '../topic.js';
import type { CompiledConsumerConfig } from './config.js';
import { TopicConsumer, type MessageSink, type SubscriptionSpec } from './topic-consumer.js';

/** Where the topics come from (the client's lookups and admin listing). */
export interface TopicDirectory {
  listTopics(namespace: string): Promise<string[]>;
  partitions(topic: string): Promise<number>;
}

type TopicSelection = Pick<CompiledConsumerConfig<unknown>, 'topics' | 'pattern' | 'patternNamespace' | 'patternAutoDiscoveryPeriodMs'>;

/** The topic consumers of a subscription over topics, partitions and topicsPattern matches. */
export class SubscribedTopics {
  readonly #ctx: ClientContext;
  readonly #selection: TopicSelection;
  readonly #spec: SubscriptionSpec;
  readonly #sink: MessageSink;
  readonly #directory: TopicDirectory;
  readonly #log: Logger;
  readonly #byTopic = new Map<string, TopicConsumer>();
  /** Base topic -> its topic consumers (one per partition). */
  readonly #groups = new Map<string, TopicConsumer[]>();
  #patternTimer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(ctx: ClientContext, selection: TopicSelection, spec: SubscriptionSpec, sink: MessageSink, directory: TopicDirectory, log: Logger) {
    this.#ctx = ctx;
    this.#selection = selection;
    this.#spec = spec;
    this.#sink = sink;
    this.#directory = directory;
    this.#log = log;
  }

  /** Subscribes to the configured topics, or to those matching topicsPattern now. */
  async start(): Promise<void> {
    const topics = this.#selection.pattern ? await this.#matchPattern() : this.#selection.topics;
    await Promise.all(topics.map((t) => this.#addTopic(t)));
  }

  /** With topicsPattern: re-lists the namespace every patternAutoDiscoveryPeriodMs. */
  startDiscovery(): void {
    if (!this.#selection.pattern) return;
    let running = false; // one refresh at a time, however slow the broker answers
    this.#patternTimer = setInterval(() => {
      if (running) return;
      running = true;
      this.#refreshPattern()
        .catch((err: unknown) => this.#log.warn({ err }, 'topicsPattern refresh failed'))
        .finally(() => { running = false; });
    }, this.#selection.patternAutoDiscoveryPeriodMs);
    this.#patternTimer.unref?.();
  }

  /** Every topic consumer (one per partition of every topic). */
  all(): TopicConsumer[] {
    return [...this.#byTopic.values()];
  }

  /** The base topics subscribed to. */
  baseTopics(): string[] {
    return [...this.#groups.keys()];
  }

  /** The topic consumer a message id belongs to; `op` names the failing operation otherwise. */
  route(id: MessageId, op: string): TopicConsumer {
    if (!(id instanceof MessageId)) throw operationError(op, ClientErrorCode.INVALID_ARGUMENT, 'expected a MessageId');
    if (id.topic) {
      const tc = this.#byTopic.get(id.topic);
      if (tc) return tc;
      throw operationError(op, ClientErrorCode.INVALID_ARGUMENT, `this consumer is not subscribed to ${id.topic}`);
    }
    if (this.#byTopic.size === 1) return [...this.#byTopic.values()][0]!;
    if (this.#groups.size === 1 && id.partition >= 0) {
      const tc = [...this.#groups.values()][0]![id.partition];
      if (tc) return tc;
    }
    throw operationError(op, ClientErrorCode.INVALID_ARGUMENT, 'cannot tell which topic this message id belongs to');
  }

  /** Stops discovery and closes every topic consumer. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#patternTimer) clearInterval(this.#patternTimer);
    await Promise.allSettled([...this.#byTopic.values()].map((tc) => tc.close()));
  }

  async #addTopic(topic: string): Promise<void> {
    if (this.#groups.has(topic)) return;
    const partitions = await this.#directory.partitions(topic);
    const spec = this.#spec;
    const tcs = partitions === 0
      ? [new TopicConsumer(this.#ctx, spec, this.#sink, topic, -1)]
      : Array.from({ length: partitions }, (_, i) => new TopicConsumer(this.#ctx, spec, this.#sink, partitionTopicName(topic, i), i));
    this.#groups.set(topic, tcs);
    for (const tc of tcs) this.#byTopic.set(tc.topic, tc);
    const results = await Promise.allSettled(tcs.map((tc) => tc.start()));
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    // Closed meanwhile (a pattern refresh racing close()): close() did not see these.
    if (this.#closed) await this.#removeTopic(topic);
  }

  async #removeTopic(topic: string): Promise<void> {
    const tcs = this.#groups.get(topic) ?? [];
    this.#groups.delete(topic);
    for (const tc of tcs) this.#byTopic.delete(tc.topic);
    await Promise.allSettled(tcs.map(async (tc) => {
      await tc.close();
      this.#sink.purge(tc);
    }));
  }

  async #matchPattern(): Promise<string[]> {
    const names = await this.#directory.listTopics(this.#selection.patternNamespace!);
    const bases = new Set(names.map((n) => n.replace(/-partition-\d+$/, '')));
    return [...bases].filter((t) => this.#selection.pattern!.test(t)).sort();
  }

  async #refreshPattern(): Promise<void> {
    if (this.#closed) return;
    const want = new Set(await this.#matchPattern());
    for (const t of want) {
      if (!this.#groups.has(t)) {
        this.#log.info({ topic: t }, 'topicsPattern: new topic');
        await this.#addTopic(t).catch((err: unknown) => {
          this.#log.warn({ err, topic: t }, 'cannot subscribe to a new topic matching topicsPattern');
          return this.#removeTopic(t);
        });
      }
    }
    for (const t of [...this.#groups.keys()]) if (!want.has(t)) await this.#removeTopic(t);
  }
}
