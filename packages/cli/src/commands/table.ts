/**
 * Plain-text tables for the admin commands' human output. Pure.
 */

export type Cell = string | number | boolean | null | undefined;

function text(c: Cell): string {
  if (c === null || c === undefined) return '';
  if (typeof c === 'number') return Number.isInteger(c) ? String(c) : c.toFixed(3);
  return String(c);
}

/** Columns padded to their widest cell, a header row, numbers right-aligned. */
export function formatTable(headers: readonly string[], rows: readonly (readonly Cell[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => text(r[i]).length)));
  const numeric = headers.map((_, i) => rows.length > 0 && rows.every((r) => typeof r[i] === 'number'));
  const line = (cells: readonly string[]): string =>
    cells.map((c, i) => (numeric[i] ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd();
  return [line(headers.map((h) => h.toUpperCase())), ...rows.map((r) => line(headers.map((_, i) => text(r[i]))))].join('\n');
}

/** A two-column key/value table. */
export function formatKeyValues(pairs: readonly (readonly [string, Cell])[]): string {
  const width = Math.max(0, ...pairs.map(([k]) => k.length));
  return pairs.map(([k, v]) => `${k.padEnd(width)}  ${text(v)}`.trimEnd()).join('\n');
}
