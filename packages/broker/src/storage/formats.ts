import type { AckedRange, Position } from './api.js';
import { StorageUnavailableError } from './errors.js';

/**
 * What the managed ledger keeps in the metadata store (JSON, changed only by compare-and-swap).
 *
 * `managed-ledgers/<name>`:
 *   { "format": 1, "ledgers": [{ "id", "entries", "size", "ctime", "closedAt" }], "terminated"? }
 *   The last ledger is the one open for appends while `closedAt` is null; its `entries`/`size` are only
 *   known after recovery. Ledger ids ascend.
 * `managed-ledgers/<name>/cursors/<encodeURIComponent(sub)>`:
 *   { "format": 1, "markDelete": [ledgerId, entryId], "ranges": [[ledgerId, from, to], ...],
 *     "properties": {..}, "updatedAt": ms }
 */
export interface LedgerInfo {
  ledgerId: number;
  entries: number;
  sizeBytes: number;
  createdAtMs: number;
  /** Undefined while the ledger is (or may be) open. */
  closedAtMs: number | undefined;
}

export interface LedgerList {
  ledgers: LedgerInfo[];
  terminated: boolean;
}

export interface CursorRecord {
  markDelete: Position;
  ranges: AckedRange[];
  properties: Record<string, string>;
  updatedAtMs: number;
}

export const ML_PREFIX = 'managed-ledgers/';

export function listKey(name: string): string {
  return `${ML_PREFIX}${name}`;
}

export function cursorsPrefix(name: string): string {
  return `${ML_PREFIX}${name}/cursors/`;
}

export function cursorKey(name: string, cursor: string): string {
  return `${cursorsPrefix(name)}${encodeURIComponent(cursor)}`;
}

export function encodeLedgerList(list: LedgerList): string {
  return JSON.stringify({
    format: 1,
    ledgers: list.ledgers.map((l) => ({ id: l.ledgerId, entries: l.entries, size: l.sizeBytes, ctime: l.createdAtMs, closedAt: l.closedAtMs ?? null })),
    ...(list.terminated ? { terminated: true } : {}),
  });
}

function corrupt(what: string, cause?: unknown): StorageUnavailableError {
  return new StorageUnavailableError(`corrupt ${what} in metadata`, { cause, code: 'INTERNAL' });
}

function num(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw corrupt(what);
  return v;
}

export function decodeLedgerList(raw: Buffer, key: string): LedgerList {
  let doc: { format?: unknown; ledgers?: unknown; terminated?: unknown };
  try {
    doc = JSON.parse(raw.toString('utf8')) as typeof doc;
  } catch (err) {
    throw corrupt(key, err);
  }
  if (doc.format !== 1 || !Array.isArray(doc.ledgers)) throw corrupt(key);
  const ledgers = (doc.ledgers as Array<Record<string, unknown>>).map((l) => ({
    ledgerId: num(l.id, key),
    entries: num(l.entries, key),
    sizeBytes: num(l.size, key),
    createdAtMs: num(l.ctime, key),
    closedAtMs: l.closedAt === null || l.closedAt === undefined ? undefined : num(l.closedAt, key),
  }));
  return { ledgers, terminated: doc.terminated === true };
}

export function encodeCursor(c: CursorRecord): string {
  return JSON.stringify({
    format: 1,
    markDelete: [c.markDelete.ledgerId, c.markDelete.entryId],
    ranges: c.ranges.map((r) => [r.from.ledgerId, r.from.entryId, r.to.entryId]),
    properties: c.properties,
    updatedAt: c.updatedAtMs,
  });
}

export function decodeCursor(raw: Buffer, key: string): CursorRecord {
  let doc: { format?: unknown; markDelete?: unknown; ranges?: unknown; properties?: unknown; updatedAt?: unknown };
  try {
    doc = JSON.parse(raw.toString('utf8')) as typeof doc;
  } catch (err) {
    throw corrupt(key, err);
  }
  if (doc.format !== 1 || !Array.isArray(doc.markDelete) || !Array.isArray(doc.ranges)) throw corrupt(key);
  const md = doc.markDelete as unknown[];
  const properties: Record<string, string> = {};
  if (doc.properties && typeof doc.properties === 'object') {
    for (const [k, v] of Object.entries(doc.properties as Record<string, unknown>)) if (typeof v === 'string') properties[k] = v;
  }
  return {
    markDelete: { ledgerId: num(md[0], key), entryId: num(md[1], key) },
    ranges: (doc.ranges as unknown[][]).map((r) => {
      const ledgerId = num(r[0], key);
      return { from: { ledgerId, entryId: num(r[1], key) }, to: { ledgerId, entryId: num(r[2], key) } };
    }),
    properties,
    updatedAtMs: typeof doc.updatedAt === 'number' ? doc.updatedAt : 0,
  };
}
