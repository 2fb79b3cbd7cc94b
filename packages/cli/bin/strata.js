#!/usr/bin/env node
// The `strata` command's launcher. It is committed (dist/ is not), so `npm ci` on a fresh clone can link
// the bin before anything is built; it runs the built command, or says how to build it.
import { existsSync } from 'node:fs';

const built = new URL('../dist/bin.js', import.meta.url);
if (!existsSync(built)) {
  process.stderr.write('strata: the command is not built yet (packages/cli/dist/bin.js is missing): run `npm run build` first\n');
  process.exit(1);
}
await import(built.href);
