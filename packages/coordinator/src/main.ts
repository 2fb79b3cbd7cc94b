import { hostname } from 'node:os';
import { resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Counter, Gauge } from 'prom-client';
import { randomBytes } from 'node:crypto';
import { accessForAll, field, Lifecycle, LOG_LEVELS, loadProtos, Random, ServiceHost, toGrpcError, type CallGate, type ConfigValues, type Logger } from '@strata/runtime';
import type { ProtoGrpcType } from './generated/coordinator.js';
import type { CoordinatorHandlers } from './generated/strata/coordinator/v1/Coordinator.js';
import { LeaderElector, type LeaderDuty } from './leader.js';
import { BundleAssigner, type LivenessOptions, type SplitOptions } from './assignment/index.js';
import { createMetadataStore } from './metadata/factory.js';
import type { MetadataStore } from './metadata/store.js';

/** The election every coordinator campaigns in (key `elections/coordinator`). */
export const COORDINATOR_ELECTION = 'coordinator';

/** `strata coordinator` flags (and STRATA_* env vars, YAML keys). Units last. */
export const coordinatorConfigSpec = {
  metadataUrl: field.string('embedded://./data/metadata', 'etcd://host:port[,host:port] or embedded:///abs/dir (embedded://./rel is relative to the working dir)'),
  cluster: field.string('standalone', 'cluster name (the metadata key prefix /strata/<cluster>/)', (v) =>
    /^[A-Za-z0-9._-]+$/.test(v) ? undefined : 'letters, digits, ".", "_" and "-" only'),
  coordinatorId: field.string('', 'this coordinator\'s id in the election; default <hostname>:<bound grpc port>'),
  grpcHost: field.string('0.0.0.0', 'gRPC bind address'),
  grpcPort: field.int(6660, 'gRPC port (0 picks a free one)', { min: 0, max: 65535 }),
  httpHost: field.string('0.0.0.0', 'HTTP bind address (/metrics, /healthz, /readyz)'),
  httpPort: field.int(8090, 'HTTP port (0 picks a free one)', { min: 0, max: 65535 }),
  sessionTtlMs: field.int(5_000, 'metadata session TTL: a dead leader is replaced within about this long', { min: 2_000, max: 120_000 }),
  defaultBundles: field.int(4, 'bundles of a namespace whose policies do not say (must equal the brokers\' --default-bundles)', { min: 1, max: 1024 }),
  assignTimeoutMs: field.int(10_000, 'a bundle assigned but still unowned after this long is assigned to another broker', { min: 500 }),
  loadSheddingEnabled: field.boolean(true, 'move bundles away from brokers persistently above the average load'),
  autoSplitEnabled: field.boolean(true, 'split a bundle above any split-max-* limit in two halves (one per namespace per cooldown)'),
  splitMaxTopics: field.int(1000, 'split a bundle with more loaded topics than this (0: no limit)', { min: 0 }),
  splitMaxSessions: field.int(1000, 'split a bundle with more producers + consumers than this (0: no limit)', { min: 0 }),
  splitMaxMsgRate: field.number(30_000, 'split a bundle with more messages per second (in + out) than this (0: no limit)', { min: 0 }),
  splitMaxBandwidthMbytes: field.number(100, 'split a bundle with more MiB per second (in + out) than this (0: no limit)', { min: 0 }),
  splitCooldownMs: field.int(60_000, 'after a split, leave the namespace alone this long', { min: 0 }),
  maxBundlesPerNamespace: field.int(128, 'automatic splits stop at this many bundles per namespace', { min: 1, max: 1024 }),
  brokerProbeIntervalMs: field.int(250, 'the leader probes every broker\'s address this often; refused connections revoke a dead broker\'s session (0: off, wait for the TTL)', { min: 0 }),
  brokerProbeFailures: field.int(2, 'consecutive refused probes that prove a broker\'s process gone', { min: 1, max: 100 }),
  brokerProbeTimeoutMs: field.int(1_000, 'a probe not answered within this long proves nothing (the broker keeps its session until the TTL)', { min: 50 }),
  logLevel: field.oneOf(LOG_LEVELS, 'info', 'log level'),
};

export type CoordinatorConfig = ConfigValues<typeof coordinatorConfigSpec>;

/** The bundle assignment leader duty as configured (docs/ownership.md); composed into the coordinator role. */
export function bundleAssignerDuty(
  config: Pick<CoordinatorConfig, 'defaultBundles' | 'assignTimeoutMs' | 'loadSheddingEnabled' | SplitConfigField> & Partial<Pick<CoordinatorConfig, LivenessConfigField>>,
): LeaderDuty {
  return new BundleAssigner({
    random: new Random(randomBytes(4).readUInt32LE(0)), defaultBundles: config.defaultBundles,
    placement: { assignTimeoutMs: config.assignTimeoutMs }, shedding: config.loadSheddingEnabled ? {} : false,
    splitting: splitOptionsOf(config), liveness: livenessOptionsOf(config),
  });
}

type LivenessConfigField = 'brokerProbeIntervalMs' | 'brokerProbeFailures' | 'brokerProbeTimeoutMs';

/** The broker liveness probe settings of the coordinator config (`false` when turned off; decision 0065). */
export function livenessOptionsOf(config: Partial<Pick<CoordinatorConfig, LivenessConfigField>>): Partial<LivenessOptions> | false {
  if (config.brokerProbeIntervalMs === 0) return false;
  const out: Partial<LivenessOptions> = {};
  if (config.brokerProbeIntervalMs !== undefined) out.intervalMs = config.brokerProbeIntervalMs;
  if (config.brokerProbeFailures !== undefined) out.failuresToRevoke = config.brokerProbeFailures;
  if (config.brokerProbeTimeoutMs !== undefined) out.probeTimeoutMs = config.brokerProbeTimeoutMs;
  return out;
}

type SplitConfigField =
  | 'autoSplitEnabled' | 'splitMaxTopics' | 'splitMaxSessions' | 'splitMaxMsgRate' | 'splitMaxBandwidthMbytes' | 'splitCooldownMs'
  | 'maxBundlesPerNamespace';

/** The automatic split settings of the coordinator config (`false` when turned off). */
export function splitOptionsOf(config: Pick<CoordinatorConfig, SplitConfigField>): SplitOptions | false {
  if (!config.autoSplitEnabled) return false;
  return {
    maxTopics: config.splitMaxTopics, maxSessions: config.splitMaxSessions, maxMsgRate: config.splitMaxMsgRate,
    maxBandwidthBytes: config.splitMaxBandwidthMbytes * 1024 * 1024, cooldownMs: config.splitCooldownMs,
    maxBundlesPerNamespace: config.maxBundlesPerNamespace,
  };
}

export interface CoordinatorDeps {
  logger: Logger;
  /** A store to use; otherwise one is made from `metadataUrl` (and closed on stop). */
  metadata?: MetadataStore;
  /** Work run only while this coordinator leads; default: bundle assignment (`bundleAssignerDuty`). */
  leaderDuties?: readonly LeaderDuty[];
  /** Authentication and authorization of every call (decision 0087); default: open. */
  gate?: CallGate;
}

export interface RunningCoordinator {
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly coordinatorId: string;
  isLeader(): boolean;
  stop(): Promise<void>;
}

/** Makes a relative `embedded://./dir` absolute against the working directory; other URLs are returned as they are. */
export function resolveMetadataUrl(url: string): string {
  const m = /^embedded:\/\/(\.\.?\/.*)$/.exec(url);
  return m ? `embedded://${resolve(m[1] as string)}` : url;
}

/**
 * The coordinator's composition root: metadata store, ServiceHost (Coordinator gRPC service, health,
 * metrics), and the leader elector that keeps a session, campaigns for `coordinator` and runs the
 * leader duties while leading. Ready while it holds a metadata session.
 */
export async function startCoordinator(config: CoordinatorConfig, deps: CoordinatorDeps): Promise<RunningCoordinator> {
  const logger = deps.logger.child({ role: 'coordinator' });
  const lifecycle = new Lifecycle(logger);
  const host = new ServiceHost({
    role: 'coordinator', grpcHost: config.grpcHost, grpcPort: config.grpcPort, httpHost: config.httpHost, httpPort: config.httpPort,
    maxMessageBytes: 4 * 1024 * 1024, logger, gate: deps.gate,
  });
  const isLeaderGauge = new Gauge({ name: 'strata_coordinator_is_leader', help: '1 while this coordinator leads', registers: [host.metrics] });
  const connectedGauge = new Gauge({ name: 'strata_coordinator_session_alive', help: '1 while this coordinator holds a metadata session', registers: [host.metrics] });
  const termsCounter = new Counter({ name: 'strata_coordinator_leader_terms_total', help: 'times this coordinator became leader', registers: [host.metrics] });
  const dutyErrors = new Counter({ name: 'strata_coordinator_leader_duty_errors_total', help: 'leader duties that threw', labelNames: ['duty'], registers: [host.metrics] });

  let metadata = deps.metadata;
  let ownsMetadata = false;
  let coordinatorId = config.coordinatorId;
  let elector: LeaderElector | undefined;
  let wasLeader = false;

  const handlers: CoordinatorHandlers = {
    GetStatus: (_call, callback) => {
      void (async () => {
        const store = metadata as MetadataStore;
        const [leaderId, brokers, bookies] = await Promise.all([
          store.getLeader(COORDINATOR_ELECTION),
          store.list('brokers/', { limit: 10_000 }),
          store.list('bookies/available/', { limit: 10_000 }),
        ]);
        callback(null, {
          coordinatorId, isLeader: elector?.leader ?? false, leaderId: leaderId ?? '',
          liveBrokers: brokers.items.length, liveBookies: bookies.items.length,
        });
      })().catch((err) => callback(toGrpcError(err)));
    },
  };
  const proto = loadProtos<ProtoGrpcType>(['strata/coordinator/v1/coordinator.proto']);
  const coordinatorService = proto.strata.coordinator.v1.Coordinator.service;
  host.addService(coordinatorService, handlers as grpc.UntypedServiceImplementation, accessForAll(coordinatorService, { action: 'cluster' }));

  await lifecycle.start([
    {
      name: 'metadata',
      start: async () => {
        if (!metadata) {
          metadata = await createMetadataStore(resolveMetadataUrl(config.metadataUrl), {
            logger: logger.child({ component: 'metadata' }), cluster: config.cluster,
          });
          ownsMetadata = true;
        }
      },
      stop: async () => {
        if (ownsMetadata) await metadata?.close();
      },
    },
    {
      name: 'service-host',
      start: async () => {
        const ports = await host.start();
        if (!coordinatorId) coordinatorId = `${hostname()}:${ports.grpcPort}`;
        host.setReady(false, 'no metadata session yet');
      },
      stop: () => host.stop(),
    },
    {
      name: 'leader-elector',
      start: async () => {
        elector = new LeaderElector({
          store: metadata as MetadataStore, election: COORDINATOR_ELECTION, candidate: coordinatorId,
          sessionTtlMs: config.sessionTtlMs, duties: deps.leaderDuties ?? [bundleAssignerDuty(config)], logger,
          metrics: host.metrics,
          onChange: ({ connected, leader }) => {
            connectedGauge.set(connected ? 1 : 0);
            if (leader && !wasLeader) termsCounter.inc();
            wasLeader = leader;
            isLeaderGauge.set(leader ? 1 : 0);
            host.setReady(connected, connected ? '' : 'no metadata session');
            logger.info({ connected, leader, coordinatorId }, 'coordinator state changed');
          },
          onDutyError: (duty) => dutyErrors.inc({ duty }),
        });
        elector.start();
      },
      stop: async () => elector?.stop(),
    },
  ]);
  logger.info({ coordinatorId, cluster: config.cluster }, 'coordinator started');
  return {
    grpcPort: host.ports.grpcPort,
    httpPort: host.ports.httpPort,
    coordinatorId,
    isLeader: () => elector?.leader ?? false,
    stop: () => lifecycle.stop(),
  };
}
