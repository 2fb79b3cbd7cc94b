/**
 * OpenMessaging Benchmark workload files, read as they are published (openmessaging/benchmark
 * `workloads/*.yaml`, the `Workload` class of its framework). Fields Strata cannot honour are refused with
 * a message that says so; nothing is silently ignored, so a result printed by `strata perf run` means the
 * same workload it would mean in OMB.
 */
import { parse as parseYaml } from 'yaml';
import { UsageError } from './errors.js';
import { LIMITS } from './flags.js';

export type KeyDistributor = 'NO_KEY' | 'KEY_ROUND_ROBIN' | 'RANDOM_NANO';

export interface Workload {
  name: string;
  topics: number;
  partitionsPerTopic: number;
  keyDistributor: KeyDistributor;
  messageSize: number;
  /** Path of a file whose bytes are every message's payload (relative to the workload file). */
  payloadFile?: string;
  useRandomizedPayloads: boolean;
  randomBytesRatio: number;
  randomizedPayloadPoolSize: number;
  subscriptionsPerTopic: number;
  consumerPerSubscription: number;
  producersPerTopic: number;
  /** Messages per second across all producers; 0 = as fast as the system takes them (see docs/cli.md). */
  producerRate: number;
  consumerBacklogSizeGB: number;
  testDurationMinutes: number;
  warmupDurationMinutes: number;
}

/** OMB's fields that Strata reads; anything else in a file is refused (a typo would otherwise go unnoticed). */
const KNOWN_FIELDS = new Set([
  'name', 'topics', 'partitionsPerTopic', 'keyDistributor', 'messageSize', 'payloadFile', 'useRandomizedPayloads',
  'randomBytesRatio', 'randomizedPayloadPoolSize', 'subscriptionsPerTopic', 'consumerPerSubscription',
  'producersPerTopic', 'producerRate', 'consumerBacklogSizeGB', 'backlogDrainRatio', 'testDurationMinutes',
  'warmupDurationMinutes', 'messageRateReceivedForSubscription', 'producerStartRate', 'acceptableBacklog',
  'producerIncrementRate', 'producerIncrementSeconds', 'producerPauseBeforeDrain', 'producerPauseDuringDrain',
]);

/** Fields some OMB forks add; accepted only at their neutral value. */
const NEUTRAL: Record<string, unknown> = {
  producerIncrementRate: 0,
  producerPauseBeforeDrain: 0,
  producerPauseDuringDrain: 0,
};

function int(doc: Record<string, unknown>, field: string, opts: { min: number; max?: number; fallback?: number }): number {
  const v = doc[field];
  if (v === undefined || v === null) {
    if (opts.fallback !== undefined) return opts.fallback;
    throw new UsageError(`workload: '${field}' is required`);
  }
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new UsageError(`workload: '${field}' must be an integer, got ${JSON.stringify(v)}`);
  if (v < opts.min) throw new UsageError(`workload: '${field}' must be >= ${opts.min}, got ${v}`);
  if (opts.max !== undefined && v > opts.max) throw new UsageError(`workload: '${field}' must be <= ${opts.max}, got ${v}`);
  return v;
}

function num(doc: Record<string, unknown>, field: string, opts: { min: number; max?: number; fallback: number }): number {
  const v = doc[field];
  if (v === undefined || v === null) return opts.fallback;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new UsageError(`workload: '${field}' must be a number, got ${JSON.stringify(v)}`);
  if (v < opts.min || (opts.max !== undefined && v > opts.max)) {
    throw new UsageError(`workload: '${field}' must be between ${opts.min} and ${opts.max ?? 'infinity'}, got ${v}`);
  }
  return v;
}

/** Parses and validates a workload file's text. Throws UsageError naming the field at fault. */
export function parseWorkload(text: string): Workload {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new UsageError(`workload: not valid YAML: ${(err as Error).message.split('\n')[0]}`, { cause: err });
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new UsageError('workload: expected a YAML mapping of OMB workload fields');
  const d = doc as Record<string, unknown>;

  const unknown = Object.keys(d).filter((k) => !KNOWN_FIELDS.has(k));
  if (unknown.length > 0) throw new UsageError(`workload: unknown field(s) ${unknown.map((k) => `'${k}'`).join(', ')}`);
  for (const [field, neutral] of Object.entries(NEUTRAL)) {
    if (d[field] !== undefined && d[field] !== neutral) {
      throw new UsageError(`workload: '${field}' is not supported by strata perf run (only ${String(neutral)})`);
    }
  }

  const backlog = num(d, 'consumerBacklogSizeGB', { min: 0, fallback: 0 });
  if (backlog !== 0) {
    throw new UsageError('workload: consumerBacklogSizeGB > 0 (build a backlog, then drain it) is not supported by strata perf run yet; set it to 0');
  }

  const keyDistributor = d.keyDistributor ?? 'NO_KEY';
  if (keyDistributor !== 'NO_KEY' && keyDistributor !== 'KEY_ROUND_ROBIN' && keyDistributor !== 'RANDOM_NANO') {
    throw new UsageError(`workload: 'keyDistributor' must be NO_KEY, KEY_ROUND_ROBIN or RANDOM_NANO, got ${JSON.stringify(keyDistributor)}`);
  }
  if (d.name !== undefined && typeof d.name !== 'string') throw new UsageError("workload: 'name' must be a string");
  if (d.payloadFile !== undefined && d.payloadFile !== null && typeof d.payloadFile !== 'string') {
    throw new UsageError("workload: 'payloadFile' must be a path");
  }
  if (d.useRandomizedPayloads !== undefined && typeof d.useRandomizedPayloads !== 'boolean') {
    throw new UsageError("workload: 'useRandomizedPayloads' must be true or false");
  }

  const w: Workload = {
    name: (d.name as string | undefined) ?? 'unnamed workload',
    topics: int(d, 'topics', { min: 1, max: LIMITS.topicsMax }),
    partitionsPerTopic: int(d, 'partitionsPerTopic', { min: 1, max: LIMITS.partitionsMax, fallback: 1 }),
    keyDistributor,
    messageSize: int(d, 'messageSize', { min: 1, max: LIMITS.messageBytesMax }),
    ...(typeof d.payloadFile === 'string' ? { payloadFile: d.payloadFile } : {}),
    useRandomizedPayloads: (d.useRandomizedPayloads as boolean | undefined) ?? false,
    randomBytesRatio: num(d, 'randomBytesRatio', { min: 0, max: 1, fallback: 0 }),
    randomizedPayloadPoolSize: int(d, 'randomizedPayloadPoolSize', { min: 0, max: 100_000, fallback: 0 }),
    subscriptionsPerTopic: int(d, 'subscriptionsPerTopic', { min: 0, max: 1000 }),
    consumerPerSubscription: int(d, 'consumerPerSubscription', { min: 0, max: LIMITS.clientsMax }),
    producersPerTopic: int(d, 'producersPerTopic', { min: 1, max: LIMITS.clientsMax }),
    producerRate: num(d, 'producerRate', { min: 0, fallback: 0 }),
    consumerBacklogSizeGB: backlog,
    testDurationMinutes: num(d, 'testDurationMinutes', { min: 0, fallback: Number.NaN }),
    warmupDurationMinutes: num(d, 'warmupDurationMinutes', { min: 0, fallback: 1 }),
  };
  if (Number.isNaN(w.testDurationMinutes)) throw new UsageError("workload: 'testDurationMinutes' is required");
  if (w.useRandomizedPayloads && w.randomizedPayloadPoolSize < 1) {
    throw new UsageError("workload: useRandomizedPayloads needs 'randomizedPayloadPoolSize' >= 1");
  }
  if (w.subscriptionsPerTopic > 0 && w.consumerPerSubscription === 0) {
    throw new UsageError("workload: 'consumerPerSubscription' must be >= 1 when there are subscriptions");
  }
  const producers = w.topics * w.producersPerTopic;
  const consumers = w.topics * w.subscriptionsPerTopic * w.consumerPerSubscription;
  if (producers + consumers > LIMITS.clientsMax) {
    throw new UsageError(`workload: ${producers} producers and ${consumers} consumers is more than one process runs (${LIMITS.clientsMax})`);
  }
  return w;
}

/** Builds the pool of payloads the producers cycle through, following OMB's payload rules. */
export function buildPayloads(w: Workload, fileBytes: Buffer | undefined, random: () => number = Math.random): Buffer[] {
  if (w.useRandomizedPayloads) {
    const randomBytes = Math.round(w.messageSize * w.randomBytesRatio);
    return Array.from({ length: w.randomizedPayloadPoolSize }, () => {
      const b = Buffer.alloc(w.messageSize, 0x61);
      for (let i = 0; i < randomBytes; i++) b[i] = Math.floor(random() * 256);
      return b;
    });
  }
  if (fileBytes !== undefined) {
    // OMB sends the file as it is and only warns when its size differs from messageSize; do the same.
    return [fileBytes];
  }
  return [Buffer.alloc(w.messageSize, 0x61)];
}
