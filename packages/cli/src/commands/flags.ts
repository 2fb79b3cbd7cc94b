/**
 * Flag parsing and validation for the client commands, kept free of I/O so that it can be tested alone.
 * Commander hands every value over as the string the user typed; the `compile*` functions turn those into
 * checked, typed options (defaults filled, units normalised) or throw a UsageError naming the flag.
 */
import { readFileSync } from 'node:fs';
import { UsageError } from './errors.js';
import { fullTopicName, parseServiceUrl as sdkParseServiceUrl } from '@strata/client/admin';

export const DEFAULT_SERVICE_URL = 'pulsar://localhost:6650';
/** The environment variable every client command takes its default service URL from (`--service-url` wins). */
export const SERVICE_URL_ENV = 'STRATA_SERVICE_URL';

/** The environment variable a client command takes its authentication token from (`--token`, `--token-file` win). */
export const AUTH_TOKEN_ENV = 'STRATA_AUTH_TOKEN';

export interface TokenFlags {
  token?: string;
  tokenFile?: string;
}

/**
 * The token of a client command: `--token`, else `--token-file` (trimmed), else STRATA_AUTH_TOKEN;
 * undefined when none is given. Errors name the file, never its content.
 */
export function resolveToken(flags: TokenFlags, env: Record<string, string | undefined> = process.env): string | undefined {
  if (flags.token !== undefined) {
    if (flags.token.trim() === '') throw new UsageError('--token is empty');
    return flags.token.trim();
  }
  if (flags.tokenFile !== undefined) {
    let text: string;
    try {
      text = readFileSync(flags.tokenFile, 'utf8').trim();
    } catch (err) {
      throw new UsageError(`cannot read --token-file ${flags.tokenFile}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, { cause: err });
    }
    if (text === '') throw new UsageError(`--token-file ${flags.tokenFile} is empty`);
    return text;
  }
  const fromEnv = env[AUTH_TOKEN_ENV]?.trim();
  return fromEnv ? fromEnv : undefined;
}

/** Subscription types as the SDK (and pulsar-client for Node) spells them. */
export type CliSubscriptionType = 'Exclusive' | 'Shared' | 'Failover' | 'KeyShared';
export type CliInitialPosition = 'Latest' | 'Earliest';
export type CliCompression = 'None' | 'LZ4' | 'Zlib' | 'ZSTD' | 'SNAPPY';

/** Limits that keep one CLI process bounded whatever the flags say. */
export const LIMITS = {
  /** Largest message the CLI builds (perf --size, one -f file). The broker may refuse smaller ones. */
  messageBytesMax: 5 * 1024 * 1024,
  /** Most producers or consumers one perf process runs. */
  clientsMax: 1000,
  /** Most topics one perf process addresses. */
  topicsMax: 10_000,
  partitionsMax: 10_000,
  /** Most sends a perf producer keeps in flight. */
  outstandingMax: 100_000,
} as const;

// ---------------------------------------------------------------------------------------------------
// Primitive parsers

export function parseInteger(flag: string, value: string | number | undefined, opts: { min?: number; max?: number; fallback: number }): number {
  if (value === undefined || value === '') return opts.fallback;
  const text = String(value).trim();
  if (!/^-?\d+$/.test(text)) throw new UsageError(`${flag} must be an integer, got '${value}'`);
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new UsageError(`${flag} is out of range: '${value}'`);
  if (opts.min !== undefined && n < opts.min) throw new UsageError(`${flag} must be >= ${opts.min}, got ${n}`);
  if (opts.max !== undefined && n > opts.max) throw new UsageError(`${flag} must be <= ${opts.max}, got ${n}`);
  return n;
}

export function parseNumber(flag: string, value: string | number | undefined, opts: { min?: number; max?: number; fallback: number }): number {
  if (value === undefined || value === '') return opts.fallback;
  const text = String(value).trim();
  const n = Number(text);
  if (text === '' || !Number.isFinite(n)) throw new UsageError(`${flag} must be a number, got '${value}'`);
  if (opts.min !== undefined && n < opts.min) throw new UsageError(`${flag} must be >= ${opts.min}, got ${n}`);
  if (opts.max !== undefined && n > opts.max) throw new UsageError(`${flag} must be <= ${opts.max}, got ${n}`);
  return n;
}

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2 };

/** A byte size: `1024`, `1k`, `1KB`, `4MB` (binary units, as pulsar-perf's examples use them). */
export function parseSize(flag: string, value: string | number | undefined, opts: { min?: number; max?: number; fallback: number }): number {
  if (value === undefined || value === '') return opts.fallback;
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(String(value).trim());
  const unit = m ? SIZE_UNITS[(m[2] ?? '').toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new UsageError(`${flag} must be a size like 1024, 1KB or 4MB, got '${value}'`);
  const n = Math.round(Number(m[1]) * unit);
  if (opts.min !== undefined && n < opts.min) throw new UsageError(`${flag} must be at least ${opts.min} bytes, got ${n}`);
  if (opts.max !== undefined && n > opts.max) throw new UsageError(`${flag} must be at most ${opts.max} bytes, got ${n}`);
  return n;
}

function choose<T extends string>(flag: string, value: string | undefined, fallback: T, table: Record<string, T>): T {
  if (value === undefined || value === '') return fallback;
  const hit = table[value.toLowerCase().replace(/[-_]/g, '')];
  if (hit === undefined) {
    const allowed = [...new Set(Object.values(table))].join(', ');
    throw new UsageError(`${flag} must be one of ${allowed}, got '${value}'`);
  }
  return hit;
}

/** Accepts pulsar-client's Java spellings (`Key_Shared`) as well as the Node ones (`KeyShared`), any case. */
export function parseSubscriptionType(flag: string, value: string | undefined, fallback: CliSubscriptionType = 'Exclusive'): CliSubscriptionType {
  return choose(flag, value, fallback, { exclusive: 'Exclusive', shared: 'Shared', failover: 'Failover', keyshared: 'KeyShared' });
}

export function parseInitialPosition(flag: string, value: string | undefined, fallback: CliInitialPosition = 'Latest'): CliInitialPosition {
  return choose(flag, value, fallback, { latest: 'Latest', earliest: 'Earliest' });
}

export function parseCompression(flag: string, value: string | undefined): CliCompression {
  return choose(flag, value, 'None', { none: 'None', lz4: 'LZ4', zlib: 'Zlib', zstd: 'ZSTD', snappy: 'SNAPPY' });
}

/** `key=value` pairs, from repeated flags and/or comma lists. A value may itself contain `=`. */
export function parseProperties(flag: string, values: readonly string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of (values ?? []).flatMap((v) => v.split(','))) {
    if (item.trim() === '') continue;
    const at = item.indexOf('=');
    if (at <= 0) throw new UsageError(`${flag} takes key=value pairs, got '${item}'`);
    out[item.slice(0, at).trim()] = item.slice(at + 1);
  }
  return out;
}

/** Commander collector for repeatable flags. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** The gRPC targets (`host:port`) of a service URL; a bad URL is a usage error. */
export function serviceTargets(serviceUrl: string | undefined): string[] {
  try {
    return sdkParseServiceUrl(serviceUrl ?? DEFAULT_SERVICE_URL);
  } catch (err) {
    throw new UsageError(`--service-url (or ${SERVICE_URL_ENV}): ${(err as Error).message}`, { cause: err });
  }
}

/** Checks the URL now, so that a typo is a usage error before anything connects. */
export function parseServiceUrl(value: string | undefined): string {
  serviceTargets(value);
  return value ?? DEFAULT_SERVICE_URL;
}

// ---------------------------------------------------------------------------------------------------
// produce

export interface ProduceFlags {
  messages?: string[];
  files?: string[];
  numProduce?: string;
  rate?: string;
  key?: string;
  properties?: string[];
  separator?: string;
  disableBatching?: boolean;
  serviceUrl?: string;
}

export interface ProduceOptions {
  topic: string;
  serviceUrl: string;
  /** The payloads of one round, in order: every -m message, then every -f file. */
  payloads: Buffer[];
  /** How many times the round is sent. */
  numProduce: number;
  /** Messages per second, 0 = as fast as possible. */
  rate: number;
  key?: string;
  properties: Record<string, string>;
  batchingEnabled: boolean;
}

export function compileProduceOptions(topic: string, flags: ProduceFlags, readFile: (path: string) => Buffer = readFileSync): ProduceOptions {
  const separator = flags.separator ?? ',';
  if (separator === '') throw new UsageError('--separator must not be empty');
  const payloads: Buffer[] = [];
  for (const m of flags.messages ?? []) for (const part of m.split(separator)) payloads.push(Buffer.from(part, 'utf8'));
  for (const path of flags.files ?? []) {
    let data: Buffer;
    try {
      data = readFile(path);
    } catch (err) {
      throw new UsageError(`--files: cannot read '${path}': ${(err as Error).message}`, { cause: err });
    }
    if (data.length > LIMITS.messageBytesMax) throw new UsageError(`--files: '${path}' is larger than ${LIMITS.messageBytesMax} bytes`);
    payloads.push(data);
  }
  if (payloads.length === 0) throw new UsageError('give the message content with -m/--messages or -f/--files');
  return {
    topic: checkTopic(topic),
    serviceUrl: parseServiceUrl(flags.serviceUrl),
    payloads,
    numProduce: parseInteger('-n/--num-produce', flags.numProduce, { min: 1, fallback: 1 }),
    rate: parseNumber('-r/--rate', flags.rate, { min: 0, fallback: 0 }),
    ...(flags.key === undefined ? {} : { key: flags.key }),
    properties: parseProperties('-p/--properties', flags.properties),
    batchingEnabled: !flags.disableBatching,
  };
}

// ---------------------------------------------------------------------------------------------------
// consume

export type ConsumeOutput = 'text' | 'raw' | 'json' | 'hex' | 'none';

export interface ConsumeFlags {
  subscriptionName?: string;
  subscriptionType?: string;
  subscriptionPosition?: string;
  numMessages?: string;
  rate?: string;
  queueSize?: string;
  regex?: boolean;
  hex?: boolean;
  hideContent?: boolean;
  raw?: boolean;
  json?: boolean;
  serviceUrl?: string;
}

export interface ConsumeOptions {
  topic: string;
  serviceUrl: string;
  subscription: string;
  subscriptionType: CliSubscriptionType;
  initialPosition: CliInitialPosition;
  /** 0 = until interrupted. */
  numMessages: number;
  /** Messages per second, 0 = as fast as they come. */
  rate: number;
  receiverQueueSize?: number;
  regex: boolean;
  output: ConsumeOutput;
}

export function compileConsumeOptions(topic: string, flags: ConsumeFlags): ConsumeOptions {
  if (flags.subscriptionName === undefined || flags.subscriptionName.trim() === '') {
    throw new UsageError('-s/--subscription-name is required');
  }
  const outputs = [flags.hex && 'hex', flags.hideContent && 'none', flags.raw && 'raw', flags.json && 'json'].filter(Boolean);
  if (outputs.length > 1) throw new UsageError('--hex, --hide-content, --raw and --json exclude each other');
  const queue = parseInteger('-q/--queue-size', flags.queueSize, { min: 0, max: 1_000_000, fallback: 0 });
  return {
    topic: flags.regex ? checkPattern(topic) : checkTopic(topic),
    serviceUrl: parseServiceUrl(flags.serviceUrl),
    subscription: flags.subscriptionName,
    subscriptionType: parseSubscriptionType('-t/--subscription-type', flags.subscriptionType),
    initialPosition: parseInitialPosition('-p/--subscription-position', flags.subscriptionPosition),
    numMessages: parseInteger('-n/--num-messages', flags.numMessages, { min: 0, fallback: 1 }),
    rate: parseNumber('-r/--rate', flags.rate, { min: 0, fallback: 0 }),
    ...(queue > 0 ? { receiverQueueSize: queue } : {}),
    regex: Boolean(flags.regex),
    output: (outputs[0] as ConsumeOutput | undefined) ?? 'text',
  };
}

// ---------------------------------------------------------------------------------------------------
// perf

export interface PerfCommonFlags {
  numTopics?: string;
  testDuration?: string;
  reportInterval?: string;
  json?: boolean;
  serviceUrl?: string;
}

export interface PerfProduceFlags extends PerfCommonFlags {
  rate?: string;
  size?: string;
  numProducers?: string;
  numMessages?: string;
  partitions?: string;
  batchTimeWindow?: string;
  batchMaxMessages?: string;
  batchMaxBytes?: string;
  disableBatching?: boolean;
  maxOutstanding?: string;
  compression?: string;
  payloadFile?: string;
  warmupTime?: string;
  messageKeyGenerationMode?: string;
}

export interface PerfCommonOptions {
  topics: string[];
  serviceUrl: string;
  /** Seconds; 0 = until interrupted (or until --num-messages). */
  testDurationS: number;
  reportIntervalS: number;
  json: boolean;
}

export interface PerfProduceOptions extends PerfCommonOptions {
  /** Messages per second across all producers; 0 = as fast as the system takes them. */
  rate: number;
  sizeBytes: number;
  producersPerTopic: number;
  /** Total messages across producers; 0 = no limit. */
  numMessages: number;
  /** Create each topic as partitioned with this many partitions first; 0 = use the topic as it is. */
  partitions: number;
  batchingEnabled: boolean;
  batchingMaxPublishDelayMs: number;
  batchingMaxMessages: number;
  batchingMaxAllowedSizeInBytes?: number;
  maxOutstanding: number;
  compression: CliCompression;
  payloadFile?: string;
  warmupS: number;
  keyMode: 'none' | 'autoIncrement' | 'random';
}

function compileCommon(topicArgs: readonly string[], flags: PerfCommonFlags): PerfCommonOptions {
  if (topicArgs.length === 0) throw new UsageError('give at least one topic');
  const numTopics = parseInteger('-t/--num-topics', flags.numTopics, { min: 1, max: LIMITS.topicsMax, fallback: 1 });
  return {
    topics: expandTopics(topicArgs.map(checkTopic), numTopics),
    serviceUrl: parseServiceUrl(flags.serviceUrl),
    testDurationS: parseNumber('--test-duration', flags.testDuration, { min: 0, fallback: 0 }),
    reportIntervalS: parseNumber('--report-interval', flags.reportInterval, { min: 0.1, max: 3600, fallback: 5 }),
    json: Boolean(flags.json),
  };
}

/**
 * pulsar-perf's rule: with one topic and --num-topics N > 1, the topics are `<topic>-0` .. `<topic>-(N-1)`;
 * with several topics given, --num-topics must be 1 or their count.
 */
export function expandTopics(topics: readonly string[], numTopics: number): string[] {
  if (numTopics === 1 || numTopics === topics.length) return [...topics];
  if (topics.length !== 1) throw new UsageError(`-t/--num-topics is ${numTopics} but ${topics.length} topics were given`);
  return Array.from({ length: numTopics }, (_, i) => `${topics[0]}-${i}`);
}

export function compilePerfProduceOptions(topicArgs: readonly string[], flags: PerfProduceFlags): PerfProduceOptions {
  const common = compileCommon(topicArgs, flags);
  const numProducers = parseInteger('-n/--num-producers', flags.numProducers, { min: 1, fallback: 1 });
  if (numProducers * common.topics.length > LIMITS.clientsMax) {
    throw new UsageError(`${numProducers * common.topics.length} producers is more than one process runs (${LIMITS.clientsMax})`);
  }
  const batchBytes = flags.batchMaxBytes === undefined ? undefined : parseSize('--batch-max-bytes', flags.batchMaxBytes, { min: 1, max: LIMITS.messageBytesMax, fallback: 0 });
  const keyMode = flags.messageKeyGenerationMode === undefined ? 'none'
    : choose('--message-key-generation-mode', flags.messageKeyGenerationMode, 'autoIncrement', { autoincrement: 'autoIncrement', random: 'random' });
  return {
    ...common,
    rate: parseNumber('-r/--rate', flags.rate, { min: 0, fallback: 100 }),
    sizeBytes: parseSize('-s/--size', flags.size, { min: 1, max: LIMITS.messageBytesMax, fallback: 1024 }),
    producersPerTopic: numProducers,
    numMessages: parseInteger('-m/--num-messages', flags.numMessages, { min: 0, fallback: 0 }),
    partitions: parseInteger('--partitions', flags.partitions, { min: 0, max: LIMITS.partitionsMax, fallback: 0 }),
    batchingEnabled: !flags.disableBatching,
    batchingMaxPublishDelayMs: parseNumber('-b/--batch-time-window', flags.batchTimeWindow, { min: 0, max: 60_000, fallback: 1 }),
    batchingMaxMessages: parseInteger('--batch-max-messages', flags.batchMaxMessages, { min: 1, max: 1_000_000, fallback: 1000 }),
    ...(batchBytes === undefined ? {} : { batchingMaxAllowedSizeInBytes: batchBytes }),
    maxOutstanding: parseInteger('-o/--max-outstanding', flags.maxOutstanding, { min: 1, max: LIMITS.outstandingMax, fallback: 1000 }),
    compression: parseCompression('-z/--compression', flags.compression),
    ...(flags.payloadFile === undefined ? {} : { payloadFile: flags.payloadFile }),
    warmupS: parseNumber('--warmup-time', flags.warmupTime, { min: 0, fallback: 1 }),
    keyMode,
  };
}

export interface PerfConsumeFlags extends PerfCommonFlags {
  numConsumers?: string;
  numSubscriptions?: string;
  subscriberName?: string;
  subscriptionType?: string;
  subscriptionPosition?: string;
  receiverQueueSize?: string;
}

export interface PerfConsumeOptions extends PerfCommonOptions {
  consumersPerSubscription: number;
  subscriptions: string[];
  subscriptionType: CliSubscriptionType;
  initialPosition: CliInitialPosition;
  receiverQueueSize: number;
}

export function compilePerfConsumeOptions(topicArgs: readonly string[], flags: PerfConsumeFlags): PerfConsumeOptions {
  const common = compileCommon(topicArgs, flags);
  const numConsumers = parseInteger('-n/--num-consumers', flags.numConsumers, { min: 1, fallback: 1 });
  const numSubscriptions = parseInteger('--num-subscriptions', flags.numSubscriptions, { min: 1, max: 1000, fallback: 1 });
  if (numConsumers * numSubscriptions * common.topics.length > LIMITS.clientsMax) {
    throw new UsageError(`${numConsumers * numSubscriptions * common.topics.length} consumers is more than one process runs (${LIMITS.clientsMax})`);
  }
  const name = flags.subscriberName ?? 'sub';
  if (name.trim() === '') throw new UsageError('-s/--subscriber-name must not be empty');
  const subscriptionType = parseSubscriptionType('--subscription-type', flags.subscriptionType);
  if (subscriptionType === 'Exclusive' && numConsumers > 1) {
    throw new UsageError('an Exclusive subscription takes one consumer: use --subscription-type Shared or Failover with -n > 1');
  }
  return {
    ...common,
    consumersPerSubscription: numConsumers,
    subscriptions: numSubscriptions === 1 ? [name] : Array.from({ length: numSubscriptions }, (_, i) => `${name}-${i}`),
    subscriptionType,
    initialPosition: parseInitialPosition('--subscription-position', flags.subscriptionPosition),
    receiverQueueSize: parseInteger('-q/--receiver-queue-size', flags.receiverQueueSize, { min: 1, max: 1_000_000, fallback: 1000 }),
  };
}

// ---------------------------------------------------------------------------------------------------
// names

/** Accepts a full name, `tenant/ns/topic` or a short name (the SDK's rules); returns it as given. */
export function checkTopic(topic: string): string {
  try {
    fullTopicName(topic);
  } catch (err) {
    throw new UsageError(`'${topic}' is not a topic name (persistent://tenant/namespace/topic, tenant/namespace/topic or topic)`, { cause: err });
  }
  return topic;
}

function checkPattern(pattern: string): string {
  try {
    new RegExp(pattern);
  } catch (err) {
    throw new UsageError(`--regex: '${pattern}' is not a regular expression`, { cause: err });
  }
  return pattern;
}

/** A bundle range as the admin service writes it: `0x00000000_0x40000000`. */
export function checkBundleRange(range: string): string {
  const m = /^0x([0-9a-f]{8})_0x([0-9a-f]{8})$/i.exec(range);
  if (!m || parseInt(m[1] as string, 16) >= parseInt(m[2] as string, 16)) {
    throw new UsageError(`'${range}' is not a bundle range (like 0x00000000_0x40000000, start below end)`);
  }
  return range;
}

/** `tenant/namespace`, as the admin commands take it. */
export function checkNamespace(namespace: string): string {
  if (!/^[^/\s]+\/[^/\s]+$/.test(namespace)) throw new UsageError(`'${namespace}' is not a namespace (tenant/namespace)`);
  return namespace;
}
