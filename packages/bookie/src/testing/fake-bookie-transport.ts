import { crc32c } from '@node-rs/crc32';
import { ErrorCode, StrataError } from '@strata/runtime';
import type { AddRequest, BookieLedgerState, BookieTransport, ReadRequest, StoredEntryData } from '../client/transport.js';

interface FakeLedgerData {
  entries: Map<number, { payload: Buffer; crc32c: number }>;
  fenced: boolean;
  lac: number;
}

interface FakeBookie {
  ledgers: Map<number, FakeLedgerData>;
  down: boolean;
  /** Adds held (not answered) while paused. */
  held: Array<() => void> | undefined;
  addDelayMs: number;
}

/**
 * In-memory bookies behind the BookieTransport seam, for unit tests of the ledger client's quorum,
 * striping, ensemble-change and recovery logic. Faults: `kill` (calls fail UNAVAILABLE, held adds too),
 * `revive`, `pause` (adds are held unanswered), `resume`, per-bookie add delay.
 * Like a real bookie: fenced ledgers refuse non-recovery adds with FENCED, the LAC is the highest
 * piggybacked one, a re-add of the same entry with the same payload succeeds.
 */
export class FakeBookieTransport implements BookieTransport {
  readonly bookies = new Map<string, FakeBookie>();
  /** Every add call, in order: [bookieId, ledgerId, entryId, recovery]. */
  readonly addLog: Array<[string, number, number, boolean]> = [];

  addBookie(id: string, options: { addDelayMs?: number } = {}): void {
    this.bookies.set(id, { ledgers: new Map(), down: false, held: undefined, addDelayMs: options.addDelayMs ?? 0 });
  }

  kill(id: string): void {
    const b = this.bookie(id);
    b.down = true;
    const held = b.held ?? [];
    b.held = undefined;
    for (const release of held) release();
  }

  /** Back up with its data (a restart). */
  revive(id: string): void {
    this.bookie(id).down = false;
  }

  /** Loses its data for good (a replaced disk). */
  wipe(id: string): void {
    this.bookie(id).ledgers.clear();
  }

  pause(id: string): void {
    this.bookie(id).held ??= [];
  }

  resume(id: string): void {
    const b = this.bookie(id);
    const held = b.held ?? [];
    b.held = undefined;
    for (const release of held) release();
  }

  /** Entry ids of a ledger stored on a bookie, ascending. */
  entryIds(bookieId: string, ledgerId: number): number[] {
    return [...(this.bookie(bookieId).ledgers.get(ledgerId)?.entries.keys() ?? [])].sort((a, b) => a - b);
  }

  async add(bookieId: string, add: AddRequest): Promise<void> {
    const b = this.bookie(bookieId);
    this.addLog.push([bookieId, add.ledgerId, add.entryId, add.recovery]);
    if (b.held) await new Promise<void>((resolve) => b.held!.push(resolve));
    if (b.addDelayMs > 0) await new Promise((r) => setTimeout(r, b.addDelayMs));
    else await new Promise((r) => setImmediate(r));
    if (b.down) throw new StrataError(ErrorCode.UNAVAILABLE, `bookie ${bookieId} is down`);
    if (crc32c(add.payload) !== add.crc32c) throw new StrataError(ErrorCode.CHECKSUM_MISMATCH, 'bad crc');
    const ledger = this.ledger(b, add.ledgerId);
    if (ledger.fenced && !add.recovery) throw new StrataError(ErrorCode.FENCED, `ledger ${add.ledgerId} fenced on ${bookieId}`);
    const existing = ledger.entries.get(add.entryId);
    if (existing && !existing.payload.equals(add.payload)) throw new StrataError(ErrorCode.ALREADY_EXISTS, 'different payload');
    ledger.entries.set(add.entryId, { payload: Buffer.from(add.payload), crc32c: add.crc32c });
    ledger.lac = Math.max(ledger.lac, add.lastAddConfirmed);
  }

  async read(bookieId: string, request: ReadRequest): Promise<StoredEntryData[]> {
    const b = this.up(bookieId);
    const ledger = b.ledgers.get(request.ledgerId);
    const out: StoredEntryData[] = [];
    let bytes = 0;
    // Like the real bookie: NOT_FOUND unless the first entry is here; entries it lacks are skipped.
    if (!ledger?.entries.has(request.firstEntryId)) {
      throw new StrataError(ErrorCode.NOT_FOUND, `entry ${request.firstEntryId} of ledger ${request.ledgerId} not on ${bookieId}`);
    }
    for (let id = request.firstEntryId; id <= request.lastEntryId; id++) {
      const e = ledger.entries.get(id);
      if (!e) continue;
      if (out.length > 0 && bytes + e.payload.length > request.maxBytes) break;
      out.push({ entryId: id, payload: Buffer.from(e.payload), crc32c: e.crc32c });
      bytes += e.payload.length;
    }
    return out;
  }

  async readLastAddConfirmed(bookieId: string, ledgerId: number): Promise<number> {
    const ledger = this.up(bookieId).ledgers.get(ledgerId);
    if (!ledger) throw new StrataError(ErrorCode.NOT_FOUND, `ledger ${ledgerId} not on ${bookieId}`);
    return ledger.lac;
  }

  async fence(bookieId: string, ledgerId: number): Promise<BookieLedgerState> {
    const ledger = this.ledger(this.up(bookieId), ledgerId);
    ledger.fenced = true;
    return this.state(ledger);
  }

  async getLedgerState(bookieId: string, ledgerId: number): Promise<BookieLedgerState> {
    return this.state(this.ledger(this.up(bookieId), ledgerId));
  }

  async close(): Promise<void> {}

  private state(ledger: FakeLedgerData): BookieLedgerState {
    return { fenced: ledger.fenced, lastAddConfirmed: ledger.lac, lastEntryId: Math.max(-1, ...ledger.entries.keys()) };
  }

  private up(id: string): FakeBookie {
    const b = this.bookie(id);
    if (b.down) throw new StrataError(ErrorCode.UNAVAILABLE, `bookie ${id} is down`);
    return b;
  }

  private bookie(id: string): FakeBookie {
    const b = this.bookies.get(id);
    if (!b) throw new StrataError(ErrorCode.UNAVAILABLE, `no bookie ${id}`);
    return b;
  }

  private ledger(b: FakeBookie, ledgerId: number): FakeLedgerData {
    let l = b.ledgers.get(ledgerId);
    if (!l) {
      l = { entries: new Map(), fenced: false, lac: -1 };
      b.ledgers.set(ledgerId, l);
    }
    return l;
  }
}
