// The broker's rooms (docs/broker.md, "Rooms"): which room may import which, and no import circle
// between files. Reads the sources' import lists (TypeScript's own pre-processor, type-only imports
// included), so it needs no build and runs in milliseconds.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../src');

/** Top-level files: the composition root and public surface, or small things every room uses. */
const TOP_LEVEL: Record<string, Room> = {
  'main.ts': 'root', 'index.ts': 'root',
  'errors.ts': 'shared', 'names.ts': 'shared', 'metrics.ts': 'shared', 'grpc-unary.ts': 'shared',
};
type Room = 'root' | 'testing' | 'admin' | 'transport' | 'topics' | 'resources' | 'ownership' | 'storage' | 'security' | 'policies' | 'shared' | 'generated';
const ROOMS = new Set<string>(['testing', 'admin', 'transport', 'topics', 'resources', 'ownership', 'storage', 'security', 'policies', 'generated']);

/**
 * The allowed direction (besides imports inside a room): transport and admin sit on topics; topics on
 * resources, ownership and storage; storage imports nothing of the broker. Nothing but the root imports
 * transport or admin, and nothing but testing imports the root.
 */
const ALLOWED: Record<Room, readonly Room[] | 'any'> = {
  root: 'any',
  testing: ['root', 'shared', 'generated'],
  admin: ['topics', 'resources', 'ownership', 'policies', 'shared', 'generated'],
  transport: ['topics', 'storage', 'shared', 'generated'],
  topics: ['resources', 'ownership', 'storage', 'policies', 'shared', 'generated'],
  resources: ['ownership', 'policies', 'shared', 'generated'],
  ownership: ['shared', 'generated'],
  storage: [],
  // The call gate's providers (decision 0090): only the root builds the gate from them.
  security: [],
  // Tenancy limits (rate limiters): mechanisms the topics and the resources' validation use.
  policies: [],
  shared: ['shared', 'generated'],
  generated: ['generated'],
};

function roomOf(file: string): Room | undefined {
  const rel = relative(SRC, file).split('\\').join('/');
  const [first, ...rest] = rel.split('/');
  if (rest.length === 0) return TOP_LEVEL[first as string];
  return ROOMS.has(first as string) ? (first as Room) : undefined;
}

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return name === 'generated' ? [] : sources(path);
    return name.endsWith('.ts') ? [path] : [];
  });
}

/** The file a relative specifier names ('./x.js' is x.ts; a directory is its index.ts). */
function resolveImport(from: string, spec: string): string {
  const base = resolve(dirname(from), spec);
  const candidates = [base.replace(/\.js$/, '.ts'), `${base}.ts`, join(base, 'index.ts')];
  return candidates.find((c) => existsSync(c)) ?? base.replace(/\.js$/, '.ts');
}

function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sources(SRC)) {
    const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
    const targets = info.importedFiles.map((f) => f.fileName).filter((s) => s.startsWith('.')).map((s) => resolveImport(file, s));
    graph.set(file, [...new Set(targets)]);
  }
  return graph;
}

/** Every import circle, each as a path of files (Tarjan's strongly connected components). */
function cycles(graph: Map<string, string[]>): string[][] {
  let index = 0;
  const stack: string[] = [];
  const on = new Set<string>();
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v) as number, idx.get(w) as number));
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop() as string;
        on.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) out.push(scc.map((f) => relative(SRC, f)).sort());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) visit(v);
  return out;
}

describe('broker rooms', () => {
  const graph = importGraph();
  const rel = (f: string) => relative(SRC, f).split('\\').join('/');

  it('reads the import graph', () => {
    // Guards against a parser that sees nothing (and so passes everything).
    expect(graph.size).toBeGreaterThan(30);
    expect(graph.get(join(SRC, 'main.ts'))?.map(rel)).toContain('topics/broker-service.ts');
  });

  it('puts every source file in a room', () => {
    const homeless = [...graph.keys()].filter((f) => roomOf(f) === undefined).map(rel);
    expect(homeless, 'a new top-level file: put it in a room, or list it in TOP_LEVEL if every room needs it').toEqual([]);
  });

  it('imports only in the allowed direction between rooms', () => {
    const forbidden: string[] = [];
    for (const [file, targets] of graph) {
      const from = roomOf(file) as Room;
      for (const target of targets) {
        const to = roomOf(target);
        const allowed = ALLOWED[from];
        if (to === from || allowed === 'any' || (to !== undefined && allowed.includes(to))) continue;
        forbidden.push(`${rel(file)} (${from}) -> ${rel(target)} (${to ?? 'outside src'})`);
      }
    }
    expect(forbidden).toEqual([]);
  });

  it('has no import circle between files', () => {
    expect(cycles(graph)).toEqual([]);
  });

  it('finds a circle when there is one (self-check of the detector)', () => {
    const edges: Record<string, string[]> = { a: ['b'], b: ['c'], c: ['a'], d: ['a'] };
    const g = new Map(Object.entries(edges).map(([k, v]) => [join(SRC, k), v.map((x) => join(SRC, x))]));
    expect(cycles(g)).toEqual([['a', 'b', 'c']]);
  });
});
