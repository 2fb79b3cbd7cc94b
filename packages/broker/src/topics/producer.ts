import type { ProducerAccessMode } from '../generated/strata/broker/v1/ProducerAccessMode.js';
import type { RateMeter } from './rate.js';

export type AccessMode = Exclude<ProducerAccessMode, number>;

/** Where the broker tells a producer's stream that the topic closed it. */
export interface ProducerSink {
  /** The topic ends the producer; `redirectBrokerUrl` names the new owner when known. */
  closed(reason: string, redirectBrokerUrl?: string): void;
  /** Another producer took exclusive access: a final close, the client must not come back. */
  fenced(reason: string): void;
}

/** A producer attached to a topic. Owned by its topic. */
export class Producer {
  constructor(
    readonly id: number,
    readonly name: string,
    readonly accessMode: AccessMode,
    readonly sink: ProducerSink,
    readonly rate: RateMeter,
    readonly address: string,
  ) {}
}

export type PublishResult =
  | { kind: 'stored'; ledgerId: number; entryId: number }
  /** Deduplication found this batch already stored (or being stored): nothing was written. */
  | { kind: 'duplicate' };
