/**
 * The client commands of the `strata` bin: produce, consume, perf and admin. They use the SDK only through
 * its public entry points (`@strata/client`, and `@strata/client/admin` for the Admin service and the SDK's
 * reading of service URLs and topic names). The bin (../bin.ts) calls `registerClientCommands(program)`;
 * each command parses its flags with the pure functions of flags.ts, runs, and on failure prints one line
 * to stderr and sets a non-zero exit code.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { AuthenticationToken } from '@strata/client';
import { AdminApi } from '@strata/client/admin';
import type { PartitionLookup, PolicyFlags } from './admin.js';
import {
  listOf, mergePolicies, renderBrokers, renderBundles, renderLookups, renderNames, renderPolicies, renderTopicStats,
} from './admin.js';
import { UsageError, describeError, exitCodeOf } from './errors.js';
import type { ConsumeFlags, PerfConsumeFlags, PerfProduceFlags, ProduceFlags, TokenFlags } from './flags.js';
import {
  AUTH_TOKEN_ENV, resolveToken, DEFAULT_SERVICE_URL, SERVICE_URL_ENV, checkBundleRange, checkNamespace, checkTopic, collect, compileConsumeOptions, compilePerfConsumeOptions,
  compilePerfProduceOptions, compileProduceOptions, parseInteger, parseNumber, parseServiceUrl, parseSubscriptionType,
  serviceTargets,
} from './flags.js';
import type { CliIo } from './io.js';
import { processIo } from './io.js';
import { runConsume } from './consume.js';
import { runPerfConsume, runPerfProduce, runWorkload } from './perf.js';
import { runProduce } from './produce.js';
import type { ClientFactory } from './sdk.js';
import { connectClient } from './sdk.js';
import { registerTokenCommands } from './tokens.js';
import { parseWorkload } from './workload.js';

export { parseWorkload } from './workload.js';
export type { Workload } from './workload.js';

export interface ClientCommandDeps {
  io?: CliIo;
  connect?: ClientFactory;
  /** Where a failed command's exit code goes; default `process.exitCode`. */
  setExitCode?: (code: number) => void;
  /** End the process one second after a command if something still holds it open (default true). */
  exitWhenDone?: boolean;
}

/**
 * Adds `produce`, `consume`, `perf` and `admin` to the program. Commands end by setting
 * `process.exitCode`; they do not call `process.exit` themselves, except that a process still held
 * open by a stray handle one second after its command finished is ended (so the CLI never hangs).
 */
export function registerClientCommands(program: Command, deps: ClientCommandDeps = {}): void {
  const io = deps.io ?? processIo;
  const connect = deps.connect ?? connectClient;
  const command = commandWrapper(io, deps.setExitCode ?? ((code) => { process.exitCode = code; }), deps.exitWhenDone ?? true);

  // ----- produce / consume

  withServiceUrl(program.command('produce')
    .description('Produce messages to a topic (like pulsar-client produce)')
    .argument('<topic>', 'topic name: persistent://tenant/ns/topic, tenant/ns/topic or a short name')
    .option('-m, --messages <messages>', 'messages to send, split on the separator (repeatable)', collect)
    .option('-f, --files <path>', 'file whose bytes are one message (repeatable)', collect)
    .option('-n, --num-produce <n>', 'times to send the whole list of messages', '1')
    .option('-r, --rate <msgPerS>', 'messages per second; 0 = as fast as possible', '0')
    .option('-k, --key <key>', 'partitioning key of every message')
    .option('-p, --properties <key=value>', 'message properties (repeatable, or comma-separated)', collect)
    .option('-s, --separator <sep>', 'separator of the --messages lists', ',')
    .option('--disable-batching', 'send every message on its own'))
    .action(command(async (topic: string, flags: ProduceFlags & TokenFlags) => {
      const o = compileProduceOptions(topic, flags);
      await runProduce(o, { io, connect: authenticated(connect, flags), progress: true });
    }));

  withServiceUrl(program.command('consume')
    .description('Consume messages from a topic (like pulsar-client consume)')
    .argument('<topic>', 'topic name, or a regular expression with --regex')
    .option('-s, --subscription-name <name>', 'subscription name (required)')
    .option('-t, --subscription-type <type>', 'Exclusive, Shared, Failover or Key_Shared', 'Exclusive')
    .option('-p, --subscription-position <position>', 'Latest or Earliest (for a new subscription)', 'Latest')
    .option('-n, --num-messages <n>', 'messages to consume; 0 = until interrupted', '1')
    .option('-r, --rate <msgPerS>', 'messages per second; 0 = as fast as they come', '0')
    .option('-q, --queue-size <n>', 'receiver queue size')
    .option('--regex', 'the topic is a regular expression (topicsPattern)')
    .option('--hex', 'show payloads as a hex dump')
    .option('--hide-content', 'do not print messages, only a count every 1000')
    .option('--raw', 'write each payload as is to stdout, followed by a newline')
    .option('--json', 'one JSON object per message'))
    .action(command(async (topic: string, flags: ConsumeFlags & TokenFlags) => {
      const o = compileConsumeOptions(topic, flags);
      await withInterrupt((signal) => runConsume(o, { io, connect: authenticated(connect, flags), signal }));
    }));

  // ----- perf

  const perf = program.command('perf').description('Load generators and benchmarks (like pulsar-perf, and OpenMessaging Benchmark workloads)');

  withServiceUrl(perf.command('produce')
    .description('Publish at a rate (or as fast as possible) and report throughput and publish latency')
    .argument('<topics...>', 'topic(s) to publish to')
    .option('-r, --rate <msgPerS>', 'messages per second across producers; 0 = max', '100')
    .option('-s, --size <bytes>', 'message size (1024, 1KB, 4MB)', '1024')
    .option('-n, --num-producers <n>', 'producers per topic', '1')
    .option('-t, --num-topics <n>', 'with one topic T: use T-0 .. T-(n-1)', '1')
    .option('-m, --num-messages <n>', 'stop after this many messages; 0 = no limit', '0')
    .option('--partitions <n>', 'create the topics as partitioned with n partitions first; 0 = as they are', '0')
    .option('-b, --batch-time-window <ms>', 'batching max publish delay', '1')
    .option('--batch-max-messages <n>', 'messages per batch at most', '1000')
    .option('--batch-max-bytes <bytes>', 'bytes per batch at most')
    .option('--disable-batching', 'no batching')
    .option('-o, --max-outstanding <n>', 'sends in flight per producer at most', '1000')
    .option('-z, --compression <type>', 'None, LZ4, Zlib, ZSTD or SNAPPY', 'None')
    .option('-f, --payload-file <path>', 'UTF-8 file whose lines are the payloads (cycled)')
    .option('--warmup-time <s>', 'seconds left out of the summary at the start', '1')
    .option('--message-key-generation-mode <mode>', 'autoIncrement or random keys (default: no key)')
    .option('--test-duration <s>', 'seconds to run after warm-up; 0 = until interrupted', '0')
    .option('--report-interval <s>', 'seconds between report lines', '5')
    .option('--json', 'one JSON object per line'))
    .action(command(async (topics: string[], flags: PerfProduceFlags & TokenFlags) => {
      const o = compilePerfProduceOptions(topics, flags);
      await withInterrupt((signal) => runPerfProduce(o, { io, connect: authenticated(connect, flags), signal }));
    }));

  withServiceUrl(perf.command('consume')
    .description('Consume as fast as possible and report throughput and end-to-end latency')
    .argument('<topics...>', 'topic(s) to consume from')
    .option('-n, --num-consumers <n>', 'consumers per subscription', '1')
    .option('--num-subscriptions <n>', 'subscriptions per topic', '1')
    .option('-s, --subscriber-name <name>', 'subscription name (prefix when several)', 'sub')
    .option('--subscription-type <type>', 'Exclusive, Shared, Failover or Key_Shared', 'Exclusive')
    .option('--subscription-position <position>', 'Latest or Earliest', 'Latest')
    .option('-q, --receiver-queue-size <n>', 'receiver queue size', '1000')
    .option('-t, --num-topics <n>', 'with one topic T: use T-0 .. T-(n-1)', '1')
    .option('--test-duration <s>', 'seconds to run; 0 = until interrupted', '0')
    .option('--report-interval <s>', 'seconds between report lines', '5')
    .option('--json', 'one JSON object per line'))
    .action(command(async (topics: string[], flags: PerfConsumeFlags & TokenFlags) => {
      const o = compilePerfConsumeOptions(topics, flags);
      await withInterrupt((signal) => runPerfConsume(o, { io, connect: authenticated(connect, flags), signal }));
    }));

  withServiceUrl(perf.command('run')
    .description('Run an OpenMessaging Benchmark workload file as is and print OMB-comparable results')
    .argument('<workload>', 'OMB workload YAML file')
    .option('--namespace <tenant/ns>', 'namespace for the run\'s topics', 'public/default')
    .option('--test-duration <s>', 'override testDurationMinutes, in seconds')
    .option('--warmup-time <s>', 'override warmupDurationMinutes, in seconds')
    .option('--subscription-type <type>', 'default: Exclusive (Shared when consumerPerSubscription > 1)')
    .option('-o, --output <file>', 'write the OMB result JSON to this file')
    .option('--report-interval <s>', 'seconds between report lines', '10')
    .option('--json', 'one JSON object per line'))
    .action(command(async (file: string, flags: {
      namespace: string; testDuration?: string; warmupTime?: string; subscriptionType?: string; output?: string;
      reportInterval?: string; json?: boolean; serviceUrl?: string;
    } & TokenFlags) => {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (err) {
        throw new UsageError(`cannot read workload '${file}': ${(err as Error).message}`, { cause: err });
      }
      const w = parseWorkload(text);
      let payloadFileBytes: Buffer | undefined;
      if (w.payloadFile !== undefined && !w.useRandomizedPayloads) {
        const path = resolve(dirname(file), w.payloadFile);
        try {
          payloadFileBytes = readFileSync(path);
        } catch (err) {
          throw new UsageError(`workload payloadFile '${w.payloadFile}' (${path}) cannot be read: ${(err as Error).message}`, { cause: err });
        }
      }
      const result = await withInterrupt((signal) => runWorkload(w, {
        serviceUrl: parseServiceUrl(flags.serviceUrl),
        namespace: checkNamespace(flags.namespace),
        ...(flags.testDuration === undefined ? {} : { testDurationS: parseNumber('--test-duration', flags.testDuration, { min: 1, fallback: 0 }) }),
        ...(flags.warmupTime === undefined ? {} : { warmupS: parseNumber('--warmup-time', flags.warmupTime, { min: 0, fallback: 0 }) }),
        ...(flags.subscriptionType === undefined ? {} : { subscriptionType: parseSubscriptionType('--subscription-type', flags.subscriptionType) }),
        reportIntervalS: parseNumber('--report-interval', flags.reportInterval, { min: 0.1, fallback: 10 }),
        json: Boolean(flags.json),
        ...(payloadFileBytes === undefined ? {} : { payloadFileBytes }),
      }, { io, connect: authenticated(connect, flags), signal }));
      if (flags.output) writeFileSync(flags.output, `${JSON.stringify(result, null, 2)}\n`);
    }));

  registerAdmin(program, io, command);
  registerTokenCommands(program, io, command);
}

// ---------------------------------------------------------------------------------------------------
// admin

interface AdminFlags extends TokenFlags {
  serviceUrl?: string;
  json?: boolean;
}

type AdminOutput = { json: unknown; text: string };
type AdminFn = (api: AdminApi, flags: AdminFlags & Record<string, unknown>, ...args: string[]) => Promise<AdminOutput>;

function registerAdmin(program: Command, io: CliIo, command: ReturnType<typeof commandWrapper>): void {
  const admin = program.command('admin').description('Administer tenants, namespaces, topics, brokers and bundles');

  /** An admin leaf: parses the URL, opens the Admin service, prints JSON or the human form. */
  const leaf = (parent: Command, name: string, description: string, configure: (c: Command) => Command, fn: AdminFn): void => {
    const cmd = configure(withServiceUrl(parent.command(name).description(description)).option('--json', 'print JSON'));
    cmd.action(command(async (...all: unknown[]) => {
      // commander passes the arguments, then the options object, then the command.
      const flags = all[all.length - 2] as AdminFlags & Record<string, unknown>;
      const args = all.slice(0, all.length - 2) as string[];
      const token = resolveToken(flags);
      const api = new AdminApi(serviceTargets(parseServiceUrl(flags.serviceUrl)), token === undefined ? {} : { authentication: new AuthenticationToken({ token }) });
      try {
        const out = await fn(api, flags, ...args);
        io.out(flags.json ? JSON.stringify(out.json, null, 2) : out.text);
      } finally {
        api.close();
      }
    }));
  };
  const done = (what: string): AdminOutput => ({ json: { ok: true }, text: what });
  const none = (c: Command): Command => c;
  const ns = (c: Command): Command => c.argument('<tenant/namespace>');
  const topic = (c: Command): Command => c.argument('<topic>');

  const tenants = admin.command('tenants').description('Tenants');
  leaf(tenants, 'list', 'List tenants', none, async (api) => {
    const names = await api.listTenants();
    return { json: names, text: renderNames(names, 'tenant') };
  });
  leaf(tenants, 'create', 'Create a tenant', (c) => c.argument('<tenant>')
    .option('--admin-roles <roles>', 'comma-separated admin roles (repeatable)', collect)
    .option('--allowed-clusters <clusters>', 'comma-separated clusters (repeatable)', collect), async (api, flags, tenant) => {
    await api.createTenant(tenant as string, listOf(flags.adminRoles as string[] | undefined), listOf(flags.allowedClusters as string[] | undefined));
    return done(`tenant ${tenant} created`);
  });
  leaf(tenants, 'delete', 'Delete a tenant (it must have no namespace)', (c) => c.argument('<tenant>'), async (api, _flags, tenant) => {
    await api.deleteTenant(tenant as string);
    return done(`tenant ${tenant} deleted`);
  });

  const namespaces = admin.command('namespaces').description('Namespaces');
  leaf(namespaces, 'list', 'List the namespaces of a tenant', (c) => c.argument('<tenant>'), async (api, _flags, tenant) => {
    const names = await api.listNamespaces(tenant as string);
    return { json: names, text: renderNames(names, 'namespace') };
  });
  leaf(namespaces, 'create', 'Create a namespace', (c) => ns(c).option('-b, --bundles <n>', 'number of bundles'), async (api, flags, name) => {
    await api.createNamespace(checkNamespace(name as string), parseInteger('--bundles', flags.bundles as string | undefined, { min: 1, max: 1024, fallback: 0 }));
    return done(`namespace ${name} created`);
  });
  leaf(namespaces, 'delete', 'Delete a namespace (it must have no topic)', ns, async (api, _flags, name) => {
    await api.deleteNamespace(checkNamespace(name as string));
    return done(`namespace ${name} deleted`);
  });
  const policies = namespaces.command('policies').description('Namespace policies');
  leaf(policies, 'get', 'Show the policies of a namespace', ns, async (api, _flags, name) => {
    const p = await api.getPolicies(checkNamespace(name as string));
    return { json: p, text: renderPolicies(p) };
  });
  leaf(policies, 'set', 'Change some policies of a namespace (the others stay)', (c) => ns(c)
    .option('--deduplication <bool>', 'true or false')
    .option('--retention-time-minutes <n>', '-1 = infinite, 0 = none')
    .option('--retention-size-mb <n>', '-1 = infinite, 0 = none')
    .option('--message-ttl-seconds <n>', '0 = no TTL')
    .option('--ensemble-size <n>', 'bookies per ledger')
    .option('--write-quorum <n>', 'copies of each entry')
    .option('--ack-quorum <n>', 'acknowledgements per entry')
    .option('--msg-publish-rate <n>', "each topic's publish limit, messages/s (0 = none)")
    .option('--byte-publish-rate <n>', "each topic's publish limit, bytes/s (0 = none)")
    .option('--sub-msg-dispatch-rate <n>', "each subscription's dispatch limit, messages/s (0 = none)")
    .option('--sub-byte-dispatch-rate <n>', "each subscription's dispatch limit, bytes/s (0 = none)")
    .option('--max-producers-per-topic <n>', '0 = no limit')
    .option('--max-consumers-per-subscription <n>', '0 = no limit')
    .option('--max-subscriptions-per-topic <n>', '0 = no limit')
    .option('--delayed-delivery <bool>', 'true or false (false: deliverAt/deliverAfter are ignored)')
    .option('--max-delivery-delay-ms <n>', 'the longest delay a producer may ask (0 = any)'), async (api, flags, name) => {
    const namespace = checkNamespace(name as string);
    const next = mergePolicies(await api.getPolicies(namespace), flags as PolicyFlags);
    await api.setPolicies(namespace, next);
    return { json: next, text: renderPolicies(next) };
  });

  const topics = admin.command('topics').description('Topics');
  leaf(topics, 'list', 'List the topics of a namespace', ns, async (api, _flags, name) => {
    const names = await api.listTopics(checkNamespace(name as string));
    return { json: names, text: renderNames(names, 'topic') };
  });
  leaf(topics, 'list-partitioned', 'List the partitioned topics of a namespace', ns, async (api, _flags, name) => {
    const names = await api.listPartitionedTopics(checkNamespace(name as string));
    return { json: names, text: renderNames(names, 'partitioned topic') };
  });
  leaf(topics, 'create-partitioned', 'Create a partitioned topic',
    (c) => topic(c).requiredOption('-p, --partitions <n>', 'number of partitions'), async (api, flags, t) => {
      const n = parseInteger('-p/--partitions', flags.partitions as string, { min: 1, max: 10_000, fallback: 0 });
      await api.createPartitionedTopic(checkTopic(t as string), n);
      return done(`partitioned topic ${t} created with ${n} partitions`);
    });
  leaf(topics, 'delete', 'Delete a topic', (c) => topic(c)
    .option('-f, --force', 'delete even with producers, consumers or subscriptions')
    .option('--partitioned', 'the topic is partitioned: delete it and all its partitions'), async (api, flags, t) => {
    checkTopic(t as string);
    if (flags.partitioned) await api.deletePartitionedTopic(t as string, Boolean(flags.force));
    else await api.deleteTopic(t as string, Boolean(flags.force));
    return done(`topic ${t} deleted`);
  });
  leaf(topics, 'stats', 'Show the stats of a topic (or of one partition)', topic, async (api, _flags, t) => {
    const s = await api.topicStats(checkTopic(t as string));
    return { json: s, text: renderTopicStats(s) };
  });
  leaf(topics, 'partitioned-lookup', 'Show which broker serves each partition of a topic', topic, async (api, _flags, t) => {
    const name = checkTopic(t as string);
    const n = await api.partitions(name);
    const names = n === 0 ? [name] : Array.from({ length: n }, (_, i) => `${name}-partition-${i}`);
    const rows: PartitionLookup[] = [];
    for (const one of names) {
      const b = await api.lookupBundle(one);
      rows.push({ topic: one, range: b.range, owner: b.ownerBrokerId, url: b.ownerUrl });
    }
    return { json: rows, text: renderLookups(rows) };
  });

  const brokers = admin.command('brokers').description('Brokers');
  leaf(brokers, 'list', 'List live brokers', none, async (api) => {
    const list = await api.listBrokers();
    return { json: list, text: renderBrokers(list) };
  });

  const bundles = admin.command('bundles').description('Namespace bundles');
  leaf(bundles, 'list', 'List the bundles of a namespace and their owners', ns, async (api, _flags, name) => {
    const list = await api.listBundles(checkNamespace(name as string));
    return { json: list, text: renderBundles(list) };
  });
  const range = (c: Command): Command => ns(c).argument('<range>', 'e.g. 0x00000000_0x40000000');
  leaf(bundles, 'unload', 'Unload a bundle (its owner hands it over)',
    (c) => range(c).option('-d, --destination-broker <id>', 'broker to move the bundle to'), async (api, flags, name, r) => {
      await api.unloadBundle(checkNamespace(name as string), checkBundleRange(r as string), (flags.destinationBroker as string | undefined) ?? '');
      return done(`bundle ${name}/${r} unloaded`);
    });
  leaf(bundles, 'split', 'Split a bundle in two', range, async (api, _flags, name, r) => {
    await api.splitBundle(checkNamespace(name as string), checkBundleRange(r as string));
    return done(`bundle ${name}/${r} split`);
  });
}

// ---------------------------------------------------------------------------------------------------
// plumbing

/**
 * `--service-url`, else the STRATA_SERVICE_URL environment variable, else pulsar://localhost:6650; and the
 * authentication token (`--token`, `--token-file`, STRATA_AUTH_TOKEN: resolveToken).
 */
function withServiceUrl(cmd: Command): Command {
  return cmd.addOption(new Option('--service-url <url>', 'broker service URL').env(SERVICE_URL_ENV).default(DEFAULT_SERVICE_URL))
    .option('--token <jwt>', `authentication token (visible to ps: prefer --token-file or ${AUTH_TOKEN_ENV})`)
    .option('--token-file <file>', 'read the authentication token from this file');
}

/** The factory with the command's token, if it has one. */
function authenticated(connect: ClientFactory, flags: TokenFlags): ClientFactory {
  const token = resolveToken(flags);
  return token === undefined ? connect : (url) => connect(url, { token });
}

/**
 * Makes the action wrapper: an error becomes one line on stderr (`error: ...`) and an exit code (2 for bad
 * usage, 1 otherwise); nothing is thrown back into commander.
 */
function commandWrapper(io: CliIo, setExitCode: (code: number) => void, exitWhenDone: boolean) {
  return <A extends unknown[]>(fn: (...args: A) => Promise<void>): ((...args: A) => Promise<void>) =>
    async (...args: A) => {
      try {
        await fn(...args);
      } catch (err) {
        io.err(`error: ${describeError(err)}`);
        setExitCode(exitCodeOf(err));
      } finally {
        // A leaked handle (a timer, a half-closed channel) must not keep a finished command alive.
        if (exitWhenDone) setTimeout(() => process.exit(), 1000).unref();
      }
    };
}

/**
 * Runs `fn` with a signal aborted on the first SIGINT/SIGTERM (the command stops cleanly and prints its
 * summary); a second one exits at once with 130.
 */
async function withInterrupt<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const onSignal = (): void => {
    if (controller.signal.aborted) process.exit(130);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await fn(controller.signal);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
