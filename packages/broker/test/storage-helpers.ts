import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeMetadata, ledgerKey, type LedgerState } from '@strata/bookie';
import { InMemoryLedgerClient, InMemoryLedgerCluster } from '@strata/bookie/testing';
import { createMetadataStore, MetadataUnavailableError, type MetadataStore } from '@strata/coordinator';
import { silentLogger, type Clock } from '@strata/runtime';
import type { ManagedLedgerFactoryConfig } from '../src/storage/api.js';
import { ManagedLedgerFactoryImpl } from '../src/storage/factory.js';

/** A clock the test moves by hand. */
export class ManualClock implements Clock {
  constructor(private ms = 1_700_000_000_000) {}
  now(): number {
    return this.ms;
  }
  monotonic(): number {
    return this.ms;
  }
  advance(ms: number): void {
    this.ms += ms;
  }
}

/**
 * A MetadataStore that fails chosen puts, either before applying them or after (the write lands but the
 * caller sees an error: the "outcome unknown" case of a timeout).
 */
export class FaultyMetadataStore implements MetadataStore {
  private readonly faults: Array<{ keyPrefix: string; when: 'before' | 'after' }> = [];

  constructor(private readonly inner: MetadataStore) {}

  /** The next put of a key starting with keyPrefix fails (once). */
  failNextPut(keyPrefix: string, when: 'before' | 'after'): void {
    this.faults.push({ keyPrefix, when });
  }

  get: MetadataStore['get'] = (...a) => this.inner.get(...a);
  delete: MetadataStore['delete'] = (...a) => this.inner.delete(...a);
  list: MetadataStore['list'] = (...a) => this.inner.list(...a);
  currentRevision: MetadataStore['currentRevision'] = (...a) => this.inner.currentRevision(...a);
  watch: MetadataStore['watch'] = (...a) => this.inner.watch(...a);
  createSession: MetadataStore['createSession'] = (...a) => this.inner.createSession(...a);
  campaign: MetadataStore['campaign'] = (...a) => this.inner.campaign(...a);
  getLeader: MetadataStore['getLeader'] = (...a) => this.inner.getLeader(...a);
  close: MetadataStore['close'] = async () => undefined;

  put: MetadataStore['put'] = async (key, value, options) => {
    const i = this.faults.findIndex((f) => key.startsWith(f.keyPrefix));
    const fault = i >= 0 ? this.faults.splice(i, 1)[0] : undefined;
    if (fault?.when === 'before') throw new MetadataUnavailableError(`injected: put ${key} not applied`);
    const res = await this.inner.put(key, value, options);
    if (fault?.when === 'after') throw new MetadataUnavailableError(`injected: put ${key} applied, reply lost`);
    return res;
  };
}

/**
 * One "cluster" for storage unit tests: an embedded metadata store in a temp dir and in-memory bookies.
 * Each broker() is a new factory with its own ledger client on the same metadata and bookies.
 */
export class StorageTestEnv {
  readonly cluster = new InMemoryLedgerCluster();
  readonly clock = new ManualClock();
  private readonly factories: ManagedLedgerFactoryImpl[] = [];
  private readonly clients: InMemoryLedgerClient[] = [];

  private constructor(readonly dir: string, readonly metadata: MetadataStore) {}

  static async create(): Promise<StorageTestEnv> {
    const dir = await mkdtemp(join(tmpdir(), 'strata-storage-'));
    const metadata = await createMetadataStore(`embedded://${dir}`, { logger: silentLogger() });
    return new StorageTestEnv(dir, metadata);
  }

  broker(
    config: Partial<ManagedLedgerFactoryConfig> = {},
    clientOptions: { addDelayMs?: number; maxPendingAdds?: number } = {},
    metadata: MetadataStore = this.metadata,
  ): ManagedLedgerFactoryImpl {
    const client = new InMemoryLedgerClient({ cluster: this.cluster, ...clientOptions });
    this.clients.push(client);
    const factory = new ManagedLedgerFactoryImpl({ ledgerClient: client, metadata, logger: silentLogger(), clock: this.clock }, config);
    this.factories.push(factory);
    return factory;
  }

  async close(): Promise<void> {
    for (const f of this.factories) await f.stop().catch(() => undefined);
    for (const c of this.clients) await c.close().catch(() => undefined);
    await this.metadata.close();
    await rm(this.dir, { recursive: true, force: true });
  }
}

let seq = 0;
/** A unique managed ledger name per test. */
export function uniqueName(prefix = 't'): string {
  return `tenant-${process.pid}/ns/persistent/${prefix}-${Date.now().toString(36)}-${++seq}`;
}

export function payloadOf(i: number): Buffer {
  return Buffer.from(`entry-${i}`);
}

export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Writes a ledger's metadata by hand, as the ledger client would have (E=W=A=2), labelled with the managed
 * ledger that made it unless `managedLedger` is undefined: for tests of the orphan sweep.
 */
export async function putLedgerMetadata(
  store: MetadataStore, ledgerId: number, options: { managedLedger?: string; ctime: number; state?: LedgerState },
): Promise<void> {
  await store.put(ledgerKey(ledgerId), encodeMetadata({
    ledgerId, ensembleSize: 2, writeQuorum: 2, ackQuorum: 2, state: options.state ?? 'CLOSED', lastEntryId: -1, length: 0,
    ensembles: [{ firstEntryId: 0, bookies: ['b1', 'b2'] }], ctime: options.ctime,
    customMetadata: options.managedLedger === undefined ? {} : { managedLedger: options.managedLedger },
  }));
}
