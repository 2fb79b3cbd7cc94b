import type { EntryEnvelope__Output } from '../generated/strata/broker/v1/EntryEnvelope.js';
import type { HashRange__Output } from '../generated/strata/broker/v1/HashRange.js';
import type { RateMeter } from './rate.js';
import type { Position } from '../storage/index.js';

export type SubscriptionType = 'EXCLUSIVE_SUB' | 'SHARED_SUB' | 'FAILOVER_SUB' | 'KEY_SHARED_SUB';

/** Pulsar's names of the subscription types (what topic stats and the CLI show). */
const TYPE_NAMES: Readonly<Record<SubscriptionType, string>> = {
  EXCLUSIVE_SUB: 'Exclusive', SHARED_SUB: 'Shared', FAILOVER_SUB: 'Failover', KEY_SHARED_SUB: 'Key_Shared',
};

/** `Shared` for SHARED_SUB, and so on; '' for none. */
export function subscriptionTypeName(type: SubscriptionType | undefined): string {
  return type ? TYPE_NAMES[type] : '';
}

/**
 * Cursor property holding the subscription's type by its Pulsar name, persisted with the cursor when a
 * consumer attaches, so stats name the type after a restart before any consumer reconnects.
 */
export const SUBSCRIPTION_TYPE_PROPERTY = 'subscriptionType';

/** An entry on its way to a consumer. */
export interface DispatchEntry {
  readonly position: Position;
  readonly envelope: EntryEnvelope__Output;
  readonly size: number;
  /** Key_Shared hash slot of the entry's batch key, 0..KEY_HASH_SLOTS-1. */
  readonly keyHash: number;
  redeliveryCount: number;
  /** Messages of the batch already acked one by one (batch index acks); the client skips them. */
  ackedBatchIndexes?: readonly number[];
}

/** Where a consumer's events go (the gRPC stream, or a test's recorder). */
export interface ConsumerSink {
  deliver(entries: readonly DispatchEntry[]): void;
  activeChange(isActive: boolean): void;
  /** The broker ends the consumer (topic unloading, deleted, subscription removed), naming the new owner when known. */
  closed(reason: string, redirectBrokerUrl?: string): void;
}

export interface ConsumerOptions {
  id: number;
  name: string;
  priority: number;
  /** Key_Shared STICKY ranges (inclusive); empty for AUTO_SPLIT. */
  stickyRanges: HashRange__Output[];
  nackDelayMs: number;
}

/**
 * One consumer attached to a subscription. Owned by its Subscription, which alone mutates it.
 * Invariants: permits >= 0; `pending` holds exactly the entries delivered to it and neither acked,
 * nacked nor handed back for redelivery.
 */
export class Consumer {
  readonly id: number;
  readonly name: string;
  readonly priority: number;
  readonly stickyRanges: HashRange__Output[];
  readonly nackDelayMs: number;
  permits = 0;
  readonly pending = new Map<string, { position: Position; keyHash: number }>();
  isActive = false;

  constructor(options: ConsumerOptions, readonly sink: ConsumerSink, readonly rateOut: RateMeter) {
    this.id = options.id;
    this.name = options.name;
    this.priority = options.priority;
    this.stickyRanges = options.stickyRanges;
    this.nackDelayMs = options.nackDelayMs;
  }
}
