import * as grpc from '@grpc/grpc-js';
import { channelOptions, ErrorCode, fromGrpcError, loadProtos, StrataError, type Logger } from '@strata/runtime';
import type { ProtoGrpcType } from '../generated/bookie.js';
import type { AddEntriesRequest } from '../generated/strata/bookie/v1/AddEntriesRequest.js';
import type { AddEntriesResponse__Output } from '../generated/strata/bookie/v1/AddEntriesResponse.js';
import type { BookieClient } from '../generated/strata/bookie/v1/Bookie.js';
import type { LedgerStateResponse__Output } from '../generated/strata/bookie/v1/LedgerStateResponse.js';
import type { BookieRegistry } from './bookie-registry.js';
import type { AddRequest, BookieLedgerState, BookieTransport, ReadRequest, StoredEntryData } from './transport.js';

export interface GrpcTransportOptions {
  /** A bookie that leaves an add unanswered this long is declared failed: all its pending adds fail with TIMEOUT. */
  addTimeoutMs: number;
  /** Deadline of unary calls (read, fence, LAC). */
  requestTimeoutMs: number;
  /** Adds per stream message at most (more wait for the next message). */
  maxAddsPerMessage: number;
  /** Payload bytes per stream message at most (one larger add still goes alone). */
  maxBytesPerMessage: number;
  /** gRPC message size limit. */
  maxMessageBytes: number;
}

let protoCache: ProtoGrpcType | undefined;
function protos(): ProtoGrpcType {
  protoCache ??= loadProtos<ProtoGrpcType>(['strata/bookie/v1/bookie.proto']);
  return protoCache;
}

interface PendingAdd {
  resolve(): void;
  reject(err: Error): void;
  sentAt: number;
}

/**
 * One connection per bookie, one AddEntries stream per bookie shared by every ledger of the client.
 * Adds queued in the same tick travel in one stream message (batching is what makes gRPC fast here:
 * RECIPES.md "Transport ceilings"). A stream that errors fails every add pending on it; the next add
 * opens a new stream.
 */
export class GrpcBookieTransport implements BookieTransport {
  private readonly connections = new Map<string, BookieConnection>();
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;

  constructor(private readonly registry: BookieRegistry, private readonly options: GrpcTransportOptions, private readonly logger: Logger) {
    // Owner: this transport; stopped in close(). Detects bookies that stopped answering (SIGSTOP, partition).
    this.sweeper = setInterval(() => {
      const now = performance.now();
      for (const c of this.connections.values()) c.sweep(now);
    }, Math.max(50, Math.min(1000, Math.floor(options.addTimeoutMs / 4))));
    this.sweeper.unref();
  }

  add(bookieId: string, add: AddRequest): Promise<void> {
    if (this.closed) return Promise.reject(new StrataError(ErrorCode.UNAVAILABLE, 'transport closed', { retriable: false }));
    return this.connection(bookieId).add(add);
  }

  async read(bookieId: string, request: ReadRequest, signal?: AbortSignal): Promise<StoredEntryData[]> {
    const res = await this.call<{ entries: Array<{ entryId: number; payload: Buffer; crc32c: number }> }>(bookieId, signal, (client, opts, cb) =>
      client.readEntries({ ledgerId: request.ledgerId, firstEntryId: request.firstEntryId, lastEntryId: request.lastEntryId, maxBytes: request.maxBytes }, opts, cb));
    return res.entries.map((e) => ({ entryId: Number(e.entryId), payload: e.payload, crc32c: e.crc32c >>> 0 }));
  }

  async readLastAddConfirmed(bookieId: string, ledgerId: number, signal?: AbortSignal): Promise<number> {
    const res = await this.call<{ lastAddConfirmed: number }>(bookieId, signal, (client, opts, cb) => client.readLastAddConfirmed({ ledgerId }, opts, cb));
    return Number(res.lastAddConfirmed);
  }

  async fence(bookieId: string, ledgerId: number, signal?: AbortSignal): Promise<BookieLedgerState> {
    return toState(await this.call<LedgerStateResponse__Output>(bookieId, signal, (client, opts, cb) => client.fence({ ledgerId }, opts, cb)));
  }

  async getLedgerState(bookieId: string, ledgerId: number, signal?: AbortSignal): Promise<BookieLedgerState> {
    return toState(await this.call<LedgerStateResponse__Output>(bookieId, signal, (client, opts, cb) => client.getLedgerState({ ledgerId }, opts, cb)));
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweeper);
    for (const c of this.connections.values()) c.close();
    this.connections.clear();
  }

  private connection(bookieId: string): BookieConnection {
    let c = this.connections.get(bookieId);
    if (!c) {
      c = new BookieConnection(bookieId, this.registry, this.options, this.logger);
      this.connections.set(bookieId, c);
    }
    return c;
  }

  private async client(bookieId: string): Promise<BookieClient> {
    if (this.closed) throw new StrataError(ErrorCode.UNAVAILABLE, 'transport closed', { retriable: false });
    return this.connection(bookieId).client();
  }

  /**
   * A unary call. A bookie keeps its id across restarts but may come back at another address
   * (decision 0088): on UNAVAILABLE the address is looked up again, and if it moved the call is
   * made once more at the new one. At most one retry, so a bookie that is really down fails fast.
   */
  private async call<T>(bookieId: string, signal: AbortSignal | undefined, call: (client: BookieClient, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: T) => void) => grpc.ClientUnaryCall): Promise<T> {
    const client = await this.client(bookieId);
    try {
      return await this.unary<T>(signal, (opts, cb) => call(client, opts, cb));
    } catch (err) {
      if ((err as StrataError).code !== ErrorCode.UNAVAILABLE || signal?.aborted || this.closed) throw err;
      if (!(await this.connection(bookieId).moved().catch(() => false))) throw err;
      const moved = await this.client(bookieId);
      return this.unary<T>(signal, (opts, cb) => call(moved, opts, cb));
    }
  }

  private unary<T>(signal: AbortSignal | undefined, call: (opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: T) => void) => grpc.ClientUnaryCall): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const onAbort = () => handle.cancel();
      const handle = call({ deadline: Date.now() + this.options.requestTimeoutMs }, (err, res) => {
        signal?.removeEventListener('abort', onAbort);
        if (err) reject(signal?.aborted ? signal.reason : fromGrpcError(err));
        else resolve(res as T);
      });
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

function toState(res: LedgerStateResponse__Output): BookieLedgerState {
  return { fenced: res.fenced, lastAddConfirmed: Number(res.lastAddConfirmed), lastEntryId: Number(res.lastEntryId) };
}

class BookieConnection {
  private grpcClient: BookieClient | undefined;
  private address: string | undefined;
  private stream: grpc.ClientDuplexStream<AddEntriesRequest, AddEntriesResponse__Output> | undefined;
  private readonly pending = new Map<number, PendingAdd>();
  private queue: AddEntriesRequest['adds'] & object = [];
  private queuedBytes = 0;
  private flushScheduled = false;
  private nextRequestId = 1;
  /** Adds queued while the address is being looked up. */
  private resolving: Promise<void> | undefined;
  private readonly log: Logger;

  constructor(readonly bookieId: string, private readonly registry: BookieRegistry, private readonly options: GrpcTransportOptions, logger: Logger) {
    this.log = logger.child({ bookieId });
  }

  async client(): Promise<BookieClient> {
    await this.ensureClient();
    return this.grpcClient!;
  }

  add(add: AddRequest): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const requestId = this.nextRequestId++;
      this.pending.set(requestId, { resolve, reject, sentAt: performance.now() });
      this.queue.push({
        ledgerId: add.ledgerId, entryId: add.entryId, lastAddConfirmed: add.lastAddConfirmed, payload: add.payload,
        crc32c: add.crc32c, recovery: add.recovery, requestId,
      });
      this.queuedBytes += add.payload.length;
      if (this.queue.length >= this.options.maxAddsPerMessage || this.queuedBytes >= this.options.maxBytesPerMessage) this.flush();
      else if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Fails the stream if its oldest pending add is older than the add timeout. */
  sweep(now: number): void {
    const oldest = this.pending.values().next().value as PendingAdd | undefined;
    if (oldest && now - oldest.sentAt > this.options.addTimeoutMs) {
      this.failStream(new StrataError(ErrorCode.TIMEOUT, `bookie ${this.bookieId} did not answer an add within ${this.options.addTimeoutMs} ms`));
    }
  }

  close(): void {
    this.failStream(new StrataError(ErrorCode.UNAVAILABLE, 'transport closed', { retriable: false }));
    this.grpcClient?.close();
    this.grpcClient = undefined;
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.queue.length === 0) return;
    if (!this.stream) {
      if (!this.grpcClient) {
        this.resolving ??= this.ensureClient().then(
          () => { this.resolving = undefined; this.flush(); },
          (err: unknown) => { this.resolving = undefined; this.failStream(fromGrpcError(err)); },
        );
        return;
      }
      this.openStream();
    }
    while (this.queue.length > 0) {
      // Split into messages of bounded size so a burst never builds one huge message.
      let bytes = 0;
      let n = 0;
      while (n < this.queue.length && n < this.options.maxAddsPerMessage) {
        const size = (this.queue[n]!.payload as Buffer).length;
        if (n > 0 && bytes + size > this.options.maxBytesPerMessage) break;
        bytes += size;
        n++;
      }
      const adds = this.queue.splice(0, n);
      this.stream!.write({ adds });
    }
    this.queuedBytes = 0;
  }

  private openStream(): void {
    const stream = this.grpcClient!.addEntries();
    this.stream = stream;
    stream.on('data', (res: AddEntriesResponse__Output) => {
      for (const r of res.results) {
        const p = this.pending.get(Number(r.requestId));
        if (!p) continue;
        this.pending.delete(Number(r.requestId));
        if (r.errorCode) p.reject(new StrataError(r.errorCode, r.errorMessage || r.errorCode));
        else p.resolve();
      }
    });
    stream.on('error', (err: Error) => {
      if (this.stream === stream) this.failStream(fromGrpcError(err));
    });
    stream.on('end', () => {
      if (this.stream === stream) this.failStream(new StrataError(ErrorCode.UNAVAILABLE, `bookie ${this.bookieId} ended the add stream`));
    });
  }

  private failStream(err: StrataError): void {
    const stream = this.stream;
    this.stream = undefined;
    if (stream) {
      stream.removeAllListeners('data');
      stream.on('error', () => undefined);
      stream.cancel();
    }
    const failed = [...this.pending.values()];
    this.pending.clear();
    this.queue = [];
    this.queuedBytes = 0;
    if (failed.length > 0) this.log.warn({ err, pendingAdds: failed.length }, 'bookie add stream failed');
    for (const p of failed) p.reject(err);
    // The next add looks the address up again: a restarted bookie may listen elsewhere.
    this.grpcClient?.close();
    this.grpcClient = undefined;
  }

  /**
   * Looks the address up again; if the bookie registered another one since this connection was made,
   * drops the connection (failing the adds pending on it) so that the next call connects there.
   */
  async moved(): Promise<boolean> {
    const current = this.address;
    const address = await this.registry.address(this.bookieId);
    if (!address || address === current) return false;
    this.log.info({ from: current, to: address }, 'bookie moved to another address');
    this.failStream(new StrataError(ErrorCode.UNAVAILABLE, `bookie ${this.bookieId} moved from ${current ?? '?'} to ${address}`));
    return true;
  }

  private async ensureClient(): Promise<void> {
    if (this.grpcClient) return;
    const address = (await this.registry.address(this.bookieId)) ?? this.address;
    if (!address) throw new StrataError(ErrorCode.UNAVAILABLE, `bookie ${this.bookieId} is not registered`);
    if (this.grpcClient) return;
    this.address = address;
    const Ctor = protos().strata.bookie.v1.Bookie;
    this.grpcClient = new Ctor(address, grpc.credentials.createInsecure(), channelOptions(this.options.maxMessageBytes));
  }
}
