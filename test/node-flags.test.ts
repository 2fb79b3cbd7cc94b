// Decision 0085: every entry point that starts a Strata server runs node with SERVER_NODE_FLAGS. The
// flags are written out where they cannot be imported (package.json, the two image definitions); this
// keeps those copies in step with the list.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SERVER_NODE_FLAGS } from '@strata/runtime';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const read = (file: string) => readFileSync(join(root, file), 'utf8');

/** The node arguments between the node binary and the bin, in a command line. */
function nodeArgsBefore(bin: string, words: string[]): string[] {
  const node = words.findIndex((w) => w === 'node' || w.endsWith('/node'));
  const at = words.findIndex((w) => w.endsWith(bin));
  expect(node, `node in ${words.join(' ')}`).toBeGreaterThanOrEqual(0);
  expect(at, `${bin} in ${words.join(' ')}`).toBeGreaterThan(node);
  return words.slice(node + 1, at);
}

describe('server node flags', () => {
  it('npm start runs the standalone with them', () => {
    const start = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts.start as string;
    const command = start.split('&&').at(-1)?.trim().split(/\s+/) ?? [];
    expect(nodeArgsBefore('packages/cli/dist/bin.js', command)).toEqual(SERVER_NODE_FLAGS);
  });

  it.each(['Dockerfile', 'scripts/build-image.sh'])('%s puts them in the strata image\'s ENTRYPOINT', (file) => {
    const entrypoints = [...read(file).matchAll(/^ENTRYPOINT (\[.*\])$/gm)].map((m) => JSON.parse(m[1] as string) as string[]);
    const strata = entrypoints.filter((e) => e.some((w) => w.endsWith('/cli/dist/bin.js')));
    expect(strata).toHaveLength(1);
    expect(nodeArgsBefore('/app/packages/cli/dist/bin.js', strata[0] as string[])).toEqual(SERVER_NODE_FLAGS);
  });
});
