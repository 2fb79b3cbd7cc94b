import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { TopicStats } from './generated/strata/broker/v1/TopicStats.js';

/**
 * The broker's Prometheus metrics (on the ServiceHost's registry, served at /metrics): broker-wide ones,
 * and per-topic / per-subscription gauges (`broker_topic_*`, `broker_subscription_*`, as Pulsar's
 * topic-level metrics) for at most `maxTopics` loaded topics, the busiest first, so that the label
 * cardinality stays bounded however many topics are loaded.
 */
export class BrokerMetrics {
  readonly publishedEntries: Counter<'result'>;
  readonly publishedMessages: Counter;
  readonly publishedBytes: Counter;
  readonly publishLatency: Histogram;
  readonly dispatchedEntries: Counter;
  readonly dispatchedBytes: Counter;
  readonly redeliveries: Counter;
  readonly droppedNonPersistent: Counter;

  constructor(
    registry: Registry,
    gauges: { topicsLoaded: () => number; pendingPublishes: () => number; topics: () => TopicSample[]; maxTopics: number },
  ) {
    const registers = [registry];
    this.publishedEntries = new Counter({ name: 'broker_publish_entries_total', help: 'Batches answered, by result (stored, duplicate, or the error code)', labelNames: ['result'], registers });
    this.publishedMessages = new Counter({ name: 'broker_publish_messages_total', help: 'Messages in stored batches', registers });
    this.publishedBytes = new Counter({ name: 'broker_publish_bytes_total', help: 'Batch bytes stored', registers });
    this.publishLatency = new Histogram({
      name: 'broker_publish_latency_seconds', help: 'From a batch read off the stream to its receipt (storage append included)',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1, 5], registers,
    });
    this.dispatchedEntries = new Counter({ name: 'broker_dispatch_entries_total', help: 'Entries delivered to consumers (redeliveries included)', registers });
    this.dispatchedBytes = new Counter({ name: 'broker_dispatch_bytes_total', help: 'Entry bytes delivered to consumers', registers });
    this.redeliveries = new Counter({ name: 'broker_redelivered_entries_total', help: 'Entries delivered again (nack, redeliver request, consumer gone)', registers });
    this.droppedNonPersistent = new Counter({ name: 'broker_non_persistent_dropped_entries_total', help: 'Non-persistent entries dropped for lack of permits', registers });
    new Gauge({ name: 'broker_topics_loaded', help: 'Topics loaded on this broker', registers, collect() { this.set(gauges.topicsLoaded()); } });
    new Gauge({ name: 'broker_pending_publishes', help: 'Batches accepted and not yet answered (broker-wide)', registers, collect() { this.set(gauges.pendingPublishes()); } });
    if (gauges.maxTopics > 0) topicGauges(registry, () => busiestTopics(gauges.topics(), gauges.maxTopics));
  }
}

/**
 * One loaded topic as the per-topic gauges report it. The caller (the topic registry) fills it: the
 * metrics know nothing of topics beyond these numbers, so they import no topic code.
 */
export interface TopicSample {
  stats: TopicStats;
  /** Consumers connected to the topic, over all its subscriptions. */
  consumers: number;
}

/** The `n` topics with the highest message rate in + out (ties by name, so a scrape is stable). */
export function busiestTopics(samples: readonly TopicSample[], n: number): TopicSample[] {
  const rate = ({ stats: t }: TopicSample) => Number(t.msgRateIn ?? 0) + Number(t.msgRateOut ?? 0);
  return [...samples].sort((a, b) => rate(b) - rate(a) || String(a.stats.topic).localeCompare(String(b.stats.topic))).slice(0, n);
}

/** Per-topic and per-subscription gauges, filled from one stats snapshot per scrape. */
function topicGauges(registry: Registry, snapshot: () => TopicSample[]): void {
  // prom-client collects metric by metric: they share the snapshot taken by the first of one scrape.
  let current: { at: number; samples: TopicSample[] } | undefined;
  const samples = () => {
    const now = Date.now();
    if (!current || now - current.at > 1_000) current = { at: now, samples: snapshot() };
    return current.samples;
  };
  const registers = [registry];
  const perTopic = (name: string, help: string, value: (t: TopicStats, sample: TopicSample) => number) =>
    new Gauge({
      name, help, labelNames: ['topic'], registers,
      collect() {
        this.reset();
        for (const sample of samples()) this.set({ topic: String(sample.stats.topic) }, value(sample.stats, sample));
      },
    });
  const perSubscription = (name: string, help: string, value: (s: NonNullable<TopicStats['subscriptions']>[number]) => number) =>
    new Gauge({
      name, help, labelNames: ['topic', 'subscription'], registers,
      collect() {
        this.reset();
        for (const { stats: t } of samples()) for (const s of t.subscriptions ?? []) this.set({ topic: String(t.topic), subscription: String(s.name) }, value(s));
      },
    });
  perTopic('broker_topic_msg_rate_in', 'Messages per second published to the topic (recent rate)', (t) => Number(t.msgRateIn ?? 0));
  perTopic('broker_topic_msg_throughput_in_bytes', 'Bytes per second published to the topic', (t) => Number(t.msgThroughputIn ?? 0));
  perTopic('broker_topic_msg_rate_out', 'Messages per second delivered from the topic, all subscriptions', (t) => Number(t.msgRateOut ?? 0));
  perTopic('broker_topic_msg_throughput_out_bytes', 'Bytes per second delivered from the topic', (t) => Number(t.msgThroughputOut ?? 0));
  perTopic('broker_topic_storage_size_bytes', 'Bytes the topic\'s ledgers hold', (t) => Number(t.storageSize ?? 0));
  perTopic('broker_topic_msg_backlog', 'Messages not yet acknowledged by the topic\'s slowest subscription', (t) => Number(t.backlogSize ?? 0));
  perTopic('broker_topic_producers', 'Producers connected to the topic', (t) => t.publishers?.length ?? 0);
  perTopic('broker_topic_subscriptions', 'Subscriptions of the topic', (t) => t.subscriptions?.length ?? 0);
  perTopic('broker_topic_consumers', 'Consumers connected to the topic, all subscriptions', (_t, sample) => sample.consumers);
  perSubscription('broker_subscription_msg_backlog', 'Messages of the topic the subscription has not acknowledged', (s) => Number(s.msgBacklog ?? 0));
  perSubscription('broker_subscription_msg_rate_out', 'Messages per second delivered to the subscription', (s) => Number(s.msgRateOut ?? 0));
  perSubscription('broker_subscription_unacked_messages', 'Messages delivered to the subscription\'s consumers and not acknowledged', (s) => Number(s.unackedMessages ?? 0));
}
