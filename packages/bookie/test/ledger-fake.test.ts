import { describe, expect, it } from 'vitest';
import { InMemoryLedgerClient, InMemoryLedgerCluster } from '../src/testing/index.js';

describe('InMemoryLedgerClient', () => {
  it('appends in order, reads back, closes', async () => {
    const client = new InMemoryLedgerClient();
    const w = await client.createLedger({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 2, customMetadata: { topic: 't' } });
    const ids = await Promise.all([0, 1, 2, 3, 4].map((i) => w.append(Buffer.from(`m${i}`))));
    expect(ids).toEqual([0, 1, 2, 3, 4]);
    expect(w.lastAddConfirmed).toBe(4);
    const entries = await w.read(1, 3);
    expect(entries.map((e) => e.payload.toString())).toEqual(['m1', 'm2', 'm3']);
    await w.close();
    const md = await client.getMetadata(w.ledgerId);
    expect(md).toMatchObject({ state: 'CLOSED', lastEntryId: 4, length: 10, customMetadata: { topic: 't' } });
    await expect(w.append(Buffer.from('x'))).rejects.toMatchObject({ code: 'LEDGER_CLOSED' });
    const r = await client.openLedger(w.ledgerId);
    expect(await r.readLastAddConfirmed()).toBe(4);
    await expect(r.read(4, 5)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('fences the writer on recovery by another client', async () => {
    const cluster = new InMemoryLedgerCluster();
    const a = new InMemoryLedgerClient({ cluster, addDelayMs: 5 });
    const b = new InMemoryLedgerClient({ cluster });
    const w = await a.createLedger({ ensembleSize: 2, writeQuorum: 2, ackQuorum: 2 });
    await w.append(Buffer.from('0'));
    const pending = w.append(Buffer.from('1'));
    const r = await b.openLedger(w.ledgerId, { recovery: true });
    await expect(pending).rejects.toMatchObject({ code: 'FENCED' });
    await expect(w.append(Buffer.from('2'))).rejects.toMatchObject({ code: 'FENCED' });
    expect(r.metadata).toMatchObject({ state: 'CLOSED', lastEntryId: 0 });
    await expect(w.close()).resolves.toBeUndefined(); // closed exactly where the writer stopped
    expect(await b.getMetadata(w.ledgerId)).toMatchObject({ state: 'CLOSED', lastEntryId: 0 });
  });

  it('bounds pending adds and deletes ledgers', async () => {
    const client = new InMemoryLedgerClient({ maxPendingAdds: 2, addDelayMs: 2 });
    const w = await client.createLedger({ ensembleSize: 1, writeQuorum: 1, ackQuorum: 1 });
    const all = Array.from({ length: 10 }, (_, i) => w.append(Buffer.from([i])));
    expect(await Promise.all(all)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    await client.deleteLedger(w.ledgerId);
    await expect(client.getMetadata(w.ledgerId)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(client.createLedger({ ensembleSize: 1, writeQuorum: 2, ackQuorum: 1 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});
