import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/**
 * The broker's Prometheus metrics (on the ServiceHost's registry, served at /metrics). Broker-wide,
 * no per-topic labels: label cardinality stays bounded however many topics are loaded.
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

  constructor(registry: Registry, gauges: { topicsLoaded: () => number; pendingPublishes: () => number }) {
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
  }
}
