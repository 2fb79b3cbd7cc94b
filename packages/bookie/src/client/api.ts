/**
 * The ledger client: what brokers (and the coordinator's auto-recovery) use to store data on bookies.
 * DESIGN.md "Storage: ledgers on bookies" is the contract.
 *
 * Invariants:
 * - A ledger has exactly one writer, the handle returned by createLedger(). Entry ids are 0, 1, 2, ...
 *   with no gaps; append() resolves in entry-id order, and entry n resolves only once entries 0..n have
 *   each reached ackQuorum bookies (fsync'd there).
 * - Many appends may be in flight (pipelined) up to `maxPendingAdds`; past that append() waits
 *   (backpressure) rather than queueing without bound.
 * - After anyone opens the ledger with recovery, the old writer's appends fail with FENCED; the
 *   recovered ledger is CLOSED and holds every entry the old writer saw acknowledged.
 * - Metadata changes (ensemble change, close) are compare-and-swap on the ledger's metadata version.
 * - Reads never return an entry past the last-add-confirmed of an open ledger, nor a corrupt one
 *   (CRC32C checked end to end).
 */
export interface LedgerClient {
  createLedger(options: CreateLedgerOptions): Promise<LedgerWriter>;
  /** Opens for reading. With `recovery`, fences the ensemble, recovers the tail and closes the ledger. */
  openLedger(ledgerId: number, options?: OpenLedgerOptions): Promise<LedgerReader>;
  /** Removes the ledger's metadata (bookies garbage-collect its data). Deleting a missing ledger is a no-op. */
  deleteLedger(ledgerId: number, options?: { signal?: AbortSignal }): Promise<void>;
  getMetadata(ledgerId: number, options?: { signal?: AbortSignal }): Promise<LedgerMetadata>;
  close(): Promise<void>;
}

export interface CreateLedgerOptions {
  ensembleSize: number;
  writeQuorum: number;
  ackQuorum: number;
  /** Free-form labels kept in the ledger's metadata (e.g. the owning topic). */
  customMetadata?: Record<string, string>;
  signal?: AbortSignal;
}

export interface OpenLedgerOptions {
  recovery?: boolean;
  signal?: AbortSignal;
}

export type LedgerState = 'OPEN' | 'IN_RECOVERY' | 'CLOSED';

export interface LedgerMetadata {
  ledgerId: number;
  ensembleSize: number;
  writeQuorum: number;
  ackQuorum: number;
  state: LedgerState;
  /** -1 while open or when empty. */
  lastEntryId: number;
  /** Total payload bytes, set when closed (by its writer or by recovery). */
  length: number;
  /** Ensembles by first entry id, ascending; the last one is current. Bookie ids. */
  ensembles: Array<{ firstEntryId: number; bookies: string[] }>;
  /** Creation time, ms since the epoch. */
  ctime: number;
  customMetadata: Record<string, string>;
}

export interface LedgerEntry {
  ledgerId: number;
  entryId: number;
  payload: Buffer;
}

export interface LedgerReader {
  readonly ledgerId: number;
  readonly metadata: LedgerMetadata;
  /** Entries first..last inclusive (stops early at maxBytes, always returning at least one). */
  read(firstEntryId: number, lastEntryId: number, options?: { maxBytes?: number; signal?: AbortSignal }): Promise<LedgerEntry[]>;
  /** The highest entry id known to be readable: lastEntryId when closed, else asked of the bookies. */
  readLastAddConfirmed(options?: { signal?: AbortSignal }): Promise<number>;
  close(): Promise<void>;
}

export interface LedgerWriter extends LedgerReader {
  /** Entry id of the last entry acknowledged to this writer (-1 if none). */
  readonly lastAddConfirmed: number;
  /** Appends one entry; resolves with its entry id once it is durable on ackQuorum bookies. */
  append(payload: Uint8Array, options?: { signal?: AbortSignal }): Promise<number>;
  /** Waits for in-flight appends, then closes the ledger in metadata. Returns the final metadata. */
  close(): Promise<void>;
}
