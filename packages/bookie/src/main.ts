import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createMetadataStore, type MetadataStore } from '@strata/coordinator';
import { accessForAll, field, Lifecycle, LOG_LEVELS, loadProtos, ServiceHost, systemClock, type CallGate, type Clock, type Component, type ConfigValues, type Logger } from '@strata/runtime';
import type { ProtoGrpcType } from './generated/bookie.js';
import { BookieStore } from './server/bookie-store.js';
import { LedgerGc } from './server/gc.js';
import { establishIdentity } from './server/identity.js';
import { BookieMetrics } from './server/metrics.js';
import { BookieRegistration, DiskMonitor, type RegistrationValue } from './server/registration.js';
import { BookieService } from './server/service.js';
import { FileJournal } from './storage/journal.js';
import { SegmentLedgerStorage } from './storage/ledger-storage.js';

const MiB = 1024 * 1024;

/** `strata bookie` flags (and STRATA_* env vars, YAML keys). Units last. */
export const bookieConfigSpec = {
  metadataUrl: field.string('', 'etcd://host:port[,host:port] or embedded:///abs/dir; empty runs without registration or GC'),
  cluster: field.string('standalone', 'cluster name (the metadata key prefix)'),
  dataDir: field.string('./data/bookie', 'where the ledger segments and the checkpoint live (and the journal, unless journalDir)'),
  journalDir: field.string('', 'the journal\'s directory, ideally on its own disk; default <dataDir>/journal'),
  grpcHost: field.string('0.0.0.0', 'gRPC bind address'),
  grpcPort: field.int(3181, 'gRPC port (0 picks a free one)', { min: 0, max: 65535 }),
  httpHost: field.string('0.0.0.0', 'HTTP bind address (/metrics, /healthz, /readyz)'),
  httpPort: field.int(8000, 'HTTP port (0 picks a free one)', { min: 0, max: 65535 }),
  advertisedAddress: field.string('', 'host:port other processes use to reach this bookie; default <grpcHost or 127.0.0.1>:<bound grpc port>'),
  bookieId: field.string('', 'this bookie\'s id in ledger ensembles; default the id in <dataDir>/cookie.json (generated on first start; an address for data dirs from before cookies)'),
  journalGroupWaitMs: field.number(1, 'group commit: one fdatasync covers the adds that arrive within this wait', { min: 0, max: 100 }),
  journalMaxGroupBytes: field.int(4 * MiB, 'group commit: at most this many bytes per fdatasync (one bigger record goes alone)', { min: 4096 }),
  journalMaxFileBytes: field.int(256 * MiB, 'start a new journal file past this size', { min: MiB }),
  maxEntryBytes: field.int(5 * MiB + 64 * 1024, 'largest entry payload accepted (5 MiB message plus batch overhead)', { min: 1024, max: 64 * MiB }),
  segmentMaxBytes: field.int(64 * MiB, 'roll a ledger segment (.log) past this size', { min: MiB }),
  segmentMaxEntries: field.int(65_536, 'roll a ledger segment past this many entries (bounds the in-memory index: 24 B each)', { min: 16 }),
  indexCacheBytes: field.int(64 * MiB, 'cache of sealed segments\' indexes', { min: MiB }),
  maxOpenWriters: field.int(256, 'ledgers with open segment files (2 descriptors each); least recently written closed first', { min: 1 }),
  segmentWriteBackBytes: field.int(4 * MiB, 'fdatasync a segment in the background every this many bytes written, so checkpoints and rolls find little to flush (0: off)', { min: 0 }),
  checkpointIntervalMs: field.int(5_000, 'how often segment files are fsync\'d and the journal trimmed', { min: 100 }),
  streamMaxInFlightAdds: field.int(8_192, 'an add stream is not read while it has this many unanswered adds', { min: 1 }),
  maxInFlightBytes: field.int(256 * MiB, 'no add stream is read while this many payload bytes are unanswered', { min: MiB }),
  maxReadBytes: field.int(16 * MiB, 'largest read answer (payload bytes); a read returns at least one entry', { min: 64 * 1024 }),
  diskUsageThreshold: field.number(0.95, 'go read-only past this used fraction of the data disk', { min: 0, max: 1 }),
  diskCheckIntervalMs: field.int(10_000, 'how often disk usage is checked', { min: 100 }),
  gcIntervalMs: field.int(60_000, 'how often data of ledgers deleted from metadata is removed (0 disables)', { min: 0 }),
  gcMaxLedgersPerRun: field.int(100, 'at most this many ledgers removed per GC run', { min: 1 }),
  gcMaxBytesPerRun: field.int(1024 * MiB, 'at most about this many bytes removed per GC run', { min: MiB }),
  gcGraceMs: field.int(60_000, 'GC spares ledgers written this recently', { min: 0 }),
  sessionTtlMs: field.int(10_000, 'metadata session TTL: the registration vanishes this long after the bookie dies', { min: 2_000 }),
  logLevel: field.oneOf(LOG_LEVELS, 'info', 'log level'),
};

export type BookieConfig = ConfigValues<typeof bookieConfigSpec>;

export interface BookieDeps {
  logger: Logger;
  /** A store to use; otherwise one is made from `metadataUrl` (and closed on stop). */
  metadata?: MetadataStore;
  /** Authentication and authorization of every call (decision 0087); default: open. */
  gate?: CallGate;
  /** Default: the system clock. */
  clock?: Clock;
}

export interface RunningBookie {
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly bookieId: string;
  stop(): Promise<void>;
}

/**
 * The bookie's composition root: metadata, identity (the cookie, decision 0088: checked before storage
 * opens a file), storage (journal + segments, replayed), the disk monitor, the gRPC service on a
 * ServiceHost, registration in metadata and GC. Starts in that order, stops in reverse.
 */
export async function startBookie(config: BookieConfig, deps: BookieDeps): Promise<RunningBookie> {
  const logger = deps.logger;
  const dataDir = resolve(config.dataDir);
  await mkdir(dataDir, { recursive: true });
  const journalDir = config.journalDir ? resolve(config.journalDir) : join(dataDir, 'journal');
  const lifecycle = new Lifecycle(logger);
  // gRPC messages carry batches of adds: room for two of the largest entries plus framing.
  const host = new ServiceHost({
    role: 'bookie', grpcHost: config.grpcHost, grpcPort: config.grpcPort, httpHost: config.httpHost, httpPort: config.httpPort,
    maxMessageBytes: 2 * config.maxEntryBytes + MiB, logger, gate: deps.gate,
  });
  const metrics = new BookieMetrics(host.metrics);
  const journal = new FileJournal({
    dir: journalDir, groupWaitMs: config.journalGroupWaitMs, maxGroupBytes: config.journalMaxGroupBytes,
    maxFileBytes: config.journalMaxFileBytes, logger,
    onSync: (records, bytes, ms) => {
      metrics.fsyncs.inc();
      metrics.journalBytes.inc(bytes);
      metrics.groupRecords.observe(records);
      metrics.fsyncLatency.observe(ms / 1000);
    },
    // Not ready any more: adds fail with UNAVAILABLE until an operator (or the orchestrator) restarts it.
    onFailure: () => host.setReady(false, 'journal failed; restart to replay'),
  });
  const storage = new SegmentLedgerStorage({
    dir: dataDir, segmentMaxBytes: config.segmentMaxBytes, segmentMaxEntries: config.segmentMaxEntries,
    indexCacheBytes: config.indexCacheBytes, maxOpenWriters: config.maxOpenWriters, writeBackBytes: config.segmentWriteBackBytes,
    onWriteBack: (ms) => metrics.segmentWriteBack.observe(ms / 1000), logger,
  });
  // Both known only once started: the id from the cookie, the address after binding (when not advertised).
  let bookieId = config.bookieId;
  let address = config.advertisedAddress;
  const store = new BookieStore({
    get bookieId() {
      return bookieId;
    },
    journal, storage, maxEntryBytes: config.maxEntryBytes, maxReadBytes: config.maxReadBytes, maxReadEntries: 10_000,
    checkpointIntervalMs: config.checkpointIntervalMs, logger,
  });
  let registration: BookieRegistration | undefined;
  const disk = new DiskMonitor({
    dir: dataDir, threshold: config.diskUsageThreshold, intervalMs: config.diskCheckIntervalMs, logger,
    onChange: (readOnly) => {
      store.setReadOnly(readOnly);
      metrics.readOnly.set(readOnly ? 1 : 0);
      void registration?.update();
    },
    onStats: (stats) => metrics.diskUsage.set(stats.usage),
  });
  const service = new BookieService({
    store, metrics, logger, streamMaxInFlightAdds: config.streamMaxInFlightAdds, maxInFlightBytes: config.maxInFlightBytes,
    info: () => ({
      bookieId, readOnly: store.isReadOnly(), diskTotalBytes: disk.last.totalBytes, diskUsedBytes: disk.last.usedBytes,
      maxEntryBytes: config.maxEntryBytes,
    }),
  });
  const proto = loadProtos<ProtoGrpcType>(['strata/bookie/v1/bookie.proto']);
  const bookieService = proto.strata.bookie.v1.Bookie.service;
  host.addService(bookieService, service.handlers(), accessForAll(bookieService, { action: 'cluster' }));

  let metadata = deps.metadata;
  let ownsMetadata = false;
  const useMetadata = metadata !== undefined || config.metadataUrl !== '';
  const grpcH = config.grpcHost === '0.0.0.0' || config.grpcHost === '::' ? '127.0.0.1' : config.grpcHost;
  const components: Component[] = [];
  if (useMetadata) {
    components.push({
      name: 'metadata',
      start: async () => {
        if (!metadata) {
          metadata = await createMetadataStore(config.metadataUrl, { logger: logger.child({ component: 'metadata' }), cluster: config.cluster });
          ownsMetadata = true;
        }
      },
      stop: async () => {
        if (ownsMetadata) await metadata?.close();
      },
    });
  } else {
    logger.warn('no metadataUrl: running without registration or garbage collection');
  }
  components.push(
    {
      name: 'identity',
      start: async () => {
        const identity = await establishIdentity({
          dataDir, journalDir: config.journalDir ? journalDir : undefined, cluster: config.cluster, configuredId: config.bookieId,
          expectedAddress: address || (config.grpcPort !== 0 ? `${grpcH}:${config.grpcPort}` : undefined),
          metadata, sessionTtlMs: config.sessionTtlMs, logger, clock: deps.clock ?? systemClock,
        });
        bookieId = identity.bookieId;
        if (identity.origin !== 'cookie') logger.info({ bookieId, origin: identity.origin }, 'bookie identity established');
      },
      stop: async () => undefined,
    },
    { name: 'storage', start: () => store.start(), stop: () => store.stop() },
    {
      name: 'disk-monitor',
      start: () => disk.start(),
      stop: async () => disk.stop(),
    },
    {
      name: 'service-host',
      start: async () => {
        const ports = await host.start();
        if (!address) address = `${grpcH}:${ports.grpcPort}`;
      },
      stop: () => host.stop(),
    },
    // Stops before the host: answer and end open add streams so the gRPC shutdown is quick.
    { name: 'add-streams', start: async () => undefined, stop: async () => service.drain() },
  );
  if (useMetadata) {
    components.push({
      name: 'registration',
      start: async () => {
        const httpH = config.httpHost === '0.0.0.0' || config.httpHost === '::' ? '127.0.0.1' : config.httpHost;
        const value = (): RegistrationValue => ({
          id: bookieId, address, httpAddress: `${httpH}:${host.ports.httpPort}`, readOnly: store.isReadOnly(),
          diskTotalBytes: disk.last.totalBytes, diskUsedBytes: disk.last.usedBytes,
        });
        registration = new BookieRegistration({ metadata: metadata as MetadataStore, sessionTtlMs: config.sessionTtlMs, logger, value });
        await registration.start();
      },
      stop: async () => registration?.stop(),
    });
    if (config.gcIntervalMs > 0) {
      let gc: LedgerGc | undefined;
      components.push({
        name: 'gc',
        start: async () => {
          gc = new LedgerGc({
            metadata: metadata as MetadataStore, storage, intervalMs: config.gcIntervalMs, maxLedgersPerRun: config.gcMaxLedgersPerRun,
            maxBytesPerRun: config.gcMaxBytesPerRun, graceMs: config.gcGraceMs, logger, metrics,
          });
          gc.start();
        },
        stop: async () => gc?.stop(),
      });
    }
  }
  components.push({
    name: 'ready',
    start: async () => host.setReady(true),
    stop: async () => host.setReady(false, 'stopping'),
  });
  await lifecycle.start(components);
  logger.info({ bookieId, address, dataDir }, 'bookie started');
  return {
    grpcPort: host.ports.grpcPort,
    httpPort: host.ports.httpPort,
    bookieId,
    stop: () => lifecycle.stop(),
  };
}
