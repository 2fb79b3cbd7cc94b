import type { MetadataStore } from '@strata/coordinator';

/** Where bookies announce themselves (session-bound keys, one per live bookie). */
export const AVAILABLE_BOOKIES_PREFIX = 'bookies/available/';
/** Bookies that are up but refuse new ledgers (disk full); a key here or `readOnly` in the registration. */
export const READONLY_BOOKIES_PREFIX = 'bookies/readonly/';

export interface BookieRegistration {
  id: string;
  /** host:port of its gRPC service. */
  address: string;
  readOnly: boolean;
}

/**
 * Parses a bookie's registration value. Accepts the JSON the bookie server writes
 * (`{ "address": "host:port", "readOnly": false, ... }`, or host + grpcPort), so that the client
 * does not break if the server adds fields.
 */
export function parseRegistration(id: string, raw: Buffer | string): BookieRegistration | undefined {
  let value: Record<string, unknown>;
  try {
    value = JSON.parse(raw.toString()) as Record<string, unknown>;
  } catch {
    const text = raw.toString().trim();
    return /^[^\s]+:\d+$/.test(text) ? { id, address: text, readOnly: false } : undefined;
  }
  const address = typeof value.address === 'string' ? value.address
    : typeof value.grpcAddress === 'string' ? value.grpcAddress
      : typeof value.host === 'string' && value.grpcPort !== undefined ? `${value.host}:${String(value.grpcPort)}`
        : undefined;
  if (!address) return undefined;
  const readOnly = value.readOnly === true || value.state === 'read-only' || value.state === 'READ_ONLY' || value.mode === 'read-only';
  return { id, address, readOnly };
}

/** Reads the live bookies from the metadata store. Stateless apart from a cache of last known addresses. */
export class BookieRegistry {
  private readonly lastKnown = new Map<string, string>();

  constructor(private readonly metadata: MetadataStore) {}

  async list(signal?: AbortSignal): Promise<BookieRegistration[]> {
    const [available, readOnly] = await Promise.all([this.listPrefix(AVAILABLE_BOOKIES_PREFIX, signal), this.listPrefix(READONLY_BOOKIES_PREFIX, signal)]);
    const readOnlyIds = new Set(readOnly.map((kv) => kv.id));
    const out: BookieRegistration[] = [];
    for (const { id, value } of available) {
      const reg = parseRegistration(id, value);
      if (!reg) continue;
      if (readOnlyIds.has(id)) reg.readOnly = true;
      this.lastKnown.set(id, reg.address);
      out.push(reg);
    }
    return out;
  }

  /** The bookie's address: from its registration, else the last one seen (a bookie that just died may be back). */
  async address(id: string, signal?: AbortSignal): Promise<string | undefined> {
    const kv = await this.metadata.get(AVAILABLE_BOOKIES_PREFIX + id, { signal });
    const reg = kv ? parseRegistration(id, kv.value) : undefined;
    if (reg) this.lastKnown.set(id, reg.address);
    return reg?.address ?? this.lastKnown.get(id);
  }

  cachedAddress(id: string): string | undefined {
    return this.lastKnown.get(id);
  }

  private async listPrefix(prefix: string, signal?: AbortSignal): Promise<Array<{ id: string; value: Buffer }>> {
    const out: Array<{ id: string; value: Buffer }> = [];
    let startAfter: string | undefined;
    // Bounded: a cluster has at most a few thousand bookies.
    for (let page = 0; page < 100; page++) {
      const res = await this.metadata.list(prefix, { signal, startAfter });
      for (const item of res.items) {
        const id = item.key.slice(item.key.lastIndexOf('/') + 1);
        if (id) out.push({ id, value: item.value });
      }
      if (!res.more || res.items.length === 0) break;
      startAfter = res.items[res.items.length - 1]!.key;
    }
    return out;
  }
}
