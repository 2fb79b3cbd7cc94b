import { mkdirSync } from 'node:fs';
import { resolve, join } from 'node:path';
import { authenticationConfigSpec, type AuthenticationConfig } from '@strata/broker';
import { createMetadataStore } from '@strata/coordinator';
import { ErrorCode, field, loadConfig, LOG_LEVELS, StrataError, type CallGate, type ConfigValues, type Logger } from '@strata/runtime';
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
  logLevel: field.oneOf(LOG_LEVELS, 'warn', 'log level (default warn: only problems; info shows what each role does)'),
  // The broker's authentication flags, passed to it as they are (decision 0090); bookies and the coordinator keep their gate.
  ...authenticationConfigSpec,
};
/** The authentication fields may be left out by a caller in code (they then take the broker's defaults). */
export type StandaloneConfig = Omit<ConfigValues<typeof standaloneConfigSpec>, keyof AuthenticationConfig> & Partial<AuthenticationConfig>;

export interface RunningStandalone extends RunningRole {
  readonly serviceUrl: string;
}

function role(name: string) {
  const r = roles.find((x) => x.name === name);
  if (!r) throw new Error(`unknown role ${name}`);
  return r;
}

/** Builds a role's config through its own spec, so standalone validates exactly as the role would. */
function roleConfig(name: string, flags: Record<string, string | number | boolean | string[]>): Record<string, unknown> {
  const argv = Object.entries(flags).flatMap(([k, v]) =>
    typeof v === 'boolean' ? [v ? `--${k}` : `--no-${k}`] : [`--${k}`, Array.isArray(v) ? v.join(',') : String(v)]);
  return loadConfig(role(name).spec, { argv, env: {} });
}

/** The standalone's authentication settings as the broker's flags (same names). */
function authenticationFlags(config: StandaloneConfig): Record<string, string | boolean | string[] | number> {
  const kebab = (name: string) => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
  const out: Record<string, string | boolean | string[] | number> = {};
  for (const name of Object.keys(authenticationConfigSpec) as Array<keyof AuthenticationConfig>) {
    const value = config[name];
    if (value !== undefined) out[kebab(name)] = value;
  }
  return out;
}

/** Which standalone flag sets the port a role's gRPC or HTTP server binds. */
function portFlag(roleName: string, server: 'grpc' | 'http'): string {
  const flags: Record<string, [string, string]> = {
    coordinator: ['--coordinator-port', '--coordinator-http-port'],
    bookie: ['--bookie-ports', '--bookie-http-ports'],
    broker: ['--broker-port', '--broker-http-port'],
  };
  const [grpcFlag, httpFlag] = flags[roleName] ?? ['--grpc-port', '--http-port'];
  return server === 'grpc' ? grpcFlag : httpFlag;
}

/**
 * Starts one role; a port clash (the host's PortInUseError: code CONFIG with `server` and `port`) becomes
 * one line naming the standalone flag that moves that port.
 */
async function startRole(name: string, config: Record<string, unknown>, deps: Parameters<ReturnType<typeof role>['start']>[1]): Promise<RunningRole> {
  try {
    return await role(name).start(config, deps);
  } catch (err) {
    const e = err as { code?: unknown; server?: unknown; port?: unknown };
    if (e.code === ErrorCode.CONFIG && (e.server === 'grpc' || e.server === 'http') && typeof e.port === 'number') {
      const flag = portFlag(name, e.server);
      const value = flag.endsWith('ports') ? '<n>,<n>' : '<n>';
      throw new StrataError(ErrorCode.CONFIG, `port ${e.port} is in use (the ${name}'s ${e.server === 'grpc' ? 'gRPC' : 'HTTP'} port): pass ${flag} ${value}`, { cause: err, retriable: false });
    }
    throw err;
  }
}

/** The port `strata standalone` and the client commands use by default (pulsar://localhost:6650). */
const DEFAULT_BROKER_PORT = 6650;
const LOOPBACK_HOSTS: ReadonlySet<string> = new Set(['127.0.0.1', 'localhost', '::1', '0.0.0.0', '::']);

/**
 * What standalone prints once ready, framed so that it stands out from any log lines before it. When
 * the client commands' default URL would not reach this broker, the hints carry `--service-url`.
 */
export function standaloneBanner(config: Pick<StandaloneConfig, 'host' | 'logLevel' | 'authenticationEnabled'>, running: Pick<RunningStandalone, 'serviceUrl' | 'grpcPort' | 'httpPort'>): string {
  const nonDefault = running.grpcPort !== DEFAULT_BROKER_PORT || !LOOPBACK_HOSTS.has(config.host);
  const url = nonDefault ? ` --service-url ${running.serviceUrl}` : '';
  const rule = '='.repeat(78);
  const lines = [
    '', rule, ' Strata standalone is ready', '',
    `   service URL: ${running.serviceUrl}`,
    `   metrics:     http://${config.host}:${running.httpPort}/metrics`,
    `   try:         npx strata produce my-topic -m hello${url}`,
    `                npx strata consume my-topic -s sub -p Earliest -n 0${url}`,
  ];
  if (nonDefault) lines.push(`   or:          export STRATA_SERVICE_URL=${running.serviceUrl}   (then leave out --service-url)`);
  if (config.authenticationEnabled) lines.push('   auth:        token authentication is on: client commands need --token <jwt> (see strata tokens)');
  if (config.logLevel === 'warn') lines.push('   logs:        warnings and errors only; --log-level info shows more');
  lines.push('   stop:        Ctrl-C', rule, '');
  return `${lines.join('\n')}\n`;
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
      await startRole('coordinator',
        roleConfig('coordinator', { ...common, 'grpc-host': config.host, 'grpc-port': config.coordinatorPort, 'http-host': config.host, 'http-port': config.coordinatorHttpPort }),
        { logger: logger.child({ role: 'coordinator' }), metadata, gate: deps.gate },
      ),
    );
    for (const [i, port] of config.bookiePorts.entries()) {
      const bookie = await startRole('bookie',
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
    const broker = await startRole('broker',
      roleConfig('broker', {
        ...common,
        'grpc-host': config.host,
        'grpc-port': config.brokerPort,
        'http-host': config.host,
        'http-port': config.brokerHttpPort,
        'advertised-address': `${config.host}:${config.brokerPort}`,
        ...authenticationFlags(config),
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
