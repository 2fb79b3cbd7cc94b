import { ErrorCode, StrataError } from '@strata/runtime';

/**
 * The bundle ownership protocol's keys and values, shared by the broker (OwnershipManager) and the
 * coordinator leader (BundleAssigner). docs/ownership.md and decisions 0060-0062 describe it.
 *
 *   brokers/<brokerId>                    BrokerRegistration (bound to the broker's session)
 *   ownership/<tenant>/<ns>/<range>       OwnershipRecord (bound to the owner's session; create-if-absent)
 *   assignments/<tenant>/<ns>/<range>     AssignmentRecord (plain key: where the bundle should live)
 *   admin/policies/<tenant>/<ns>          namespace policies: `bundles`, optional `bundleBoundaries`
 *
 * A bundle id is `<tenant>/<ns>/<range>`, range as `0x00000000_0x40000000`.
 */
export const BROKERS_PREFIX = 'brokers/';
export const OWNERSHIP_PREFIX = 'ownership/';
export const ASSIGNMENTS_PREFIX = 'assignments/';
export const POLICIES_PREFIX = 'admin/policies/';

export const BUNDLE_HASH_MAX = 0xffffffff;
export const BUNDLE_HASH_SPACE = 0x1_0000_0000;
/** Same limit as the broker's namespace policies. */
export const MAX_NAMESPACE_BUNDLES = 1024;

/** What a broker publishes about itself under `brokers/<id>`; refreshed every load report. */
export interface BrokerRegistration {
  id: string;
  /** host:port clients use (gRPC). */
  url: string;
  /** host:port of its HTTP endpoint (/metrics), if known. */
  httpUrl?: string;
  startedAtMs: number;
  /** True while the broker hands its bundles away (SIGTERM): the assigner gives it nothing new. */
  draining?: boolean;
  load?: LoadReport;
  /**
   * The session this key (and every ownership of the broker) is bound to: the coordinator revokes it
   * when the broker's process is definitely gone (decision 0065). Absent from older brokers.
   */
  sessionId?: string;
  /** Random per process start: tells a restarted broker (same id and address) from the one before. */
  instanceId?: string;
}

export interface LoadReport {
  /** Increments with every report, so "N consecutive reports" can be counted. */
  seq: number;
  atMs: number;
  /** Process CPU time over the last interval, in percent of one core. */
  cpuPercent: number;
  /** Resident memory in percent of the machine's memory. */
  memoryPercent: number;
  memoryRssBytes: number;
  msgRateIn: number;
  msgRateOut: number;
  bundleCount: number;
  /**
   * Owned bundles with at least one loaded topic, busiest first, at most MAX_REPORTED_BUNDLES (the
   * leader's input for splitting hot bundles; a bundle left out counts as idle). Absent in reports of
   * older brokers.
   */
  bundles?: BundleLoad[];
}

/** Most bundles one load report lists (keeps `brokers/<id>` small; the quietest are left out). */
export const MAX_REPORTED_BUNDLES = 256;

/** The load of one owned bundle: sums over its loaded topics. Rates are per second. */
export interface BundleLoad {
  /** `<tenant>/<ns>/<range>` */
  bundle: string;
  topics: number;
  producers: number;
  consumers: number;
  msgRateIn: number;
  msgRateOut: number;
  /** Bytes per second. */
  msgThroughputIn: number;
  msgThroughputOut: number;
}

/** `ownership/<bundle>`: who serves the bundle. Exists only while the owner's session lives. */
export interface OwnershipRecord {
  brokerId: string;
  url: string;
  acquiredAtMs: number;
}

export type AssignmentReason = 'unowned' | 'timeout' | 'shed' | 'unload' | 'drain';

/** `assignments/<bundle>`: the broker that should own the bundle. The owner of a bundle assigned elsewhere unloads it. */
export interface AssignmentRecord {
  brokerId: string;
  url: string;
  atMs: number;
  reason: AssignmentReason;
}

/** One bundle of a namespace: hash range [start, end), the last one including 0xffffffff. */
export interface BundleSpec {
  /** `<tenant>/<ns>/<range>` */
  id: string;
  namespace: string;
  start: number;
  end: number;
}

/** The part of namespace policies that defines bundles. */
export interface BundlePolicy {
  bundles?: number;
  /**
   * Split bundles: n+1 strictly increasing boundaries from 0 to 0xffffffff (decision 0061). When present
   * it wins over `bundles`.
   */
  bundleBoundaries?: number[];
}

export class InvalidBundlePolicyError extends StrataError {
  constructor(namespace: string, reason: string) {
    super(ErrorCode.INVALID_ARGUMENT, `bundles of ${namespace}: ${reason}`, { retriable: false });
    this.name = 'InvalidBundlePolicyError';
  }
}

export function formatBundleRange(start: number, end: number): string {
  const hex = (n: number) => `0x${n.toString(16).padStart(8, '0')}`;
  return `${hex(start)}_${hex(end)}`;
}

/** `<tenant>/<ns>/0x00000000_0x40000000` -> BundleSpec (the inverse of a bundle id), or undefined for another shape. */
export function parseBundleId(id: string): BundleSpec | undefined {
  const m = /^([^/]+\/[^/]+)\/0x([0-9a-f]{8})_0x([0-9a-f]{8})$/.exec(id);
  if (!m) return undefined;
  const start = parseInt(m[2] as string, 16);
  const end = parseInt(m[3] as string, 16);
  return start < end ? { id, namespace: m[1] as string, start, end } : undefined;
}

/** Equal ranges, the same as the broker's computeBundles (decision 0035). */
export function equalBoundaries(count: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < count; i++) out.push(Math.floor((BUNDLE_HASH_SPACE * i) / count));
  out.push(BUNDLE_HASH_MAX);
  return out;
}

/** The namespace's bundles, in hash order. Throws InvalidBundlePolicyError on a malformed policy. */
export function namespaceBundles(namespace: string, policy: BundlePolicy, defaultBundles = 4): BundleSpec[] {
  let boundaries: number[];
  if (policy.bundleBoundaries !== undefined) {
    boundaries = policy.bundleBoundaries;
    const ok = Array.isArray(boundaries) && boundaries.length >= 2 && boundaries.length <= MAX_NAMESPACE_BUNDLES + 1 &&
      boundaries[0] === 0 && boundaries[boundaries.length - 1] === BUNDLE_HASH_MAX &&
      boundaries.every((b, i) => Number.isInteger(b) && (i === 0 || b > (boundaries[i - 1] as number)));
    if (!ok) throw new InvalidBundlePolicyError(namespace, 'bundleBoundaries must rise strictly from 0 to 0xffffffff');
  } else {
    const count = policy.bundles ?? defaultBundles;
    if (!Number.isInteger(count) || count < 1 || count > MAX_NAMESPACE_BUNDLES) {
      throw new InvalidBundlePolicyError(namespace, `bundle count must be 1..${MAX_NAMESPACE_BUNDLES}, got ${String(count)}`);
    }
    boundaries = equalBoundaries(count);
  }
  const out: BundleSpec[] = [];
  for (let i = 0; i + 1 < boundaries.length; i++) {
    const start = boundaries[i] as number;
    const end = boundaries[i + 1] as number;
    out.push({ id: `${namespace}/${formatBundleRange(start, end)}`, namespace, start, end });
  }
  return out;
}

/** The bundle holding `hash` (ranges are [start, end) except the last, which includes its end). */
export function bundleForHash(bundles: readonly BundleSpec[], hash: number): BundleSpec | undefined {
  for (let i = 0; i < bundles.length; i++) {
    const b = bundles[i] as BundleSpec;
    if (hash >= b.start && (hash < b.end || (i === bundles.length - 1 && hash <= b.end))) return b;
  }
  return undefined;
}

/**
 * Boundaries after splitting the bundle starting at `start` in two halves (the split point is the
 * middle of its range; never rehashes a topic). Undefined when the bundle is too small to split.
 */
export function splitBoundaries(boundaries: readonly number[], start: number): number[] | undefined {
  const i = boundaries.indexOf(start);
  if (i < 0 || i + 1 >= boundaries.length || boundaries.length > MAX_NAMESPACE_BUNDLES) return undefined;
  const end = boundaries[i + 1] as number;
  const mid = start + Math.floor((end - start) / 2);
  if (mid <= start || mid >= end) return undefined;
  return [...boundaries.slice(0, i + 1), mid, ...boundaries.slice(i + 1)];
}

/**
 * The namespace policy after splitting its bundle that starts at `start` at the middle of its range:
 * `bundleBoundaries` with one more boundary and `bundles` = the new count; every other field kept as it
 * is. The one split used by the admin SplitBundle RPC and the leader's automatic split (decision 0061).
 * Undefined when there is no bundle starting at `start`, it is too small to split, or the namespace
 * already has `maxBundles`. Throws InvalidBundlePolicyError on a malformed policy.
 */
export function splitBundlePolicy<P extends BundlePolicy>(
  namespace: string, policy: P, start: number, options: { defaultBundles?: number; maxBundles?: number } = {},
): (P & { bundles: number; bundleBoundaries: number[] }) | undefined {
  const all = namespaceBundles(namespace, policy, options.defaultBundles ?? 4);
  if (all.length >= Math.min(options.maxBundles ?? MAX_NAMESPACE_BUNDLES, MAX_NAMESPACE_BUNDLES)) return undefined;
  const boundaries = [...all.map((b) => b.start), (all[all.length - 1] as BundleSpec).end];
  const next = splitBoundaries(boundaries, start);
  return next ? { ...policy, bundleBoundaries: next, bundles: next.length - 1 } : undefined;
}

/** `<tenant>/<ns>` from `admin/policies/<tenant>/<ns>`, or undefined for a key of another shape. */
export function namespaceOfPolicyKey(key: string): string | undefined {
  if (!key.startsWith(POLICIES_PREFIX)) return undefined;
  const rest = key.slice(POLICIES_PREFIX.length);
  return rest.split('/').length === 2 ? rest : undefined;
}

export const ownershipKey = (bundleId: string) => `${OWNERSHIP_PREFIX}${bundleId}`;
export const assignmentKey = (bundleId: string) => `${ASSIGNMENTS_PREFIX}${bundleId}`;
export const brokerKey = (brokerId: string) => `${BROKERS_PREFIX}${brokerId}`;

/** JSON of a key's value, or undefined when it is not valid JSON (a stray key must not break the protocol). */
export function parseJson<T>(value: Buffer | Uint8Array): T | undefined {
  try {
    const v = JSON.parse(Buffer.from(value).toString('utf8')) as unknown;
    return v !== null && typeof v === 'object' ? (v as T) : undefined;
  } catch {
    return undefined;
  }
}

/** A load report reduced to one number, in percent: the busiest resource decides. */
export function loadScore(load: LoadReport | undefined): number {
  if (!load) return 0;
  const v = Math.max(load.cpuPercent, load.memoryPercent);
  return Number.isFinite(v) ? v : 0;
}
