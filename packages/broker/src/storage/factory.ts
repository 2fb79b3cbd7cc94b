import type { LedgerClient } from '@strata/bookie';
import type { MetadataStore } from '@strata/coordinator';
import type { Clock, Logger } from '@strata/runtime';
import { sleep, systemClock } from '@strata/runtime';
import type { ManagedLedger, ManagedLedgerConfig, ManagedLedgerFactory, ManagedLedgerFactoryConfig } from './api.js';
import { compileFactoryConfig, compileManagedLedgerConfig, type CompiledFactoryConfig } from './config.js';
import { EntryCache } from './entry-cache.js';
import { InvalidStorageArgumentError, ManagedLedgerClosedError } from './errors.js';
import { listKey, ML_PREFIX } from './formats.js';
import { ManagedLedgerImpl } from './managed-ledger.js';

export interface ManagedLedgerFactoryDeps {
  ledgerClient: LedgerClient;
  metadata: MetadataStore;
  logger: Logger;
  clock?: Clock;
}

const NAME_PART = /^[A-Za-z0-9._:=-]+$/;
/** Managed ledgers whose cursors are flushed concurrently by the flush loop. */
const FLUSH_CONCURRENCY = 8;

/** `tenant/namespace/domain/topic`, each part as TopicName allows. */
export function validateManagedLedgerName(name: string): void {
  const parts = typeof name === 'string' ? name.split('/') : [];
  if (parts.length !== 4 || parts.some((p) => !NAME_PART.test(p) || p === '.' || p === '..' || p.length > 255)) {
    throw new InvalidStorageArgumentError(`managed ledger name must be tenant/namespace/domain/topic, got "${String(name).slice(0, 300)}"`);
  }
}

/** Builds the broker's managed ledger factory (see ManagedLedgerFactory for the contract). */
export function createManagedLedgerFactory(deps: ManagedLedgerFactoryDeps, config: Partial<ManagedLedgerFactoryConfig> = {}): ManagedLedgerFactory {
  return new ManagedLedgerFactoryImpl(deps, config);
}

export class ManagedLedgerFactoryImpl implements ManagedLedgerFactory {
  readonly name = 'managed-ledger-factory';
  readonly config: CompiledFactoryConfig;
  readonly cache: EntryCache;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly opening = new Map<string, Promise<ManagedLedgerImpl>>();
  private readonly open_ = new Map<string, ManagedLedgerImpl>();
  private loops: { controller: AbortController; done: Promise<void[]> } | undefined;
  private stopped = false;

  constructor(private readonly deps: ManagedLedgerFactoryDeps, config: Partial<ManagedLedgerFactoryConfig> = {}) {
    this.config = compileFactoryConfig(config);
    this.cache = new EntryCache(this.config.entryCacheSizeBytes);
    this.clock = deps.clock ?? systemClock;
    this.log = deps.logger.child({ component: 'managed-ledger-factory' });
  }

  async start(): Promise<void> {
    if (this.loops || this.stopped) return;
    const controller = new AbortController();
    const done = Promise.all([
      this.loop('cursor-flush', this.config.cursorFlushIntervalMs, controller.signal, () => this.flushAll()),
      this.loop('maintenance', this.config.trimIntervalMs, controller.signal, () => this.maintainAll()),
    ]);
    this.loops = { controller, done };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.loops) {
      this.loops.controller.abort();
      await this.loops.done;
      this.loops = undefined;
    }
    await Promise.allSettled([...this.opening.values()]);
    for (const ml of [...this.open_.values()]) await ml.close();
  }

  open(name: string, options: { config?: Partial<ManagedLedgerConfig>; createIfMissing?: boolean; signal?: AbortSignal } = {}): Promise<ManagedLedger> {
    try {
      if (this.stopped) throw new ManagedLedgerClosedError('factory', 'managed ledger factory');
      validateManagedLedgerName(name);
      options.signal?.throwIfAborted();
    } catch (err) {
      return Promise.reject(err);
    }
    const existing = this.open_.get(name);
    if (existing) {
      if (existing.isOpen) return Promise.resolve(existing);
      // Still closing (e.g. unloaded then requested again): open afresh once it is closed.
      return existing.close().then(() => this.open(name, options));
    }
    let opening = this.opening.get(name);
    if (!opening) {
      let config: ManagedLedgerConfig;
      try {
        config = compileManagedLedgerConfig(this.config.defaults, options.config);
      } catch (err) {
        return Promise.reject(err);
      }
      opening = ManagedLedgerImpl.open(name, config, {
        ledgerClient: this.deps.ledgerClient,
        metadata: this.deps.metadata,
        logger: this.deps.logger,
        clock: this.clock,
        cache: this.cache,
        factoryConfig: this.config,
        onClosed: (ml) => {
          if (this.open_.get(name) === ml) this.open_.delete(name);
        },
      }, options.createIfMissing ?? true)
        .then((ml) => {
          this.open_.set(name, ml);
          return ml;
        })
        .finally(() => this.opening.delete(name));
      this.opening.set(name, opening);
    }
    return opening;
  }

  get(name: string): ManagedLedger | undefined {
    return this.open_.get(name);
  }

  async exists(name: string, options: { signal?: AbortSignal } = {}): Promise<boolean> {
    validateManagedLedgerName(name);
    return (await this.deps.metadata.get(listKey(name), options)) !== undefined;
  }

  async list(prefix: string, options: { signal?: AbortSignal } = {}): Promise<string[]> {
    const out: string[] = [];
    let startAfter: string | undefined;
    for (;;) {
      const page = await this.deps.metadata.list(`${ML_PREFIX}${prefix}`, { limit: 1000, startAfter, signal: options.signal });
      for (const item of page.items) {
        const name = item.key.slice(ML_PREFIX.length);
        if (!name.includes('/cursors/')) out.push(name);
      }
      if (!page.more || page.items.length === 0) return out;
      startAfter = page.items.at(-1)?.key;
    }
  }

  async delete(name: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    const ml = await this.open(name, { createIfMissing: false, signal: options.signal });
    await ml.delete(options);
  }

  /** Persists every dirty durable cursor now (the flush loop's body; also used by tests). */
  async flushAll(): Promise<void> {
    // A few managed ledgers at a time: metadata round trips overlap, the store is not flooded.
    const queue = [...this.open_.values()];
    const worker = async () => {
      for (let ml = queue.shift(); ml; ml = queue.shift()) await ml.flushCursors();
    };
    await Promise.all(Array.from({ length: Math.min(FLUSH_CONCURRENCY, queue.length) }, worker));
  }

  /** Runs TTL, age rollover and trimming on every open managed ledger now (the maintenance loop's body). */
  async maintainAll(): Promise<void> {
    for (const ml of [...this.open_.values()]) {
      try {
        await ml.maintain();
      } catch (err) {
        this.log.warn({ err, managedLedger: ml.name }, 'managed ledger maintenance failed; will retry next round');
      }
    }
  }

  private async loop(task: string, intervalMs: number, signal: AbortSignal, body: () => Promise<void>): Promise<void> {
    while (!signal.aborted) {
      try {
        await sleep(intervalMs, signal);
      } catch {
        return;
      }
      try {
        await body();
      } catch (err) {
        this.log.error({ err, task }, 'storage background task failed; will retry');
      }
    }
  }
}
