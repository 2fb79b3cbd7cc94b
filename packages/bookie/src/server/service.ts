import type * as grpc from '@grpc/grpc-js';
import { asStrataError, toGrpcError, type Logger } from '@strata/runtime';
import type { AddEntriesRequest__Output } from '../generated/strata/bookie/v1/AddEntriesRequest.js';
import type { AddEntriesResponse } from '../generated/strata/bookie/v1/AddEntriesResponse.js';
import type { AddResult } from '../generated/strata/bookie/v1/AddResult.js';
import type { BookieHandlers } from '../generated/strata/bookie/v1/Bookie.js';
import type { LedgerStateResponse } from '../generated/strata/bookie/v1/LedgerStateResponse.js';
import type { LedgerInfo } from '../storage/ledger-storage.js';
import type { BookieStore } from './bookie-store.js';
import type { BookieMetrics } from './metrics.js';

export interface BookieServiceOptions {
  store: BookieStore;
  metrics: BookieMetrics;
  logger: Logger;
  /** A stream stops being read while it has this many adds unanswered (gRPC flow control pushes back). */
  streamMaxInFlightAdds: number;
  /** All streams stop being read while this many payload bytes are unanswered bookie-wide. */
  maxInFlightBytes: number;
  info: () => { bookieId: string; readOnly: boolean; diskTotalBytes: number; diskUsedBytes: number; maxEntryBytes: number };
}

interface Slot {
  result: AddResult | undefined;
  bytes: number;
  started: number;
}

/**
 * The gRPC face of a bookie. Results of a stream are written in the order its adds arrived (which
 * is per-ledger order, and more). Backpressure: a stream is paused (not read) while it has
 * `streamMaxInFlightAdds` unanswered adds or the bookie has `maxInFlightBytes` unanswered; a paused
 * stream fills its HTTP/2 window and the writer's `write()` returns false. One request message may
 * overshoot a limit by its own size.
 */
export class BookieService {
  private inFlightBytes = 0;
  private inFlightAdds = 0;
  private readonly waiting = new Set<() => void>();
  /** Open add streams: `drain()` ends each once its pending adds are answered. */
  private readonly streams = new Set<() => void>();
  private readonly logger: Logger;

  constructor(private readonly options: BookieServiceOptions) {
    this.logger = options.logger.child({ component: 'bookie-service' });
  }

  handlers(): BookieHandlers {
    const { store, metrics } = this.options;
    return {
      AddEntries: (call) => this.addEntries(call),
      ReadEntries: unary(async (req) => {
        try {
          const { entries, lastAddConfirmed } = await store.read(req.ledgerId, req.firstEntryId, req.lastEntryId, req.maxBytes);
          metrics.reads.inc({ result: 'ok' });
          metrics.readBytes.inc(entries.reduce((n, e) => n + e.payload.length, 0));
          return { entries, lastAddConfirmed };
        } catch (err) {
          metrics.reads.inc({ result: asStrataError(err).code });
          throw err;
        }
      }),
      ReadLastAddConfirmed: unary(async (req) => ({ lastAddConfirmed: store.readLastAddConfirmed(req.ledgerId) })),
      Fence: unary(async (req) => {
        const state = stateResponse(await store.fence(req.ledgerId));
        this.logger.info({ ledgerId: req.ledgerId, lastEntryId: state.lastEntryId }, 'ledger fenced');
        return state;
      }),
      GetLedgerState: unary(async (req) => stateResponse(store.ledgerState(req.ledgerId))),
      GetInfo: unary(async () => this.options.info()),
    };
  }

  /**
   * For a clean stop: every open add stream stops being read, gets the answers to what it sent,
   * and is then ended by the server (so the gRPC server need not wait for writers to hang up).
   */
  drain(): void {
    for (const finish of [...this.streams]) finish();
  }

  private addEntries(call: grpc.ServerDuplexStream<AddEntriesRequest__Output, AddEntriesResponse>): void {
    const { store, metrics, streamMaxInFlightAdds } = this.options;
    const addsOk = metrics.adds.labels('ok');
    const slots: Slot[] = [];
    let head = 0;
    let inFlight = 0;
    let ended = false;
    let dead = false;
    let paused = false;
    let flushScheduled = false;
    // Metrics are counted per flush, not per add (prom-client calls cost more than the add's bookkeeping).
    let okAdds = 0;
    let okBytes = 0;

    const overLimit = () => inFlight >= streamMaxInFlightAdds || this.inFlightBytes >= this.options.maxInFlightBytes;
    const maybeResume = () => {
      if (paused && !overLimit() && !dead) {
        paused = false;
        this.waiting.delete(maybeResume);
        call.resume();
      }
    };
    const flush = () => {
      const results: AddResult[] = [];
      while (head < slots.length && (slots[head] as Slot).result) {
        results.push((slots[head] as Slot).result as AddResult);
        head++;
      }
      if (head > 1024 && head * 2 > slots.length) {
        slots.splice(0, head);
        head = 0;
      }
      if (okAdds > 0) {
        addsOk.inc(okAdds);
        metrics.addBytes.inc(okBytes);
        okAdds = 0;
        okBytes = 0;
      }
      metrics.inFlightAdds.set(this.inFlightAdds);
      if (results.length > 0 && !dead) call.write({ results });
      if (ended && head === slots.length && !dead) {
        dead = true;
        this.streams.delete(finish);
        call.end();
      }
      maybeResume();
    };

    call.on('data', (req: AddEntriesRequest__Output) => {
      for (const add of req.adds) {
        const slot: Slot = { result: undefined, bytes: add.payload?.length ?? 0, started: performance.now() };
        slots.push(slot);
        inFlight++;
        this.inFlightAdds++;
        this.inFlightBytes += slot.bytes;
        const complete = (err: unknown) => {
          if (err === undefined) {
            slot.result = { ledgerId: add.ledgerId, entryId: add.entryId, requestId: add.requestId, errorCode: '', errorMessage: '' };
            okAdds++;
            okBytes += slot.bytes;
          } else {
            const e = asStrataError(err);
            slot.result = { ledgerId: add.ledgerId, entryId: add.entryId, requestId: add.requestId, errorCode: e.code, errorMessage: e.message };
            metrics.adds.inc({ result: e.code });
            if (e.code === 'INTERNAL') this.logger.error({ err, ledgerId: add.ledgerId, entryId: add.entryId }, 'add failed');
          }
          inFlight--;
          this.inFlightAdds--;
          this.inFlightBytes -= slot.bytes;
          metrics.addLatency.observe((performance.now() - slot.started) / 1000);
          // One group commit completes many adds at once: answer them in one stream message.
          if (!flushScheduled) {
            flushScheduled = true;
            setImmediate(() => {
              flushScheduled = false;
              flush();
              // Freed bookie-wide room: let other paused streams read again.
              for (const wake of [...this.waiting]) wake();
            });
          }
        };
        // The decoded AddEntry is an AddRequest (payload always set: proto defaults); no copy.
        store.add(add).then(() => complete(undefined), (err: unknown) => complete(err ?? new Error('add failed')));
      }
      metrics.inFlightAdds.set(this.inFlightAdds);
      if (overLimit() && !paused) {
        paused = true;
        this.waiting.add(maybeResume);
        call.pause();
      }
    });
    const finish = () => {
      ended = true;
      call.pause();
      flush();
    };
    this.streams.add(finish);
    call.on('end', finish);
    const drop = () => {
      dead = true;
      this.waiting.delete(maybeResume);
      this.streams.delete(finish);
    };
    call.on('error', (err) => {
      this.logger.debug({ err }, 'add stream failed');
      drop();
    });
    call.on('cancelled', drop);
    call.on('close', drop);
  }
}

function stateResponse(info: LedgerInfo): LedgerStateResponse {
  return {
    ledgerId: info.ledgerId, fenced: info.fenced, lastAddConfirmed: info.lastAddConfirmed, lastEntryId: info.lastEntryId,
    entryCount: info.entryCount, sizeBytes: info.sizeBytes,
  };
}

/** The one place server errors become gRPC statuses (with the domain code in trailing metadata). */
function unary<Req, Res>(fn: (req: Req) => Promise<Res>): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    fn(call.request).then(
      (res) => callback(null, res),
      (err: unknown) => callback(toGrpcError(err)),
    );
  };
}
