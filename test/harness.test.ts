import { describe, expect, it } from 'vitest';
import { History } from './harness/history.js';

// The checker must be able to fail: each invariant is shown catching its violation.
describe('History checker', () => {
  it('passes a clean history', () => {
    const h = new History();
    for (let i = 0; i < 3; i++) h.acknowledged(h.sending('p', i));
    for (let i = 0; i < 3; i++) h.receivedBy('c', `p:${i}`);
    expect(h.check()).toEqual({ acknowledged: 3, delivered: 3, lost: [], duplicates: [], reordered: [], phantom: [], storedTwice: [] });
  });

  it('finds lost, duplicated, reordered and phantom messages', () => {
    const h = new History();
    for (let i = 0; i < 4; i++) h.acknowledged(h.sending('p', i));
    h.sending('p', 4); // sent, never acknowledged: its absence is not a loss
    h.receivedBy('c', 'p:0');
    h.receivedBy('c', 'p:2');
    h.receivedBy('c', 'p:1'); // first delivery of 1 after 2: reordered
    h.receivedBy('c', 'p:2'); // redelivery: a duplicate, but not a reorder
    h.receivedBy('c', 'q:9');
    const report = h.check();
    expect(report.lost).toEqual(['p:3']);
    expect(report.duplicates).toEqual(['p:2']);
    expect(report.reordered).toEqual(['p:1 after p:2 on c']);
    expect(report.phantom).toEqual(['q:9']);
    expect(report.storedTwice).toEqual([]);
  });

  it('tells a redelivery (same message id) from a message stored twice (two ids)', () => {
    const h = new History();
    for (let i = 0; i < 2; i++) h.acknowledged(h.sending('p', i));
    h.receivedBy('c', 'p:0', '(1,0,-1,-1)');
    h.receivedBy('c', 'p:0', '(1,0,-1,-1)'); // redelivered after a crash: allowed
    h.receivedBy('c', 'p:1', '(1,1,-1,-1)');
    h.receivedBy('c', 'p:1', '(1,2,-1,-1)'); // a resend stored again: not allowed with dedup on
    const report = h.check();
    expect(report.duplicates).toEqual(['p:0', 'p:1']);
    expect(report.storedTwice).toEqual(['p:1']);
    expect(h.missing()).toBe(0);
  });
});
