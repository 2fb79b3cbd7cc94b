import type { MetadataStore } from '@strata/coordinator';
import type { Logger } from '@strata/runtime';
import type { SegmentLedgerStorage } from '../storage/ledger-storage.js';
import type { BookieMetrics } from './metrics.js';

export const LEDGERS_PREFIX = 'ledgers/';

export interface LedgerGcOptions {
  metadata: MetadataStore;
  storage: Pick<SegmentLedgerStorage, 'ledgerIds' | 'deleteLedger' | 'lastWriteMs'>;
  intervalMs: number;
  /** At most this many ledgers, and this many bytes, are removed per run (bounded I/O). */
  maxLedgersPerRun: number;
  maxBytesPerRun: number;
  /** Ledgers written this recently are spared (their metadata may be newer than our listing). */
  graceMs: number;
  logger: Logger;
  metrics: BookieMetrics;
  now?: () => number;
}

/**
 * Garbage collection of ledgers deleted from metadata. Each run lists `ledgers/` (paged), then
 * removes the local data of ledgers that are not listed and were not written since `graceMs` before
 * the listing started. A ledger's segments hold only that ledger, so removing it frees whole files:
 * nothing needs compacting. A failed listing skips the run (never deletes on a partial view).
 */
export class LedgerGc {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private readonly logger: Logger;
  private readonly now: () => number;

  constructor(private readonly options: LedgerGcOptions) {
    this.logger = options.logger.child({ component: 'gc' });
    this.now = options.now ?? Date.now;
  }

  start(): void {
    const tick = () => {
      this.timer = setTimeout(() => {
        this.running = this.runOnce()
          .then(() => undefined)
          .catch((err: unknown) => this.logger.warn({ err }, 'gc run failed; next run retries'))
          .finally(() => {
            this.running = undefined;
            if (this.timer) tick();
          });
      }, this.options.intervalMs);
    };
    tick();
  }

  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** One pass; returns the ledger ids removed. */
  async runOnce(): Promise<number[]> {
    const listedAt = this.now();
    const live = new Set<number>();
    let startAfter: string | undefined;
    for (;;) {
      const page = await this.options.metadata.list(LEDGERS_PREFIX, { startAfter, limit: 1000 });
      for (const item of page.items) {
        const tail = item.key.slice(LEDGERS_PREFIX.length);
        if (/^\d+$/.test(tail)) live.add(Number(tail));
      }
      if (!page.more || page.items.length === 0) break;
      startAfter = page.items[page.items.length - 1]?.key;
    }
    const removed: number[] = [];
    let bytes = 0;
    for (const id of this.options.storage.ledgerIds()) {
      if (live.has(id)) continue;
      const lastWrite = this.options.storage.lastWriteMs(id) ?? 0;
      if (lastWrite > listedAt - this.options.graceMs) continue;
      if (removed.length >= this.options.maxLedgersPerRun || bytes >= this.options.maxBytesPerRun) break;
      const freed = await this.options.storage.deleteLedger(id);
      bytes += freed;
      removed.push(id);
      this.options.metrics.gcDeletedLedgers.inc();
      this.options.metrics.gcFreedBytes.inc(freed);
      this.logger.info({ ledgerId: id, freedBytes: freed }, 'deleted local data of a ledger gone from metadata');
    }
    return removed;
  }
}
