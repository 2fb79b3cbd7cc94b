import { InvalidRequestError } from '../errors.js';
import { topicHash, type TopicName } from '../names.js';

/**
 * Namespace bundles: the hash space [0, 2^32) split into `count` equal ranges. A topic belongs to the
 * bundle whose range holds topicHash(topic). Ranges are [start, end) except the last, which includes
 * 0xffffffff. Ownership (later issue) moves whole bundles.
 */
export const HASH_SPACE = 0x1_0000_0000;
export const MAX_BUNDLES = 1024;

export interface BundleRange {
  namespace: string;
  start: number;
  /** Exclusive, except that the last bundle's end (0xffffffff) is inclusive. */
  end: number;
}

export function computeBundles(namespace: string, count: number): BundleRange[] {
  if (!Number.isInteger(count) || count < 1 || count > MAX_BUNDLES) {
    throw new InvalidRequestError(`bundle count must be 1..${MAX_BUNDLES}, got ${count}`);
  }
  const out: BundleRange[] = [];
  for (let i = 0; i < count; i++) {
    const start = Math.floor((HASH_SPACE * i) / count);
    const end = i === count - 1 ? 0xffffffff : Math.floor((HASH_SPACE * (i + 1)) / count);
    out.push({ namespace, start, end });
  }
  return out;
}

export function bundleOf(topic: TopicName, count: number): BundleRange {
  const hash = topicHash(topic);
  const bundles = computeBundles(topic.namespaceName, count);
  const found = bundles.find((b, i) => hash >= b.start && (hash < b.end || (i === bundles.length - 1 && hash <= b.end)));
  return found as BundleRange;
}

/** "0x00000000_0x40000000", the form admin.proto's BundleInfo.range uses. */
export function formatRange(b: BundleRange): string {
  const hex = (n: number) => `0x${n.toString(16).padStart(8, '0')}`;
  return `${hex(b.start)}_${hex(b.end)}`;
}

export interface BundleOwner {
  brokerId: string;
  /** host:port clients connect to. */
  url: string;
}

/**
 * The service's one question about ownership: who serves a topic's bundle, and is it this broker.
 * Invariant: the broker serves producer and consumer streams only for topics where `isMine` is true at
 * the time the topic is loaded; when ownership is lost (later issue) the service closes those topics.
 */
export interface OwnershipView {
  /** Who owns the bundle holding `topic`, or undefined when nobody does yet. */
  ownerOf(topic: TopicName, options?: { signal?: AbortSignal }): Promise<(BundleOwner & { isMine: boolean }) | undefined>;
  /** This broker's identity. */
  readonly self: BundleOwner;
  /**
   * The signal a topic loaded now is tied to: it aborts when this broker stops owning the topic's
   * bundle (reason: the ownership layer's BundleEndedError, with `kind` and `target`). Undefined when
   * the bundle is not owned here at this moment (the topic must not load).
   */
  topicSignal?(topic: TopicName): Promise<AbortSignal | undefined>;
  /**
   * Checks the metadata session against the clock now, so that a process that was frozen (SIGSTOP, a
   * long GC pause) notices the loss before it serves anything queued while it slept: its I/O runs
   * before the timer that would notice. False when the session is lost; the loss handling (every
   * bundle's signal aborted, so their topics close and tell their clients) has then run synchronously.
   */
  checkSession?(): boolean;
}

/** One broker owns everything (standalone, and until the ownership issue lands). */
export class SingleBrokerOwnership implements OwnershipView {
  private readonly never = new AbortController().signal;

  /** Set once the broker knows its bound address. */
  constructor(public self: BundleOwner) {}

  async topicSignal(): Promise<AbortSignal> {
    return this.never;
  }

  async ownerOf(): Promise<BundleOwner & { isMine: boolean }> {
    return { ...this.self, isMine: true };
  }
}
