import type { ConnectionPool } from './connection.js';
import type { Logger } from './logger.js';
import type { PublishedEnds } from './published-ends.js';
import type { Clock, Random } from './util.js';

/** What producers, consumers and readers share with the client that made them. */
export interface ClientContext {
  readonly pool: ConnectionPool;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly random: Random;
  /** Deadline of a request/answer exchange (lookup, open, ack, seek...). */
  readonly operationTimeoutMs: number;
  /** Reconnection backoff bounds. */
  readonly initialBackoffMs: number;
  readonly maxBackoffMs: number;
  /**
   * A stream whose requests go unanswered this long (ms) checks with another broker who owns its
   * topic and moves if ownership moved (ownership-watch.ts). 0 or unset: no check.
   */
  readonly ownershipStallThresholdMs?: number;
  /** Where this client's producers last stored a message, per topic. */
  readonly published: PublishedEnds;
}
