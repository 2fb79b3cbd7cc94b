import { randomBytes } from 'node:crypto';
import { BookieLedgerClient, type LedgerClient } from '@strata/bookie';
import { createMetadataStore, type MetadataStore, type Watcher } from '@strata/coordinator';
import {
  field, Lifecycle, LOG_LEVELS, loadProtos, Random, ServiceHost, systemClock, type CallGate, type Clock, type Component, type ConfigValues, type Logger,
} from '@strata/runtime';
import { BrokerService } from './topics/broker-service.js';
import type { ProtoGrpcType as AdminProto } from './generated/admin.js';
import type { ProtoGrpcType as BrokerProto } from './generated/broker.js';
import { adminHandlers } from './admin/admin-handlers.js';
import { brokerHandlers } from './transport/broker-handlers.js';
import { adminAccess } from './admin/admin-access.js';
import { restApi } from './admin/rest-api.js';
import { brokerAccess } from './transport/broker-access.js';
import { OwnershipManager } from './ownership/index.js';
import { BrokerMetrics } from './metrics.js';
import { PublishLimiter } from './transport/producer-stream.js';
import { NamespaceResources, type NamespacePolicies } from './resources/namespace-resources.js';
import { createManagedLedgerFactory } from './storage/factory.js';
import { authenticationConfigSpec, createAuthenticationGate } from './security/authentication.js';

const MiB = 1024 * 1024;

/** `strata broker` flags (and STRATA_* env vars, YAML keys). Units last. */
export const brokerConfigSpec = {
  metadataUrl: field.string('', 'etcd://host:port[,host:port] or embedded:///abs/dir (required unless a store is injected)'),
  cluster: field.string('standalone', 'cluster name (the metadata key prefix)'),
  grpcHost: field.string('0.0.0.0', 'gRPC bind address (clients and admin)'),
  grpcPort: field.int(6650, 'gRPC port (0 picks a free one)', { min: 0, max: 65535 }),
  httpHost: field.string('0.0.0.0', 'HTTP bind address (/metrics, /healthz, /readyz, the admin REST API)'),
  httpPort: field.int(8080, 'HTTP port (0 picks a free one)', { min: 0, max: 65535 }),
  advertisedAddress: field.string('', 'host:port clients use to reach this broker; default <grpcHost or 127.0.0.1>:<bound grpc port>'),
  brokerId: field.string('', 'this broker\'s id in metadata; default the advertised address'),
  ensembleSize: field.int(2, 'bookies per ledger (E) for namespaces that do not set their own', { min: 1, max: 32 }),
  writeQuorum: field.int(2, 'default copies per entry (W)', { min: 1, max: 32 }),
  ackQuorum: field.int(2, 'default copies durable before an append is acknowledged (A)', { min: 1, max: 32 }),
  maxMessageBytes: field.int(5 * MiB, 'largest batch (payload bytes) a producer may send', { min: 1024, max: 64 * MiB }),
  maxPendingPublishesPerProducer: field.int(1000, 'batches of one producer in flight; past it the broker stops reading that stream', { min: 1 }),
  maxPendingPublishesPerBroker: field.int(50_000, 'batches in flight on the whole broker; past it every producer stream waits', { min: 1 }),
  allowAutoTopicCreation: field.boolean(true, 'create a topic on its first producer or consumer'),
  defaultBundles: field.int(4, 'bundles of a new namespace', { min: 1, max: 1024 }),
  maxTopics: field.int(100_000, 'topics loaded at once on this broker; past it loads fail with TOO_MANY_REQUESTS', { min: 1 }),
  dispatchReadAheadEntries: field.int(1000, 'entries a subscription reads ahead of delivery, at most', { min: 1, max: 100_000 }),
  maxRedeliveryPositions: field.int(100_000, 'positions a subscription keeps for redelivery (nacked, unacked of departed consumers, parked Key_Shared)', { min: 100 }),
  negativeAckRedeliveryDelayMs: field.int(60_000, 'default delay before a nacked message is redelivered', { min: 0 }),
  dedupSnapshotEntries: field.int(1000, 'dedup: snapshot sequence ids every this many stored entries', { min: 1 }),
  maxDedupProducers: field.int(10_000, 'dedup: producer names remembered per topic (least recently used forgotten)', { min: 1 }),
  managedLedgerMaxEntriesPerLedger: field.int(50_000, 'roll the topic\'s ledger after this many entries', { min: 1 }),
  managedLedgerMaxSizeBytes: field.int(2048 * MiB, 'roll the topic\'s ledger after this many bytes', { min: 1024 }),
  managedLedgerMaxAgeMs: field.int(4 * 3600_000, 'roll a ledger older than this (if it holds entries)', { min: 1000 }),
  managedLedgerMinRolloverMs: field.int(10 * 60_000, 'never roll a ledger by entries/size before it is this old', { min: 0 }),
  managedLedgerCacheBytes: field.int(256 * MiB, 'entry cache for tailing reads, shared by all topics (0 disables)', { min: 0 }),
  cursorFlushIntervalMs: field.int(1000, 'acknowledgements are persisted at most this often (the window a crash can redeliver)', { min: 10 }),
  sessionTtlMs: field.int(3_000, 'metadata session TTL: a dead broker\'s bundles are reassigned this long after it dies (decision 0064)', { min: 2_000 }),
  metricsMaxTopics: field.int(1_000, 'topics with per-topic metrics on /metrics, the busiest first (0: broker-wide metrics only)', { min: 0 }),
  loadReportIntervalMs: field.int(5_000, 'how often the broker refreshes its load report in brokers/<id>', { min: 100 }),
  acquireWaitMs: field.int(2_000, 'a lookup of a bundle nobody owns yet waits this long for its acquisition before answering "retry"', { min: 0 }),
  unloadTimeoutMs: field.int(10_000, 'a graceful bundle unload (close its topics) may take this long before the bundle is released anyway', { min: 100 }),
  logLevel: field.oneOf(LOG_LEVELS, 'info', 'log level'),
  ...authenticationConfigSpec,
};

export type BrokerConfig = ConfigValues<typeof brokerConfigSpec>;

export interface BrokerDeps {
  logger: Logger;
  /** A store to use; otherwise one is made from `metadataUrl` (and closed on stop). */
  metadata?: MetadataStore;
  /** A ledger client to use; otherwise a BookieLedgerClient on the metadata store (closed on stop). */
  ledgerClient?: LedgerClient;
  clock?: Clock;
  random?: Random;
  /** Authentication and authorization of every call (decision 0087); default: built from the config (decision 0090). */
  gate?: CallGate;
}

export interface RunningBroker {
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly brokerId: string;
  /** host:port clients use. */
  readonly advertisedAddress: string;
  readonly service: BrokerService;
  readonly ownership: OwnershipManager;
  stop(): Promise<void>;
}

/**
 * The broker's composition root: metadata store, ledger client, namespace defaults, managed ledger
 * factory, the Broker and Admin gRPC services on a ServiceHost, and bundle ownership (its session,
 * `brokers/<id>`, acquisitions: docs/ownership.md). Starts in that order and stops in reverse: the
 * ownership stop drains (hands every bundle to another broker, clients get Closed with a redirect).
 */
export async function startBroker(config: BrokerConfig, deps: BrokerDeps): Promise<RunningBroker> {
  const logger = deps.logger;
  const clock = deps.clock ?? systemClock;
  const random = deps.random ?? new Random(randomBytes(4).readUInt32LE(0));
  if (config.writeQuorum > config.ensembleSize || config.ackQuorum > config.writeQuorum) {
    throw new Error(`invalid quorums: need ackQuorum <= writeQuorum <= ensembleSize, got ${config.ackQuorum}/${config.writeQuorum}/${config.ensembleSize}`);
  }
  if (!deps.metadata && !config.metadataUrl) throw new Error('metadataUrl is required (etcd://host:port or embedded:///abs/dir)');
  const lifecycle = new Lifecycle(logger);
  const gate = deps.gate ?? await createAuthenticationGate(config, { logger, clock });
  const host = new ServiceHost({
    role: 'broker', grpcHost: config.grpcHost, grpcPort: config.grpcPort, httpHost: config.httpHost, httpPort: config.httpPort,
    maxMessageBytes: config.maxMessageBytes + MiB, logger, gate,
  });
  let metadata = deps.metadata;
  let ledgerClient = deps.ledgerClient;
  let service: BrokerService | undefined;
  let policiesWatch: Watcher | undefined;
  let ownership: OwnershipManager | undefined;
  /** Set by the last component: readiness may follow the metadata session from then on. */
  let started = false;
  const defaultPolicies: NamespacePolicies = {
    deduplicationEnabled: false, retentionTimeMinutes: 0, retentionSizeMb: 0, messageTtlSeconds: 0, bundles: config.defaultBundles,
    ensembleSize: 0, writeQuorum: 0, ackQuorum: 0,
  };
  const limiter = new PublishLimiter(config.maxPendingPublishesPerBroker);
  const metrics = new BrokerMetrics(host.metrics, {
    topicsLoaded: () => service?.loadedTopicCount ?? 0, pendingPublishes: () => limiter.inFlight,
    topics: () => service?.topicSamples() ?? [], maxTopics: config.metricsMaxTopics,
  });

  const components: Component[] = [
    {
      name: 'metadata',
      start: async () => {
        metadata ??= await createMetadataStore(config.metadataUrl, { logger: logger.child({ component: 'metadata' }), cluster: config.cluster });
      },
      stop: async () => {
        if (!deps.metadata) await metadata?.close();
      },
    },
    {
      name: 'ledger-client',
      start: async () => {
        ledgerClient ??= new BookieLedgerClient({ metadata: metadata as MetadataStore, logger, clock, random, options: { maxEntryBytes: config.maxMessageBytes + 64 * 1024 } });
      },
      stop: async () => {
        if (!deps.ledgerClient) await ledgerClient?.close();
      },
    },
  ];
  let factory: ReturnType<typeof createManagedLedgerFactory> | undefined;
  components.push({
    name: 'managed-ledgers',
    start: async () => {
      const resources = new NamespaceResources(metadata as MetadataStore, { policies: defaultPolicies, cluster: config.cluster }, logger);
      await resources.ensureDefaults();
      factory = createManagedLedgerFactory(
        { ledgerClient: ledgerClient as LedgerClient, metadata: metadata as MetadataStore, logger, clock },
        { entryCacheSizeBytes: config.managedLedgerCacheBytes, cursorFlushIntervalMs: config.cursorFlushIntervalMs },
      );
      await factory.start();
      ownership = new OwnershipManager({
        store: metadata as MetadataStore,
        self: { brokerId: config.brokerId, url: config.advertisedAddress },
        sessionTtlMs: config.sessionTtlMs, defaultBundles: config.defaultBundles, loadReportIntervalMs: config.loadReportIntervalMs,
        acquireWaitMs: config.acquireWaitMs, unloadTimeoutMs: config.unloadTimeoutMs,
        rates: () => service?.rates() ?? { msgRateIn: 0, msgRateOut: 0 },
        onUnload: (bundle, target) => (service as BrokerService).unloadBundle(bundle, target),
        // Without a session the broker owns nothing and answers no lookup: not ready until it registers again.
        onSessionChange: (alive) => {
          if (started) host.setReady(alive, 'metadata session lost; registering again');
        },
        logger, clock, random,
      });
      service = new BrokerService(factory, resources, ownership, {
        allowAutoTopicCreation: config.allowAutoTopicCreation, maxMessageBytes: config.maxMessageBytes, maxTopics: config.maxTopics,
        readAheadEntries: config.dispatchReadAheadEntries, readMaxBytes: 5 * MiB, maxRedeliveryPositions: config.maxRedeliveryPositions,
        defaultNackDelayMs: config.negativeAckRedeliveryDelayMs, maxDedupProducers: config.maxDedupProducers,
        dedupSnapshotEntries: config.dedupSnapshotEntries,
        defaultQuorums: { ensembleSize: config.ensembleSize, writeQuorum: config.writeQuorum, ackQuorum: config.ackQuorum },
        producerNamePrefix: `${config.cluster}-${randomBytes(4).toString('hex')}`,
        managedLedger: {
          maxEntriesPerLedger: config.managedLedgerMaxEntriesPerLedger, maxLedgerSizeBytes: config.managedLedgerMaxSizeBytes,
          maxLedgerAgeMs: config.managedLedgerMaxAgeMs, minLedgerRolloverMs: config.managedLedgerMinRolloverMs,
        },
      }, { clock, random, logger, metrics });
      const running = service;
      policiesWatch = await resources.watchPolicies((ns, p) => void running.applyPolicies(ns, p).catch((err: unknown) => logger.warn({ err, namespace: ns }, 'applying new namespace policies failed')));
    },
    stop: async () => {
      await policiesWatch?.close();
      await service?.stop();
      await factory?.stop();
    },
  });
  components.push({
    name: 'service-host',
    start: async () => {
      const ctx = {
        service: service as BrokerService, limiter, maxPendingPerProducer: config.maxPendingPublishesPerProducer,
        maxMessageBytes: config.maxMessageBytes, logger, metrics, ownership,
      };
      const brokerProto = loadProtos<BrokerProto>(['strata/broker/v1/broker.proto']);
      const adminProto = loadProtos<AdminProto>(['strata/broker/v1/admin.proto']);
      host.addService(brokerProto.strata.broker.v1.Broker.service, brokerHandlers(ctx), brokerAccess);
      host.addService(adminProto.strata.broker.v1.Admin.service, adminHandlers(ctx), adminAccess);
      // Pulsar's admin REST API v2 and lookup v2 beside /metrics (docs/admin-rest.md); each endpoint carries its access rule.
      host.addApi(restApi({ ...ctx, cluster: config.cluster, isReady: () => host.isReady() }));
      const ports = await host.start();
      const h = config.grpcHost === '0.0.0.0' || config.grpcHost === '::' ? '127.0.0.1' : config.grpcHost;
      const url = config.advertisedAddress || `${h}:${ports.grpcPort}`;
      const m = ownership as OwnershipManager;
      m.self = { brokerId: config.brokerId || url, url };
      // Published in brokers/<id> for REST redirects to a topic's owner: a wildcard bind is reached at the
      // advertised host (a pod's address), not at 127.0.0.1.
      const advertisedHost = url.slice(0, url.lastIndexOf(':')) || h;
      const hh = config.httpHost === '0.0.0.0' || config.httpHost === '::' ? advertisedHost : config.httpHost;
      m.httpUrl = `${hh}:${ports.httpPort}`;
    },
    // Topics close before the server stops, so their streams get a Closed event.
    stop: async () => {
      await service?.stop();
      await host.stop(2_000);
    },
  });
  // Registers brokers/<id> on its own session, acquires what the coordinator assigns here. After
  // service-host, so that the drain on stop (SIGTERM) runs while streams can still get Closed events.
  components.push({
    name: 'ownership',
    start: () => (ownership as OwnershipManager).start(),
    stop: async () => {
      service?.beginDrain();
      await (ownership as OwnershipManager).stop({ drain: true });
    },
  });
  components.push({
    name: 'ready',
    start: async () => {
      started = true;
      host.setReady(true);
    },
    stop: async () => {
      started = false;
      host.setReady(false, 'stopping');
    },
  });
  await lifecycle.start(components);
  const m = ownership as OwnershipManager;
  logger.info({ brokerId: m.self.brokerId, url: m.self.url }, 'broker started');
  return {
    grpcPort: host.ports.grpcPort,
    httpPort: host.ports.httpPort,
    brokerId: m.self.brokerId,
    advertisedAddress: m.self.url,
    service: service as BrokerService,
    ownership: m,
    stop: () => lifecycle.stop(),
  };
}
