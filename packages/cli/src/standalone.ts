import { mkdirSync } from 'node:fs';
import { resolve, join } from 'node:path';
import { createMetadataStore } from '@strata/coordinator';
import { field, loadConfig, type CallGate, type ConfigValues, type Logger } from '@strata/runtime';
import { roles, type RunningRole } from './roles.js';

/**
 * `strata standalone`: one coordinator, one broker and two bookies in this process, on the embedded
 * metadata store (or etcd with --metadata-url), data under one directory, kept across restarts.
 * docs/decisions/0004-standalone-in-one-process.md says why one process.
 */
export const standaloneConfigSpec = {
  dataDir: field.string('./data', 'where the metadata and the bookies keep their files'),
  metadataUrl: field.string('', 'etcd://host:port[,host:port] to use etcd; empty uses the embedded store under dataDir'),
  cluster: field.string('standalone', 'cluster name (the metadata key prefix)'),
  host: field.string('127.0.0.1', 'address every role listens on and advertises'),
  brokerPort: field.int(6650, 'broker gRPC port (clients and admin)', { min: 0, max: 65535 }),
  brokerHttpPort: field.int(8080, 'broker HTTP port (/metrics, /healthz, /readyz, the admin REST API)', { min: 0, max: 65535 }),
  bookiePorts: field.list(['3181', '3182'], 'gRPC ports of the bookies, one per bookie (comma separated)'),
  bookieHttpPorts: field.list(['8000', '8001'], 'HTTP ports of the bookies, one per bookie'),
  coordinatorPort: field.int(6660, 'coordinator gRPC port', { min: 0, max: 65535 }),
  coordinatorHttpPort: field.int(8090, 'coordinator HTTP port', { min: 0, max: 65535 }),
  logLevel: field.oneOf(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const, 'info', 'log level'),
};
export type StandaloneConfig = ConfigValues<typeof standaloneConfigSpec>;

export interface RunningStandalone extends RunningRole {
  readonly serviceUrl: string;
}

function role(name: string) {
  const r = roles.find((x) => x.name === name);
  if (!r) throw new Error(`unknown role ${name}`);
  return r;
}

/** Builds a role's config through its own spec, so standalone validates exactly as the role would. */
function roleConfig(name: string, flags: Record<string, string | number>): Record<string, unknown> {
  const argv = Object.entries(flags).flatMap(([k, v]) => [`--${k}`, String(v)]);
  return loadConfig(role(name).spec, { argv, env: {} });
}

/** `gate`: the call gate every role's servers use (decision 0087); default: open. */
export async function startStandalone(config: StandaloneConfig, logger: Logger, deps: { gate?: CallGate } = {}): Promise<RunningStandalone> {
  if (config.bookiePorts.length < 2 || config.bookiePorts.length !== config.bookieHttpPorts.length) {
    throw new Error('standalone needs at least two bookies, with as many --bookie-http-ports as --bookie-ports');
  }
  const dataDir = resolve(config.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const metadataUrl = config.metadataUrl || `embedded://${join(dataDir, 'metadata')}`;
  const metadata = await createMetadataStore(metadataUrl, { logger: logger.child({ component: 'metadata' }), cluster: config.cluster });
  const common = { 'metadata-url': metadataUrl, cluster: config.cluster, 'log-level': config.logLevel };
  const started: RunningRole[] = [];
  const stopAll = async () => {
    for (const r of started.reverse()) await r.stop().catch((err: unknown) => logger.error({ err }, 'stop failed'));
    await metadata.close();
  };
  try {
    started.push(
      await role('coordinator').start(
        roleConfig('coordinator', { ...common, 'grpc-host': config.host, 'grpc-port': config.coordinatorPort, 'http-host': config.host, 'http-port': config.coordinatorHttpPort }),
        { logger: logger.child({ role: 'coordinator' }), metadata, gate: deps.gate },
      ),
    );
    for (const [i, port] of config.bookiePorts.entries()) {
      const bookie = await role('bookie').start(
        roleConfig('bookie', {
          ...common,
          'data-dir': join(dataDir, `bookie-${i}`),
          'grpc-host': config.host,
          'grpc-port': port,
          'http-host': config.host,
          'http-port': config.bookieHttpPorts[i] ?? 0,
          'advertised-address': `${config.host}:${port}`,
        }),
        { logger: logger.child({ role: 'bookie', bookie: i }), metadata, gate: deps.gate },
      );
      started.push(bookie);
    }
    const broker = await role('broker').start(
      roleConfig('broker', {
        ...common,
        'grpc-host': config.host,
        'grpc-port': config.brokerPort,
        'http-host': config.host,
        'http-port': config.brokerHttpPort,
        'advertised-address': `${config.host}:${config.brokerPort}`,
      }),
      { logger: logger.child({ role: 'broker' }), metadata, gate: deps.gate },
    );
    started.push(broker);
    return {
      grpcPort: broker.grpcPort,
      httpPort: broker.httpPort,
      serviceUrl: `pulsar://${config.host}:${broker.grpcPort}`,
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
