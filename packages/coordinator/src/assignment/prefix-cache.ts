import { backoffMs, sleep, type Logger } from '@strata/runtime';
import { listAll } from '../metadata/factory.js';
import type { MetadataStore, Watcher, WatchEvent } from '../metadata/store.js';

export interface CachedEntry<T> {
  key: string;
  value: T;
  version: number;
  modRevision: number;
}

export interface PrefixCacheOptions<T> {
  store: MetadataStore;
  prefix: string;
  /** Turns a stored value into T; undefined skips the key (a malformed value is treated as absent). */
  decode(value: Buffer, key: string): T | undefined;
  logger: Logger;
  /** Called after each change is applied (also for changes found by a re-list after compaction). */
  onChange?(key: string, entry: CachedEntry<T> | undefined, previous: CachedEntry<T> | undefined): void;
  /** Most keys kept (default 1,000,000, listAll's limit); the re-list fails beyond it. */
  maxKeys?: number;
}

/**
 * A local copy of every key under a prefix: listed once, then kept current by a watch from the
 * list's revision + 1, so no change is missed. If the watch fails (e.g. its revision was compacted)
 * the cache re-lists and reports the difference as changes, with bounded backoff, until closed.
 * Invariant: `revision` is the highest store revision whose changes under the prefix are all applied.
 */
export class PrefixCache<T> {
  private readonly entries = new Map<string, CachedEntry<T>>();
  private watcher: Watcher | undefined;
  private readonly closed = new AbortController();
  private resync: Promise<void> | undefined;
  private appliedRevision = 0;
  private readonly logger: Logger;

  constructor(private readonly options: PrefixCacheOptions<T>) {
    this.logger = options.logger.child({ component: 'prefix-cache', prefix: options.prefix });
  }

  get revision(): number {
    return this.appliedRevision;
  }

  get(key: string): CachedEntry<T> | undefined {
    return this.entries.get(key);
  }

  values(): IterableIterator<CachedEntry<T>> {
    return this.entries.values();
  }

  get size(): number {
    return this.entries.size;
  }

  /** Lists and starts watching; resolves once the cache holds the prefix as of some revision. */
  async start(): Promise<void> {
    await this.sync();
  }

  async close(): Promise<void> {
    this.closed.abort(new Error('cache closed'));
    await this.watcher?.close().catch(() => undefined);
    await this.resync;
  }

  private async sync(): Promise<void> {
    const { store, prefix } = this.options;
    const listed = await listAll(store, prefix, { maxKeys: this.options.maxKeys, signal: this.closed.signal });
    const seen = new Set<string>();
    for (const kv of listed.items) {
      seen.add(kv.key);
      const prev = this.entries.get(kv.key);
      if (prev && prev.modRevision === kv.modRevision) continue;
      this.set(kv.key, kv.value, kv.version, kv.modRevision);
    }
    for (const key of [...this.entries.keys()]) if (!seen.has(key)) this.remove(key);
    this.appliedRevision = Math.max(this.appliedRevision, listed.revision);
    if (this.closed.signal.aborted) return;
    this.watcher = await store.watch(prefix, {
      fromRevision: listed.revision + 1,
      onEvent: (e) => this.apply(e),
      onError: (err) => this.restart(err),
    });
    if (this.closed.signal.aborted) await this.watcher.close();
  }

  private apply(e: WatchEvent): void {
    // A page listed after the watch start may already hold a newer value: never go back in time.
    const prev = this.entries.get(e.key);
    if (!prev || e.modRevision > prev.modRevision) {
      if (e.type === 'put') this.set(e.key, e.value, e.version, e.modRevision);
      else if (prev) this.remove(e.key);
    }
    this.appliedRevision = Math.max(this.appliedRevision, e.modRevision);
  }

  private set(key: string, raw: Buffer, version: number, modRevision: number): void {
    const prev = this.entries.get(key);
    const value = this.options.decode(raw, key);
    if (value === undefined) {
      if (prev) this.remove(key);
      return;
    }
    const entry = { key, value, version, modRevision };
    this.entries.set(key, entry);
    this.notify(key, entry, prev);
  }

  private remove(key: string): void {
    const prev = this.entries.get(key);
    if (!prev) return;
    this.entries.delete(key);
    this.notify(key, undefined, prev);
  }

  private notify(key: string, entry: CachedEntry<T> | undefined, prev: CachedEntry<T> | undefined): void {
    try {
      this.options.onChange?.(key, entry, prev);
    } catch (err) {
      this.logger.error({ err, key }, 'cache change handler threw');
    }
  }

  private restart(err: Error): void {
    if (this.closed.signal.aborted || this.resync) return;
    this.logger.warn({ err }, 'watch ended; re-listing');
    this.resync = (async () => {
      for (let attempt = 0; !this.closed.signal.aborted; attempt++) {
        try {
          await this.watcher?.close().catch(() => undefined);
          await this.sync();
          this.logger.info('cache re-synchronised');
          return;
        } catch (e) {
          if (this.closed.signal.aborted) return;
          this.logger.warn({ err: e, attempt }, 're-list failed; retrying');
          await sleep(backoffMs(attempt, { initialMs: 100, maxMs: 5_000 }), this.closed.signal).catch(() => undefined);
        }
      }
    })().finally(() => {
      this.resync = undefined;
    });
  }
}
