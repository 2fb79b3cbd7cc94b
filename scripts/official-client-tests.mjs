#!/usr/bin/env node
// Runs the official pulsar-client-node test files against `strata standalone`, with only their import
// changed (`require('../index')` becomes `require('@strata/client')`), and prints passed/total per file.
// Their code is not ours to commit: point this at a checkout (or bare git dir) of apache/pulsar-client-node:
//
//   npm run build && node scripts/official-client-tests.mjs <pulsar-client-node dir> [file-filter]
//
// The official tests hard-code pulsar://localhost:6650 and http://localhost:8080, so the standalone
// takes the default ports (the script stops if they are taken) and its data lives in a temp dir.
// Jest's globals come from vitest's (`globals: true`); `jest.setTimeout` maps to vitest's config.
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const [source, filter] = process.argv.slice(2);
if (!source) {
  console.error('usage: node scripts/official-client-tests.mjs <apache/pulsar-client-node checkout or git dir> [file-filter]');
  process.exit(2);
}

// Inside the repo, so that the tests' require('@strata/client') and require('lodash') resolve.
const work = join(ROOT, '.official-client-tests');
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
if (existsSync(join(source, 'tests'))) {
  execFileSync('cp', ['-a', join(source, 'tests'), work]);
} else {
  execFileSync('sh', ['-c', `git --git-dir "${source}" archive HEAD tests | tar -x -C "${work}"`]);
}
const testsDir = join(work, 'tests');
const files = readdirSync(testsDir).filter((f) => f.endsWith('.test.js')).sort();
for (const f of files.filter((x) => filter && !x.includes(filter))) rmSync(join(testsDir, f));
for (const f of files.filter((x) => !filter || x.includes(filter))) {
  const path = join(testsDir, f);
  writeFileSync(path, readFileSync(path, 'utf8').replaceAll("require('../index')", "require('@strata/client')"));
}
// The repo's package.json says "type": "module"; the official tests are CommonJS.
writeFileSync(join(work, 'package.json'), '{ "type": "commonjs" }\n');
writeFileSync(join(work, 'jest-shim.mjs'), "import { vi } from 'vitest';\nglobalThis.jest = { setTimeout: (ms) => vi.setConfig({ testTimeout: ms }), fn: vi.fn };\n");
writeFileSync(join(work, 'vitest.config.mjs'), `export default { test: { globals: true, include: ['tests/*.test.js'], setupFiles: ['./jest-shim.mjs'], fileParallelism: false, testTimeout: 5000, hookTimeout: 30000 } };\n`);

for (const port of [6650, 8080]) {
  if (!(await portFree(port))) {
    console.error(`port ${port} is in use: the official tests need it for the standalone`);
    process.exit(2);
  }
}
const dataDir = mkdtempSync(join(tmpdir(), 'strata-official-'));
const standalone = spawn(process.execPath, [join(ROOT, 'packages/cli/dist/bin.js'), 'standalone', '--data-dir', dataDir, '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'inherit'] });
let code = 1;
try {
  await waitReady('http://127.0.0.1:8080/readyz', 60_000);
  const report = join(work, 'report.json');
  try {
    execFileSync(join(ROOT, 'node_modules/.bin/vitest'), ['run', '--root', work, '--reporter=json', `--outputFile=${report}`, '--reporter=default'], { stdio: 'inherit' });
  } catch {
    // Failures are counted from the report.
  }
  const results = JSON.parse(readFileSync(report, 'utf8'));
  let passed = 0;
  let total = 0;
  console.log('\nfile | passed / total');
  for (const r of results.testResults.sort((a, b) => a.name.localeCompare(b.name))) {
    const ok = r.assertionResults.filter((a) => a.status === 'passed').length;
    passed += ok;
    total += r.assertionResults.length;
    console.log(`${r.name.split('/').pop()} | ${ok} / ${r.assertionResults.length}`);
    for (const a of r.assertionResults.filter((x) => x.status !== 'passed')) console.log(`  - ${a.fullName}: ${a.status}`);
  }
  console.log(`all | ${passed} / ${total}`);
  code = passed === total ? 0 : 1;
} finally {
  standalone.kill('SIGTERM');
  await new Promise((r) => standalone.once('exit', r));
  rmSync(dataDir, { recursive: true, force: true });
}
process.exit(code);

function portFree(port) {
  return new Promise((res) => {
    const s = net.createServer().once('error', () => res(false)).listen(port, '127.0.0.1', () => s.close(() => res(true)));
  });
}

async function waitReady(url, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (standalone.exitCode !== null) throw new Error(`standalone exited with ${standalone.exitCode}`);
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`standalone not ready after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
