import type { ManagedLedgerConfig, ManagedLedgerFactoryConfig } from './api.js';
import { InvalidStorageArgumentError } from './errors.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

/** Pulsar-like defaults; docs/broker-storage.md explains each. */
export const MANAGED_LEDGER_DEFAULTS: Readonly<ManagedLedgerConfig> = Object.freeze({
  ensembleSize: 2,
  writeQuorum: 2,
  ackQuorum: 2,
  maxEntriesPerLedger: 50_000,
  maxLedgerSizeBytes: 2 * GiB,
  maxLedgerAgeMs: 4 * 60 * 60 * 1000,
  minLedgerRolloverMs: 10 * 60 * 1000,
  maxPendingAppends: 10_000,
  maxPendingAppendBytes: 64 * MiB,
  retentionTimeMs: 0,
  retentionSizeBytes: 0,
  ttlMs: 0,
});

export const FACTORY_DEFAULTS: Readonly<Omit<ManagedLedgerFactoryConfig, 'defaults'>> = Object.freeze({
  entryCacheSizeBytes: 256 * MiB,
  cursorFlushIntervalMs: 1000,
  maxAckedRangesPersisted: 10_000,
  trimIntervalMs: 60_000,
});

function int(name: string, value: unknown, min: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw new InvalidStorageArgumentError(`${name} must be an integer >= ${min}, got ${String(value)}`);
  }
  return value;
}

/** Fills defaults and validates once, at open. */
export function compileManagedLedgerConfig(...layers: Array<Partial<ManagedLedgerConfig> | undefined>): ManagedLedgerConfig {
  const c: ManagedLedgerConfig = { ...MANAGED_LEDGER_DEFAULTS };
  for (const layer of layers) {
    if (!layer) continue;
    for (const [k, v] of Object.entries(layer)) if (v !== undefined) (c as unknown as Record<string, unknown>)[k] = v;
  }
  int('ensembleSize', c.ensembleSize, 1);
  int('writeQuorum', c.writeQuorum, 1);
  int('ackQuorum', c.ackQuorum, 1);
  if (!(c.ensembleSize >= c.writeQuorum && c.writeQuorum >= c.ackQuorum)) {
    throw new InvalidStorageArgumentError(`need ensembleSize >= writeQuorum >= ackQuorum, got ${c.ensembleSize}/${c.writeQuorum}/${c.ackQuorum}`);
  }
  int('maxEntriesPerLedger', c.maxEntriesPerLedger, 1);
  int('maxLedgerSizeBytes', c.maxLedgerSizeBytes, 1);
  int('maxLedgerAgeMs', c.maxLedgerAgeMs, 1);
  int('minLedgerRolloverMs', c.minLedgerRolloverMs, 0);
  int('maxPendingAppends', c.maxPendingAppends, 1);
  int('maxPendingAppendBytes', c.maxPendingAppendBytes, 1);
  int('retentionTimeMs', c.retentionTimeMs, -1);
  int('retentionSizeBytes', c.retentionSizeBytes, -1);
  int('ttlMs', c.ttlMs, 0);
  if (c.entryTimeMs !== undefined && typeof c.entryTimeMs !== 'function') throw new InvalidStorageArgumentError('entryTimeMs must be a function');
  return c;
}

export type CompiledFactoryConfig = ManagedLedgerFactoryConfig;

export function compileFactoryConfig(config: Partial<ManagedLedgerFactoryConfig> = {}): CompiledFactoryConfig {
  const c: CompiledFactoryConfig = {
    entryCacheSizeBytes: config.entryCacheSizeBytes ?? FACTORY_DEFAULTS.entryCacheSizeBytes,
    cursorFlushIntervalMs: config.cursorFlushIntervalMs ?? FACTORY_DEFAULTS.cursorFlushIntervalMs,
    maxAckedRangesPersisted: config.maxAckedRangesPersisted ?? FACTORY_DEFAULTS.maxAckedRangesPersisted,
    trimIntervalMs: config.trimIntervalMs ?? FACTORY_DEFAULTS.trimIntervalMs,
    defaults: { ...(config.defaults ?? {}) },
  };
  int('entryCacheSizeBytes', c.entryCacheSizeBytes, 0);
  int('cursorFlushIntervalMs', c.cursorFlushIntervalMs, 1);
  int('maxAckedRangesPersisted', c.maxAckedRangesPersisted, 0);
  int('trimIntervalMs', c.trimIntervalMs, 1);
  compileManagedLedgerConfig(c.defaults);
  return c;
}
