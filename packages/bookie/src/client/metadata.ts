import type { LedgerMetadata, LedgerState } from './api.js';
import { InvalidLedgerArgumentError } from './errors.js';

/**
 * Ledger metadata in the store (docs/storage.md "Ledger client"): key `ledgers/<id>`, value JSON
 * `{ "formatVersion": 1, ...LedgerMetadata }`. It changes only by compare-and-swap on the key's
 * version, so that two clients (a writer and a recovering reader, or auto-recovery) never overwrite
 * each other's view.
 */
export const LEDGERS_PREFIX = 'ledgers/';
export const LEDGER_ID_COUNTER_KEY = 'ledger-id-counter';
export const METADATA_FORMAT_VERSION = 1;

export function ledgerKey(ledgerId: number): string {
  return `${LEDGERS_PREFIX}${ledgerId}`;
}

export function validateQuorums(ensembleSize: number, writeQuorum: number, ackQuorum: number): void {
  const ok = [ensembleSize, writeQuorum, ackQuorum].every((n) => Number.isInteger(n) && n >= 1)
    && ensembleSize >= writeQuorum && writeQuorum >= ackQuorum;
  if (!ok) {
    throw new InvalidLedgerArgumentError(
      `need integers with ensembleSize >= writeQuorum >= ackQuorum >= 1, got E=${ensembleSize} W=${writeQuorum} A=${ackQuorum}`,
    );
  }
}

export function encodeMetadata(metadata: LedgerMetadata): string {
  return JSON.stringify({ formatVersion: METADATA_FORMAT_VERSION, ...metadata });
}

const STATES: ReadonlySet<string> = new Set<LedgerState>(['OPEN', 'IN_RECOVERY', 'CLOSED']);

export function decodeMetadata(ledgerId: number, raw: Buffer | string): LedgerMetadata {
  const value = JSON.parse(raw.toString()) as Partial<LedgerMetadata> & { formatVersion?: number };
  if (value.formatVersion !== METADATA_FORMAT_VERSION || value.ledgerId !== ledgerId || !STATES.has(String(value.state))
    || !Array.isArray(value.ensembles) || value.ensembles.length === 0) {
    throw new InvalidLedgerArgumentError(`metadata of ledger ${ledgerId} is not in format ${METADATA_FORMAT_VERSION}`);
  }
  return {
    ledgerId,
    ensembleSize: Number(value.ensembleSize),
    writeQuorum: Number(value.writeQuorum),
    ackQuorum: Number(value.ackQuorum),
    state: value.state as LedgerState,
    lastEntryId: Number(value.lastEntryId),
    length: Number(value.length ?? 0),
    ensembles: value.ensembles.map((e) => ({ firstEntryId: Number(e.firstEntryId), bookies: e.bookies.map(String) })),
    ctime: Number(value.ctime ?? 0),
    customMetadata: { ...(value.customMetadata ?? {}) },
  };
}

/** The ensemble that holds `entryId`: the last one starting at or before it. */
export function ensembleFor(metadata: LedgerMetadata, entryId: number): string[] {
  let chosen = metadata.ensembles[0]!.bookies;
  for (const e of metadata.ensembles) {
    if (e.firstEntryId <= entryId) chosen = e.bookies;
    else break;
  }
  return chosen;
}

/** Indexes into the ensemble of the W bookies that store entry n: (n + i) mod E for i < W. */
export function writeSet(entryId: number, ensembleSize: number, writeQuorum: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < writeQuorum; i++) out.push((entryId + i) % ensembleSize);
  return out;
}

export function cloneMetadata(m: LedgerMetadata): LedgerMetadata {
  return { ...m, ensembles: m.ensembles.map((e) => ({ firstEntryId: e.firstEntryId, bookies: [...e.bookies] })), customMetadata: { ...m.customMetadata } };
}
