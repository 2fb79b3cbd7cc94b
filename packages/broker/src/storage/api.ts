/**
 * The broker's storage seam: managed ledgers (a topic's ordered list of ledgers on bookies) and the
 * cursors (subscriptions, readers) that read them. DESIGN.md "Topics: managed ledgers" is the contract;
 * docs/broker-storage.md says how it is built. The service codes against these interfaces only.
 *
 * Stability: these types change only additively (new optional fields/methods).
 */

/**
 * Where an entry lives: the ledger and the entry in it. Positions order by (ledgerId, entryId).
 *
 * Invariants:
 * - Ledger ids of one managed ledger strictly increase in list order, so position order is append order.
 * - `entryId = -1` means "before the first entry of that ledger" (used for an empty ledger's last
 *   confirmed position and for a cursor that has acknowledged nothing).
 */
export interface Position {
  readonly ledgerId: number;
  readonly entryId: number;
}

/** One stored entry (for the service: one batch of messages). */
export interface Entry {
  readonly position: Position;
  /** The bytes given to append(), unchanged. */
  readonly payload: Buffer;
}

export type InitialPosition = 'earliest' | 'latest';

export function position(ledgerId: number, entryId: number): Position {
  return { ledgerId, entryId };
}

/** Negative if a < b, 0 if equal, positive if a > b. */
export function comparePositions(a: Position, b: Position): number {
  return a.ledgerId !== b.ledgerId ? a.ledgerId - b.ledgerId : a.entryId - b.entryId;
}

export function positionEquals(a: Position, b: Position): boolean {
  return a.ledgerId === b.ledgerId && a.entryId === b.entryId;
}

export function positionToString(p: Position): string {
  return `${p.ledgerId}:${p.entryId}`;
}

export function maxPosition(a: Position, b: Position): Position {
  return comparePositions(a, b) >= 0 ? a : b;
}

export function minPosition(a: Position, b: Position): Position {
  return comparePositions(a, b) <= 0 ? a : b;
}

/**
 * Per managed ledger settings. Every field is optional when opening; `compileManagedLedgerConfig()`
 * fills the defaults (documented in docs/broker-storage.md, Pulsar-like).
 */
export interface ManagedLedgerConfig {
  /** Bookies per ledger (E). Default 2. */
  ensembleSize: number;
  /** Copies of each entry (W). Default 2. */
  writeQuorum: number;
  /** Copies that must be durable before an append resolves (A). Default 2. */
  ackQuorum: number;
  /** Roll over to a new ledger after this many entries. Default 50,000. */
  maxEntriesPerLedger: number;
  /** Roll over after this many payload bytes. Default 2 GiB (2,147,483,648). */
  maxLedgerSizeBytes: number;
  /** Roll over a ledger older than this even if not full (only if it holds entries). Default 4 h. */
  maxLedgerAgeMs: number;
  /** A ledger is never rolled over by entries/size before it is this old. Default 10 min. */
  minLedgerRolloverMs: number;
  /** Appends accepted but not yet durable, per managed ledger. Past it append() rejects. Default 10,000. */
  maxPendingAppends: number;
  /** Payload bytes of those pending appends. Past it append() rejects. Default 64 MiB. */
  maxPendingAppendBytes: number;
  /**
   * How long fully-consumed data is kept: -1 forever, 0 not at all (default). A closed ledger that every
   * durable cursor has consumed is deleted once it is older than this (since its close) OR the stored
   * size without it is still >= retentionSizeBytes (Pulsar's rule). -1 disables a limit: both -1 keep
   * everything; to keep by time only, set the size to -1 (a size of 0 deletes consumed data at once).
   */
  retentionTimeMs: number;
  /** Consumed bytes to keep: -1 unlimited, 0 none (default). */
  retentionSizeBytes: number;
  /**
   * Message time to live: entries older than this are acknowledged on every durable cursor by the
   * background task. 0 = off (default). Age comes from `entryTimeMs` when given (entry precision),
   * else from the ledger's close time (ledger precision: only whole closed ledgers expire).
   */
  ttlMs: number;
  /**
   * Extracts the publish time (ms since the epoch) from a stored payload, for TTL and
   * `findPositionByTime`. Undefined result = unknown, treated as newer than any time (never expired). Must be cheap and must
   * never throw for payloads written through this ledger.
   */
  entryTimeMs?: (payload: Buffer) => number | undefined;
}

export interface ReadOptions {
  /** At most this many entries (>= 1). */
  maxEntries: number;
  /** Stop once this many payload bytes were read (always at least one entry). Default 5 MiB. */
  maxBytes?: number;
  signal?: AbortSignal;
}

export interface ManagedLedgerStats {
  /** Entries stored (all ledgers still listed, including consumed ones kept by retention). */
  entries: number;
  /** Payload bytes stored. */
  sizeBytes: number;
  ledgers: number;
  firstPosition: Position;
  lastConfirmed: Position;
  pendingAppends: number;
  pendingAppendBytes: number;
  /** Bytes of this managed ledger's entries in the (shared) entry cache. */
  cacheSizeBytes: number;
  cacheHits: number;
  cacheMisses: number;
  /** Counters since open. */
  appendedEntries: number;
  appendedBytes: number;
  /** Ledgers deleted by retention/TTL trimming since open. */
  trimmedLedgers: number;
  terminated: boolean;
}

/**
 * A topic's storage: an ordered list of ledgers, the last of which is open for appends. Opened by
 * exactly one broker at a time; opening it elsewhere fences this one.
 *
 * Invariants:
 * - Appends are pipelined and resolve in order: if append(a) was called before append(b), a's position
 *   is lower than b's, and a resolves no later than b. A resolved position is durable on ackQuorum bookies.
 * - A failed append fails every append queued after it that has not resolved (no gaps visible to a
 *   producer: it must resend from the first failure).
 * - `lastConfirmed` only grows; every position <= lastConfirmed that is not trimmed is readable.
 * - Pending appends are bounded (maxPendingAppends / maxPendingAppendBytes): past the limit append()
 *   rejects at once with TOO_MANY_REQUESTS (retriable); it never queues without bound.
 * - Fencing: if another broker opens this managed ledger (recovering our ledger, or changing our ledger
 *   list or a cursor by compare-and-swap), this instance becomes fenced: `lost` aborts with a
 *   ManagedLedgerFencedError (code FENCED), every later append/ack-flush fails with it, and the owner
 *   must close() it and stop serving the topic. Reads of already-stored data keep working.
 * - Trimming deletes whole ledgers from the front only, never the current one, and only ledgers that
 *   every durable cursor has consumed (mark-delete position past them) and retention allows dropping.
 */
export interface ManagedLedger {
  /** `tenant/namespace/domain/topic` (TopicName.path). */
  readonly name: string;
  readonly config: Readonly<ManagedLedgerConfig>;

  /** Aborts (reason: a StrataError, code FENCED) when this broker lost the managed ledger. */
  readonly lost: AbortSignal;

  /**
   * The last durable entry's position. Unchanged by rollover (it stays on the previous ledger's last
   * entry until the new ledger gets one). When the topic never held an entry: {firstLedgerId, -1}.
   */
  readonly lastConfirmed: Position;

  /** The first readable position (the first entry of the first listed ledger that holds one). */
  readonly firstPosition: Position;

  readonly terminated: boolean;

  /**
   * Appends one entry; resolves with its position once durable. See the invariants for limits. The
   * payload is kept (not copied) for the entry cache: do not modify it afterwards. `signal` is checked
   * at the call only: an accepted append cannot be withdrawn.
   */
  append(payload: Uint8Array, options?: { signal?: AbortSignal }): Promise<Position>;

  /**
   * Reads entries from `from` (inclusive) in order, crossing ledger boundaries and skipping empty or
   * trimmed ledgers. Returns [] when nothing is at or after `from` yet. Served from the entry cache when
   * possible.
   */
  read(from: Position, options: ReadOptions): Promise<Entry[]>;

  /** Reads the given positions (any order; returned in position order). Missing/trimmed ones are skipped. */
  readPositions(positions: readonly Position[], options?: { signal?: AbortSignal }): Promise<Entry[]>;

  /**
   * Resolves once an entry after `after` is durable (at once if there is one already). Rejects with the
   * signal's reason when aborted, or with the close/fence error when the managed ledger closes.
   */
  waitForEntriesAfter(after: Position, options?: { signal?: AbortSignal }): Promise<void>;

  /** The position that follows `p` (crossing to the next ledger after a ledger's last entry). */
  nextPosition(p: Position): Position;

  /**
   * Binary search: the first position at or after `from` (default: firstPosition) whose entry satisfies
   * `predicate`, assuming the predicate is monotonic (false...false, true...true) in position order.
   * Undefined when none does. Reads O(log n) entries.
   */
  findFirst(predicate: (entry: Entry) => boolean, options?: { from?: Position; signal?: AbortSignal }): Promise<Position | undefined>;

  /**
   * The first position whose publish time (config.entryTimeMs) is >= timestampMs, or undefined when all
   * are older. Requires `entryTimeMs` (else INVALID_ARGUMENT).
   */
  findPositionByTime(timestampMs: number, options?: { signal?: AbortSignal }): Promise<Position | undefined>;

  /** Entries in (from, lastConfirmed] (exclusive of `from`), counted from ledger sizes: no reads. */
  countEntriesAfter(from: Position): number;

  /**
   * Opens (or creates) the durable cursor `name`. A new cursor starts at `initialPosition`: 'earliest'
   * (mark-delete before firstPosition: everything is backlog) or 'latest' (mark-delete = lastConfirmed).
   * Opening an existing cursor ignores initialPosition. The same name returns the same instance.
   */
  openCursor(name: string, options?: { initialPosition?: InitialPosition; signal?: AbortSignal }): Promise<Cursor>;

  /** Durable cursors currently known (all persisted cursors are loaded on open). */
  cursors(): readonly Cursor[];

  getCursor(name: string): Cursor | undefined;

  /** Deletes a durable cursor and its metadata; its backlog no longer holds back trimming. */
  deleteCursor(name: string, options?: { signal?: AbortSignal }): Promise<void>;

  /**
   * A non-durable cursor (reader): nothing persisted, does not hold back trimming (a reader that falls
   * behind trimming jumps to firstPosition). Starts at `start`: its first read returns `start` itself
   * when `inclusive`, else the entry after it. Close it when done.
   */
  newNonDurableCursor(start: Position | InitialPosition, options?: { inclusive?: boolean; name?: string }): Cursor;

  stats(): ManagedLedgerStats;

  /**
   * Stops appends for good (appends then fail with LEDGER_CLOSED): waits for pending appends, closes
   * the current ledger and records the termination. Returns the last position. Idempotent.
   */
  terminate(options?: { signal?: AbortSignal }): Promise<Position>;

  /**
   * Waits for pending appends, flushes every durable cursor, closes the current ledger, stops waiters
   * (they reject with SERVICE_NOT_READY). Idempotent; also the way to release a fenced ledger.
   */
  close(): Promise<void>;

  /** Deletes every ledger, every cursor and the ledger list. The instance is closed afterwards. */
  delete(options?: { signal?: AbortSignal }): Promise<void>;
}

/** A range of individually acknowledged positions, both ends inclusive. */
export interface AckedRange {
  readonly from: Position;
  readonly to: Position;
}

export interface CursorStats {
  name: string;
  durable: boolean;
  markDeletePosition: Position;
  readPosition: Position;
  /** Entries after the mark-delete position that are not individually acknowledged. */
  backlogEntries: number;
  individuallyAckedRanges: number;
  /** ms since the epoch of the last successful persist (durable cursors), 0 if never. */
  lastPersistedAtMs: number;
  /** Ranges beyond maxAckedRangesPersisted at the last persist (they were not persisted). */
  ackedRangesNotPersisted: number;
}

/**
 * A position in a managed ledger with its acknowledgement state: a subscription (durable) or a reader
 * (non-durable).
 *
 * Invariants:
 * - markDeletePosition: every entry <= it is acknowledged. It only moves forward, except by
 *   resetTo() (a seek).
 * - Individually acknowledged positions are all > markDeletePosition; when they join it, the
 *   mark-delete position advances over them (crossing ledger boundaries).
 * - readPosition > markDeletePosition always; read() never returns an acknowledged entry.
 * - Persistence (durable only): acknowledgements apply in memory at once and are persisted at most every
 *   cursorFlushIntervalMs and on close(). After a crash, acks since the last persist are lost and those
 *   entries are redelivered (at-least-once, never lost). At most maxAckedRangesPersisted individually
 *   acked ranges are persisted (the lowest ones); past that, the higher ranges are redelivered after a
 *   crash.
 */
export interface Cursor {
  readonly name: string;
  readonly durable: boolean;
  readonly markDeletePosition: Position;
  /** The next position read() will look at. */
  readonly readPosition: Position;
  /** Properties persisted with the cursor (e.g. a dedup snapshot); set by ackCumulative or setProperties. */
  readonly properties: Readonly<Record<string, string>>;

  /**
   * Reads from readPosition, skipping acknowledged entries, and advances readPosition past what it
   * returns. With `wait`, waits for at least one entry (until the signal aborts); else may return [].
   * At most one read() per cursor at a time (a second rejects with INVALID_ARGUMENT). A seekRead/rewind
   * during a read wins: the read continues from the new position.
   */
  read(options: ReadOptions & { wait?: boolean }): Promise<Entry[]>;

  /**
   * Resolves once an entry exists at or after readPosition (at once if one does); rejects with the
   * signal's reason, or the close/fence error. Use this after a read() that returned [] rather than
   * `ml.waitForEntriesAfter(ml.lastConfirmed)`: an append that lands between the read and that call
   * would otherwise be waited past.
   */
  waitForEntries(options?: { signal?: AbortSignal }): Promise<void>;

  /** True when an unacknowledged entry exists at or after readPosition. */
  hasMoreEntries(): boolean;

  /** Acknowledges single entries. Positions <= markDelete or > lastConfirmed are ignored. */
  ackIndividual(positions: readonly Position[]): Promise<void>;

  /** Acknowledges everything <= position (no-op if behind markDelete). */
  ackCumulative(position: Position, options?: { properties?: Record<string, string> }): Promise<void>;

  isAcked(p: Position): boolean;

  /** Sets readPosition (e.g. to redeliver from an earlier position); clamped after markDelete. */
  seekRead(p: Position): void;

  /** readPosition = the first unacknowledged position after markDelete. */
  rewind(): void;

  /**
   * Resets the subscription (seek by id or time): markDelete = the position before `p`, individually
   * acked ranges cleared, readPosition = p. Persisted at once for durable cursors.
   */
  resetTo(p: Position | InitialPosition, options?: { signal?: AbortSignal }): Promise<void>;

  setProperties(properties: Record<string, string>): Promise<void>;

  /** Unacknowledged entries after markDelete (no reads: computed from ledger sizes and acked ranges). */
  backlog(): number;

  /** The individually acknowledged ranges, ascending (a copy). */
  ackedRanges(): AckedRange[];

  stats(): CursorStats;

  /** Persists now (durable cursors; no-op for readers). Rejects FENCED if someone else owns the topic. */
  flush(options?: { signal?: AbortSignal }): Promise<void>;

  /**
   * Active cursors hold entries in the entry cache until they have read them. A cursor becomes active
   * on its first read() (so a cursor that is only acked, e.g. a dedup snapshot cursor, never pins the
   * cache); the service marks a subscription whose consumers all left inactive.
   */
  setActive(active: boolean): void;

  /** Flushes (durable) and detaches from the managed ledger (no longer counts for cache eviction). */
  close(): Promise<void>;
}

/** Broker-wide storage settings (shared by every managed ledger the factory opens). */
export interface ManagedLedgerFactoryConfig {
  /** Entry cache budget shared by all managed ledgers. Default 256 MiB; 0 disables the cache. */
  entryCacheSizeBytes: number;
  /** Durable cursors persist at most this often. Default 1000 ms. */
  cursorFlushIntervalMs: number;
  /** Individually acked ranges persisted per cursor. Default 10,000. */
  maxAckedRangesPersisted: number;
  /** Retention/TTL/age-rollover check period. Default 60,000 ms. */
  trimIntervalMs: number;
  /** Defaults for every managed ledger (overridden per open()). */
  defaults: Partial<ManagedLedgerConfig>;
}

/**
 * Opens managed ledgers by name. It owns the background work (cursor flushes, trimming, TTL, age
 * rollover): start() starts it, stop() stops it and closes every open managed ledger.
 *
 * Invariants:
 * - At most one open instance per name per factory; concurrent open() calls of one name share it.
 * - open() recovers (fences) the previous owner's last ledger, then starts a new ledger: after it
 *   resolves, no other broker can append to this topic's earlier ledgers.
 * - Metadata: the ledger list at `managed-ledgers/<name>`, cursors at `managed-ledgers/<name>/cursors/<sub>`.
 */
export interface ManagedLedgerFactory {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;

  /** Opens (creating if missing, unless `createIfMissing` is false: NOT_FOUND) a managed ledger. */
  open(name: string, options?: { config?: Partial<ManagedLedgerConfig>; createIfMissing?: boolean; signal?: AbortSignal }): Promise<ManagedLedger>;

  /** The open instance, if any. */
  get(name: string): ManagedLedger | undefined;

  /** Whether a ledger list exists in metadata for `name`. */
  exists(name: string, options?: { signal?: AbortSignal }): Promise<boolean>;

  /** Names of persisted managed ledgers starting with `prefix` (e.g. `tenant/ns/persistent/`). */
  list(prefix: string, options?: { signal?: AbortSignal }): Promise<string[]>;

  /** Deletes a managed ledger (opening it first, which fences any other owner). */
  delete(name: string, options?: { signal?: AbortSignal }): Promise<void>;
}
