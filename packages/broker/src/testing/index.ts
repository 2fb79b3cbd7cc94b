import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InMemoryLedgerClient, InMemoryLedgerCluster } from '@strata/bookie/testing';
import { randomBytes } from 'node:crypto';
import { BundleAssigner, EmbeddedMetadataStore, LeaderElector, namespaceBundles, type MetadataStore } from '@strata/coordinator';
import { createLogger, Random, silentLogger, sleep, type Logger } from '@strata/runtime';
import { brokerConfigSpec, startBroker, type BrokerConfig, type RunningBroker } from '../main.js';

export interface TestBrokerOptions {
  /** Config fields to override (ports default to 0, host 127.0.0.1). */
  config?: Partial<BrokerConfig>;
  /** Reuse a metadata store (e.g. to restart a broker on the same state); else a fresh embedded one. */
  metadata?: MetadataStore;
  /** Reuse the in-memory "bookies" (to restart a broker on the same data); else a fresh cluster. */
  ledgerCluster?: InMemoryLedgerCluster;
  logger?: Logger;
  /**
   * Run a coordinator leader election with the BundleAssigner duty next to the broker (default true),
   * as `strata standalone` does: without an assigner nothing is ever owned. Several test brokers on one
   * store each campaign; one leads.
   */
  assigner?: boolean;
}

export interface TestBroker {
  broker: RunningBroker;
  /** host:port for gRPC clients. */
  address: string;
  metadata: MetadataStore;
  ledgerCluster: InMemoryLedgerCluster;
  /** Stops the broker (and, when this helper made them, the metadata store and its temp dir). */
  stop(): Promise<void>;
}

/**
 * An in-process broker for tests of the broker and of its clients: real gRPC on 127.0.0.1 (free
 * ports), an embedded metadata store in a temp dir, and in-memory ledgers (no bookies, no fsync).
 * Restart a broker on the same state by passing the previous one's `metadata` and `ledgerCluster`.
 */
export async function startTestBroker(options: TestBrokerOptions = {}): Promise<TestBroker> {
  let dir: string | undefined;
  let metadata = options.metadata;
  // STRATA_TEST_LOG=debug shows the broker's logs while debugging a test.
  const level = process.env.STRATA_TEST_LOG;
  const logger = options.logger ?? (level ? createLogger({ level: level as 'debug' }) : silentLogger());
  if (!metadata) {
    dir = await mkdtemp(join(tmpdir(), 'strata-test-broker-'));
    metadata = await EmbeddedMetadataStore.open({ dir, logger });
  }
  const ledgerCluster = options.ledgerCluster ?? new InMemoryLedgerCluster();
  const defaults = Object.fromEntries(Object.entries(brokerConfigSpec).map(([k, f]) => [k, f.default])) as BrokerConfig;
  const config: BrokerConfig = {
    ...defaults, grpcHost: '127.0.0.1', grpcPort: 0, httpHost: '127.0.0.1', httpPort: 0, sessionTtlMs: 5_000,
    cursorFlushIntervalMs: 100, ...options.config,
  };
  const ledgerClient = new InMemoryLedgerClient({ cluster: ledgerCluster });
  let elector: LeaderElector | undefined;
  if (options.assigner !== false) {
    elector = new LeaderElector({
      store: metadata, election: 'coordinator', candidate: `test-${randomBytes(4).toString('hex')}`, sessionTtlMs: 5_000, logger,
      duties: [new BundleAssigner({ random: new Random(randomBytes(4).readUInt32LE(0)), defaultBundles: config.defaultBundles })],
    });
    elector.start();
  }
  let broker: RunningBroker;
  try {
    broker = await startBroker(config, { logger, metadata, ledgerClient });
    if (elector) await waitForDefaultBundles(broker);
  } catch (err) {
    await elector?.stop();
    throw err;
  }
  const ownedMetadata = !options.metadata;
  return {
    broker, address: broker.advertisedAddress, metadata, ledgerCluster,
    stop: async () => {
      await broker.stop();
      await elector?.stop();
      await ledgerClient.close();
      if (ownedMetadata) {
        await metadata.close();
        if (dir) await rm(dir, { recursive: true, force: true });
      }
    },
  };
}

/**
 * Waits (up to 20 s) until every bundle of public/default has an owner, so a test's first request does
 * not meet SERVICE_NOT_READY. A lone broker owns them all; with several, they are spread.
 */
async function waitForDefaultBundles(broker: RunningBroker): Promise<void> {
  const p = await broker.service.resources.getPolicies('public/default');
  const ids = namespaceBundles('public/default', { bundles: p.bundles, bundleBoundaries: p.bundleBoundaries }).map((b) => b.id);
  const deadline = Date.now() + 20_000;
  while (!ids.every((id) => broker.ownership.owners().has(id))) {
    if (Date.now() > deadline) throw new Error('bundles of public/default were not assigned within 20 s');
    await sleep(20);
  }
}
