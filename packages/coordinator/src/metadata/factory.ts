import { isAbsolute, resolve } from 'node:path';
import { ErrorCode, StrataError, type Clock, type Logger } from '@strata/runtime';
import { EmbeddedMetadataStore } from './embedded.js';
import { EtcdMetadataStore } from './etcd.js';
import type { KeyValue, MetadataStore } from './store.js';

/** The cluster name used when none is given: `strata standalone` and single-cluster set-ups. */
export const DEFAULT_CLUSTER = 'standalone';

export interface CreateMetadataStoreOptions {
  logger: Logger;
  /** etcd only: keys live under `/strata/<cluster>/` (default `standalone`). */
  cluster?: string;
  clock?: Clock;
}

/**
 * Makes a MetadataStore from a URL:
 * - `etcd://host:port[,host:port...]` — an etcd cluster (EtcdMetadataStore);
 * - `embedded:///abs/dir` — a single-process store persisted in `dir` (EmbeddedMetadataStore);
 *   `embedded://./rel/dir` is relative to the working directory.
 * A malformed URL is a ConfigError-like StrataError (code CONFIG), never retried.
 */
export async function createMetadataStore(url: string, options: CreateMetadataStoreOptions): Promise<MetadataStore> {
  const bad = (why: string) => new StrataError(ErrorCode.CONFIG, `invalid metadata URL "${url}": ${why}`, { retriable: false });
  const cluster = options.cluster ?? DEFAULT_CLUSTER;
  if (url.startsWith('etcd://')) {
    const endpoints = url.slice('etcd://'.length).replace(/\/+$/, '').split(',').map((s) => s.trim()).filter(Boolean);
    if (endpoints.length === 0) throw bad('no endpoints');
    for (const e of endpoints) if (!/^[^:/\s]+:\d{1,5}$/.test(e)) throw bad(`endpoint "${e}" is not host:port`);
    return new EtcdMetadataStore({ endpoints, cluster, logger: options.logger, clock: options.clock });
  }
  if (url.startsWith('embedded://')) {
    let dir = decodeURIComponent(url.slice('embedded://'.length));
    // `embedded://./data/metadata`: relative to the working directory, spelled so that it cannot be
    // mistaken for a host name.
    if (dir.startsWith('./') || dir.startsWith('../')) dir = resolve(dir);
    if (!isAbsolute(dir)) throw bad('expected embedded:///absolute/path or embedded://./relative/path');
    return EmbeddedMetadataStore.open({ dir, logger: options.logger, clock: options.clock });
  }
  throw bad('expected etcd://host:port[,host:port] or embedded:///abs/dir');
}

/**
 * Every key under `prefix`, walking the pages of `list`. Pages may be read at different revisions;
 * the result is the revision of the first page, so watch from `revision + 1` after it to miss nothing
 * (a key changed between pages then shows up in both the listing and the watch). At most `maxKeys`
 * (default 1,000,000) keys: beyond that it throws rather than grow without end.
 */
export async function listAll(
  store: MetadataStore,
  prefix: string,
  options: { pageSize?: number; maxKeys?: number; signal?: AbortSignal } = {},
): Promise<{ items: KeyValue[]; revision: number }> {
  const maxKeys = options.maxKeys ?? 1_000_000;
  const items: KeyValue[] = [];
  let revision: number | undefined;
  let startAfter: string | undefined;
  for (;;) {
    const page = await store.list(prefix, { limit: options.pageSize, startAfter, signal: options.signal });
    revision ??= page.revision;
    items.push(...page.items);
    if (items.length > maxKeys) throw new StrataError(ErrorCode.TOO_LARGE, `more than ${maxKeys} keys under "${prefix}"`, { retriable: false });
    const last = page.items[page.items.length - 1];
    if (!page.more || !last) return { items, revision };
    startAfter = last.key;
  }
}
