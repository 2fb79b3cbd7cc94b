import { BadVersionError, type MetadataStore } from '@strata/coordinator';
import { backoffMs, ErrorCode, Random, sleep, StrataError, systemClock, type Clock, type Logger } from '@strata/runtime';
import type {
  CreateLedgerOptions, LedgerClient, LedgerMetadata, LedgerReader, LedgerWriter, OpenLedgerOptions,
} from './api.js';
import { BookieRegistry } from './bookie-registry.js';
import { LedgerClientClosedError, NoSuchLedgerError, NotEnoughBookiesError } from './errors.js';
import { GrpcBookieTransport } from './grpc-transport.js';
import { recoverLedger } from './ledger-recovery.js';
import {
  decodeMetadata, encodeMetadata, LEDGER_ID_COUNTER_KEY, ledgerKey, validateQuorums,
} from './metadata.js';
import { LedgerReaderImpl, type ClientContext, type CompiledLedgerClientOptions } from './reader.js';
import type { BookieTransport } from './transport.js';
import { LedgerWriterImpl } from './writer.js';

export interface LedgerClientOptions {
  /** Unacknowledged appends per writer; past it append() waits (default 1000). */
  maxPendingAdds?: number;
  /** Largest entry payload accepted by append() (default 5 MiB). */
  maxEntryBytes?: number;
  /** A bookie that leaves an add unanswered this long is replaced (default 5000). */
  addTimeoutMs?: number;
  /** Deadline of reads, fences and LAC reads (default 5000). */
  requestTimeoutMs?: number;
  /** Attempts of a metadata compare-and-swap that keeps losing (default 20). */
  metadataRetries?: number;
  /** Attempts to find replacement bookies before the writer fails with NOT_ENOUGH_BOOKIES (default 10). */
  ensembleChangeRetries?: number;
  /** Bytes asked of one bookie per read call (default 4 MiB). */
  readChunkBytes?: number;
  /** Adds per AddEntries stream message (default 512). */
  maxAddsPerMessage?: number;
  /** Payload bytes per AddEntries stream message (default 1 MiB). */
  maxBytesPerMessage?: number;
  retryInitialMs?: number;
  retryMaxMs?: number;
}

export function compileLedgerClientOptions(o: LedgerClientOptions = {}): CompiledLedgerClientOptions {
  const maxEntryBytes = o.maxEntryBytes ?? 5 * 1024 * 1024;
  const compiled: CompiledLedgerClientOptions = {
    maxPendingAdds: o.maxPendingAdds ?? 1000,
    maxEntryBytes,
    addTimeoutMs: o.addTimeoutMs ?? 5000,
    requestTimeoutMs: o.requestTimeoutMs ?? 5000,
    metadataRetries: o.metadataRetries ?? 20,
    ensembleChangeRetries: o.ensembleChangeRetries ?? 10,
    readChunkBytes: o.readChunkBytes ?? 4 * 1024 * 1024,
    maxAddsPerMessage: o.maxAddsPerMessage ?? 512,
    maxBytesPerMessage: o.maxBytesPerMessage ?? 1024 * 1024,
    maxMessageBytes: Math.max(maxEntryBytes, o.readChunkBytes ?? 0, o.maxBytesPerMessage ?? 0) + 1024 * 1024,
    retryInitialMs: o.retryInitialMs ?? 50,
    retryMaxMs: o.retryMaxMs ?? 1000,
  };
  for (const [k, v] of Object.entries(compiled)) {
    if (!Number.isFinite(v) || v < 1) throw new StrataError(ErrorCode.CONFIG, `ledger client option ${k} must be >= 1, got ${v}`, { retriable: false });
  }
  return compiled;
}

export interface BookieLedgerClientDeps {
  metadata: MetadataStore;
  logger: Logger;
  clock?: Clock;
  random?: Random;
  options?: LedgerClientOptions;
  /** The wire; default gRPC to the bookies registered under bookies/available/. */
  transport?: BookieTransport;
}

/**
 * The real LedgerClient: metadata in the store (ledgers/<id>, ledger-id-counter), data on bookies
 * over gRPC. See api.ts for the contract and docs/storage.md "Ledger client" for how it works.
 */
export class BookieLedgerClient implements LedgerClient {
  private readonly metadata: MetadataStore;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly random: Random;
  private readonly options: CompiledLedgerClientOptions;
  private readonly registry: BookieRegistry;
  private readonly transport: BookieTransport;
  private readonly ctx: ClientContext;
  private readonly writers = new Set<LedgerWriterImpl>();
  private closed = false;

  constructor(deps: BookieLedgerClientDeps) {
    this.metadata = deps.metadata;
    this.logger = deps.logger.child({ component: 'ledger-client' });
    this.clock = deps.clock ?? systemClock;
    this.random = deps.random ?? new Random(Math.floor(Math.random() * 2 ** 32));
    this.options = compileLedgerClientOptions(deps.options);
    this.registry = new BookieRegistry(this.metadata);
    this.transport = deps.transport ?? new GrpcBookieTransport(this.registry, this.options, this.logger);
    this.ctx = {
      transport: this.transport,
      logger: this.logger,
      options: this.options,
      random: this.random,
      readMetadata: (id, signal) => this.readMetadata(id, signal),
      casMetadata: async (m, expectedVersion) => (await this.metadata.put(ledgerKey(m.ledgerId), encodeMetadata(m), { expectedVersion })).version,
      pickBookies: (count, exclude, signal) => this.pickBookies(count, exclude, signal),
      backoff: (attempt, signal) => sleep(backoffMs(attempt, { initialMs: this.options.retryInitialMs, maxMs: this.options.retryMaxMs }, () => this.random.next()), signal),
    };
  }

  /** For auto-recovery and tests: the context ledger handles use. */
  get context(): ClientContext {
    return this.ctx;
  }

  async createLedger(options: CreateLedgerOptions): Promise<LedgerWriter> {
    this.checkOpen();
    const { ensembleSize, writeQuorum, ackQuorum, signal } = options;
    validateQuorums(ensembleSize, writeQuorum, ackQuorum);
    const bookies = await this.pickBookies(ensembleSize, new Set(), signal);
    const ledgerId = await this.allocateLedgerId(signal);
    const metadata: LedgerMetadata = {
      ledgerId, ensembleSize, writeQuorum, ackQuorum, state: 'OPEN', lastEntryId: -1, length: 0,
      ensembles: [{ firstEntryId: 0, bookies }], ctime: this.clock.now(), customMetadata: { ...(options.customMetadata ?? {}) },
    };
    const put = await this.metadata.put(ledgerKey(ledgerId), encodeMetadata(metadata), { expectedVersion: 0, signal });
    this.logger.info({ ledgerId, ensemble: bookies, ensembleSize, writeQuorum, ackQuorum }, 'ledger created');
    const writer = new LedgerWriterImpl(this.ctx, metadata, put.version, { recovery: false, lastAddConfirmed: -1 });
    this.writers.add(writer);
    writer.onClosed = () => this.writers.delete(writer);
    return writer;
  }

  async openLedger(ledgerId: number, options: OpenLedgerOptions = {}): Promise<LedgerReader> {
    this.checkOpen();
    const { metadata, version } = options.recovery
      ? await recoverLedger(this.ctx, ledgerId, options.signal)
      : await this.readMetadata(ledgerId, options.signal);
    return new LedgerReaderImpl(this.ctx, metadata, version);
  }

  /** Removes the ledger's metadata; bookies garbage-collect its data. Deleting a missing ledger is a no-op. */
  async deleteLedger(ledgerId: number, options: { signal?: AbortSignal } = {}): Promise<void> {
    this.checkOpen();
    await this.metadata.delete(ledgerKey(ledgerId), { signal: options.signal });
    this.logger.info({ ledgerId }, 'ledger deleted');
  }

  async getMetadata(ledgerId: number, options: { signal?: AbortSignal } = {}): Promise<LedgerMetadata> {
    this.checkOpen();
    return (await this.readMetadata(ledgerId, options.signal)).metadata;
  }

  /** Fails what writers still have pending (they are not closed in metadata: their ledgers get recovered). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.writers) w.abandon(new LedgerClientClosedError());
    this.writers.clear();
    await this.transport.close();
  }

  async readMetadata(ledgerId: number, signal?: AbortSignal): Promise<{ metadata: LedgerMetadata; version: number }> {
    const kv = await this.metadata.get(ledgerKey(ledgerId), { signal });
    if (!kv) throw new NoSuchLedgerError(ledgerId);
    return { metadata: decodeMetadata(ledgerId, kv.value), version: kv.version };
  }

  private async pickBookies(count: number, exclude: ReadonlySet<string>, signal?: AbortSignal): Promise<string[]> {
    const candidates = (await this.registry.list(signal)).filter((b) => !b.readOnly && !exclude.has(b.id)).map((b) => b.id);
    if (candidates.length < count) throw new NotEnoughBookiesError(count, candidates.length);
    // Partial Fisher-Yates with the injected Random: placement is reproducible in tests.
    for (let i = 0; i < count; i++) {
      const j = this.random.int(i, candidates.length);
      [candidates[i], candidates[j]] = [candidates[j]!, candidates[i]!];
    }
    return candidates.slice(0, count);
  }

  /** Ledger ids: the counter key holds the last id handed out; +1 by CAS, retried on contention. */
  private async allocateLedgerId(signal?: AbortSignal): Promise<number> {
    for (let attempt = 0; attempt < this.options.metadataRetries * 5; attempt++) {
      const kv = await this.metadata.get(LEDGER_ID_COUNTER_KEY, { signal });
      const last = kv ? Number(kv.value.toString()) : 0;
      if (!Number.isSafeInteger(last) || last < 0) throw new StrataError(ErrorCode.INTERNAL, `${LEDGER_ID_COUNTER_KEY} holds ${kv?.value.toString()}`);
      try {
        await this.metadata.put(LEDGER_ID_COUNTER_KEY, String(last + 1), { expectedVersion: kv?.version ?? 0, signal });
        return last + 1;
      } catch (err) {
        if (!(err instanceof BadVersionError)) throw err;
        await this.ctx.backoff(Math.min(attempt, 4), signal);
      }
    }
    throw new StrataError(ErrorCode.BAD_VERSION, 'could not allocate a ledger id: too much contention');
  }

  private checkOpen(): void {
    if (this.closed) throw new LedgerClientClosedError();
  }
}
