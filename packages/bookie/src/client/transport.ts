/**
 * The seam between the ledger client's quorum logic and the wire. `GrpcBookieTransport` is the real
 * one; tests of the quorum, striping and recovery logic use an in-memory one.
 *
 * Invariants an implementation keeps:
 * - `add` resolves only once the bookie acknowledged the add (durable there), or rejects with a
 *   StrataError whose `code` is the bookie's domain code (FENCED, READ_ONLY, ...) or UNAVAILABLE /
 *   TIMEOUT for transport failures. It never hangs: a bookie that does not answer within the
 *   transport's add timeout fails every add pending on it with TIMEOUT.
 * - Adds sent to one bookie are delivered to it in the order `add` was called.
 * - Reads return entries exactly as stored (the caller checks the CRC32C).
 */
export interface BookieTransport {
  add(bookieId: string, add: AddRequest): Promise<void>;
  /** Entries first..last in order, cut at maxBytes (at least one); NOT_FOUND if the bookie lacks `first`. */
  read(bookieId: string, request: ReadRequest, signal?: AbortSignal): Promise<StoredEntryData[]>;
  readLastAddConfirmed(bookieId: string, ledgerId: number, signal?: AbortSignal): Promise<number>;
  /** Fences the ledger on that bookie (idempotent) and reports what the bookie has. */
  fence(bookieId: string, ledgerId: number, signal?: AbortSignal): Promise<BookieLedgerState>;
  getLedgerState(bookieId: string, ledgerId: number, signal?: AbortSignal): Promise<BookieLedgerState>;
  close(): Promise<void>;
}

export interface AddRequest {
  ledgerId: number;
  entryId: number;
  lastAddConfirmed: number;
  payload: Buffer;
  crc32c: number;
  recovery: boolean;
}

export interface ReadRequest {
  ledgerId: number;
  firstEntryId: number;
  lastEntryId: number;
  maxBytes: number;
}

export interface StoredEntryData {
  entryId: number;
  payload: Buffer;
  crc32c: number;
}

export interface BookieLedgerState {
  fenced: boolean;
  lastAddConfirmed: number;
  /** Highest entry id stored on that bookie, -1 if none. */
  lastEntryId: number;
}
