import type {
  CreateLedgerOptions, LedgerClient, LedgerEntry, LedgerMetadata, LedgerReader, LedgerWriter, OpenLedgerOptions,
} from '../client/api.js';
import {
  InvalidLedgerArgumentError, LedgerClientClosedError, LedgerClosedError, LedgerFencedError, NoSuchLedgerError,
} from '../client/errors.js';
import { cloneMetadata, validateQuorums } from '../client/metadata.js';

interface FakeLedger {
  metadata: LedgerMetadata;
  entries: Buffer[];
  fenced: boolean;
}

/**
 * The shared "bookies + metadata" of in-memory ledger clients. Give the same cluster to several
 * InMemoryLedgerClient instances to model several brokers (one writes, another recovers).
 */
export class InMemoryLedgerCluster {
  readonly ledgers = new Map<number, FakeLedger>();
  private nextLedgerId = 1;
  /** Called before each add is stored; return an Error to fail that add (and break its writer). */
  appendFault: ((ledgerId: number, entryId: number) => Error | undefined) | undefined;

  allocateLedgerId(): number {
    return this.nextLedgerId++;
  }

  /** Ledger ids that exist, ascending. */
  ledgerIds(): number[] {
    return [...this.ledgers.keys()].sort((a, b) => a - b);
  }
}

export interface InMemoryLedgerClientOptions {
  cluster?: InMemoryLedgerCluster;
  /** Appends in flight per writer before append() waits (as the real client's maxPendingAdds). */
  maxPendingAdds?: number;
  /** Delay before an add "reaches the bookies", to let tests see appends in flight. Default 0 (next tick). */
  addDelayMs?: number;
}

/**
 * A faithful in-memory LedgerClient for unit tests of its users (brokers, managed ledgers): entry ids
 * 0, 1, 2, ... per ledger, appends resolve in order, openLedger({ recovery: true }) fences the writer
 * (its pending and later appends fail with FENCED) and closes the ledger at the last entry stored,
 * metadata versions change on every update. No bookies, no quorums, no durability.
 */
export class InMemoryLedgerClient implements LedgerClient {
  readonly cluster: InMemoryLedgerCluster;
  private closed = false;
  private readonly writers = new Set<InMemoryLedgerWriter>();

  constructor(private readonly options: InMemoryLedgerClientOptions = {}) {
    this.cluster = options.cluster ?? new InMemoryLedgerCluster();
  }

  async createLedger(options: CreateLedgerOptions): Promise<LedgerWriter> {
    this.checkOpen();
    options.signal?.throwIfAborted();
    validateQuorums(options.ensembleSize, options.writeQuorum, options.ackQuorum);
    const ledgerId = this.cluster.allocateLedgerId();
    const metadata: LedgerMetadata = {
      ledgerId,
      ensembleSize: options.ensembleSize,
      writeQuorum: options.writeQuorum,
      ackQuorum: options.ackQuorum,
      state: 'OPEN',
      lastEntryId: -1,
      length: 0,
      ensembles: [{ firstEntryId: 0, bookies: Array.from({ length: options.ensembleSize }, (_, i) => `fake-bookie-${i}`) }],
      ctime: Date.now(),
      customMetadata: { ...(options.customMetadata ?? {}) },
    };
    const ledger: FakeLedger = { metadata, entries: [], fenced: false };
    this.cluster.ledgers.set(ledgerId, ledger);
    const writer = new InMemoryLedgerWriter(this.cluster, ledger, this.options.maxPendingAdds ?? 1000, this.options.addDelayMs ?? 0, () => this.writers.delete(writer));
    this.writers.add(writer);
    return writer;
  }

  async openLedger(ledgerId: number, options: OpenLedgerOptions = {}): Promise<LedgerReader> {
    this.checkOpen();
    options.signal?.throwIfAborted();
    const ledger = this.get(ledgerId);
    if (options.recovery && ledger.metadata.state !== 'CLOSED') {
      ledger.fenced = true;
      await Promise.resolve();
      const lastEntryId = ledger.entries.length - 1;
      ledger.metadata = {
        ...ledger.metadata,
        state: 'CLOSED',
        lastEntryId,
        length: ledger.entries.reduce((n, e) => n + e.length, 0),
      };
    }
    return new InMemoryLedgerReader(this.cluster, ledger);
  }

  async deleteLedger(ledgerId: number, options: { signal?: AbortSignal } = {}): Promise<void> {
    this.checkOpen();
    options.signal?.throwIfAborted();
    this.cluster.ledgers.delete(ledgerId);
  }

  async getMetadata(ledgerId: number, options: { signal?: AbortSignal } = {}): Promise<LedgerMetadata> {
    this.checkOpen();
    options.signal?.throwIfAborted();
    return cloneMetadata(this.get(ledgerId).metadata);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const writer of this.writers) writer.abandon(new LedgerClientClosedError());
    this.writers.clear();
  }

  private get(ledgerId: number): FakeLedger {
    const ledger = this.cluster.ledgers.get(ledgerId);
    if (!ledger) throw new NoSuchLedgerError(ledgerId);
    return ledger;
  }

  private checkOpen(): void {
    if (this.closed) throw new LedgerClientClosedError();
  }
}


class InMemoryLedgerReader implements LedgerReader {
  constructor(protected readonly cluster: InMemoryLedgerCluster, protected readonly ledger: FakeLedger) {}

  get ledgerId(): number {
    return this.ledger.metadata.ledgerId;
  }

  get metadata(): LedgerMetadata {
    return cloneMetadata(this.ledger.metadata);
  }

  async read(firstEntryId: number, lastEntryId: number, options: { maxBytes?: number; signal?: AbortSignal } = {}): Promise<LedgerEntry[]> {
    options.signal?.throwIfAborted();
    if (!this.cluster.ledgers.has(this.ledgerId)) throw new NoSuchLedgerError(this.ledgerId);
    const lac = this.readableLast();
    if (!Number.isInteger(firstEntryId) || !Number.isInteger(lastEntryId) || firstEntryId < 0 || lastEntryId < firstEntryId) {
      throw new InvalidLedgerArgumentError(`bad entry range ${firstEntryId}..${lastEntryId}`);
    }
    if (lastEntryId > lac) throw new InvalidLedgerArgumentError(`entry ${lastEntryId} is past the last readable entry ${lac} of ledger ${this.ledgerId}`);
    const out: LedgerEntry[] = [];
    let bytes = 0;
    for (let id = firstEntryId; id <= lastEntryId; id++) {
      const payload = this.ledger.entries[id] as Buffer;
      if (out.length > 0 && options.maxBytes !== undefined && bytes + payload.length > options.maxBytes) break;
      out.push({ ledgerId: this.ledgerId, entryId: id, payload: Buffer.from(payload) });
      bytes += payload.length;
    }
    return out;
  }

  async readLastAddConfirmed(options: { signal?: AbortSignal } = {}): Promise<number> {
    options.signal?.throwIfAborted();
    if (!this.cluster.ledgers.has(this.ledgerId)) throw new NoSuchLedgerError(this.ledgerId);
    return this.readableLast();
  }

  protected readableLast(): number {
    const m = this.ledger.metadata;
    return m.state === 'CLOSED' ? m.lastEntryId : this.ledger.entries.length - 1;
  }

  async close(): Promise<void> {}
}

class InMemoryLedgerWriter extends InMemoryLedgerReader implements LedgerWriter {
  private nextEntryId = 0;
  private lac = -1;
  private pending = 0;
  private readonly slotWaiters: Array<() => void> = [];
  private tail: Promise<void> = Promise.resolve();
  private failure: Error | undefined;
  private closing = false;

  constructor(
    cluster: InMemoryLedgerCluster,
    ledger: FakeLedger,
    private readonly maxPendingAdds: number,
    private readonly addDelayMs: number,
    private readonly onClosed: () => void,
  ) {
    super(cluster, ledger);
  }

  get lastAddConfirmed(): number {
    return this.lac;
  }

  async append(payload: Uint8Array, options: { signal?: AbortSignal } = {}): Promise<number> {
    options.signal?.throwIfAborted();
    while (this.pending >= this.maxPendingAdds && !this.failure && !this.closing) {
      await new Promise<void>((resolve) => this.slotWaiters.push(resolve));
    }
    this.checkWritable();
    const entryId = this.nextEntryId++;
    const data = Buffer.from(payload);
    this.pending++;
    const done = this.tail.then(async () => {
      await (this.addDelayMs > 0 ? new Promise((r) => setTimeout(r, this.addDelayMs)) : new Promise((r) => setImmediate(r)));
      this.checkWritable(true);
      const fault = this.cluster.appendFault?.(this.ledgerId, entryId);
      if (fault) {
        this.failure = fault;
        throw fault;
      }
      if (this.ledger.entries.length !== entryId) throw new Error(`fake ledger ${this.ledgerId}: entry ${entryId} out of order`);
      this.ledger.entries.push(data);
      this.lac = entryId;
    });
    this.tail = done.catch(() => undefined);
    try {
      await done;
      return entryId;
    } finally {
      this.pending--;
      this.slotWaiters.shift()?.();
    }
  }

  override async close(): Promise<void> {
    if (this.closing) return this.tail;
    this.closing = true;
    for (const wake of this.slotWaiters.splice(0)) wake();
    await this.tail;
    this.onClosed();
    const m = this.ledger.metadata;
    if (!this.cluster.ledgers.has(this.ledgerId)) throw new NoSuchLedgerError(this.ledgerId);
    if (m.state === 'CLOSED') {
      // Someone recovered the ledger: fine only if they closed it exactly where this writer stopped.
      if (m.lastEntryId === this.lac) return;
      throw new LedgerFencedError(this.ledgerId);
    }
    this.ledger.metadata = { ...m, state: 'CLOSED', lastEntryId: this.lac, length: this.ledger.entries.reduce((n, e) => n + e.length, 0) };
  }

  /** The client was closed: fail what is pending and what comes. */
  abandon(error: Error): void {
    this.failure ??= error;
    for (const wake of this.slotWaiters.splice(0)) wake();
  }

  private checkWritable(inFlight = false): void {
    if (this.ledger.fenced) throw new LedgerFencedError(this.ledgerId);
    if (this.failure) throw this.failure;
    if (!this.cluster.ledgers.has(this.ledgerId)) throw new NoSuchLedgerError(this.ledgerId);
    if (this.closing && !inFlight) throw new LedgerClosedError(this.ledgerId);
    if (this.ledger.metadata.state === 'CLOSED') throw new LedgerFencedError(this.ledgerId);
  }
}
