// The `strata` bin must exist on a fresh clone: `npm ci` links bins before anything is built, and a
// bin target under dist/ would leave `npx strata` with "could not determine executable to run".
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const cliDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const root = join(cliDir, '..', '..');
const pkg = JSON.parse(readFileSync(join(cliDir, 'package.json'), 'utf8')) as { bin: Record<string, string> };
const target = join(cliDir, pkg.bin.strata ?? '');
const temp = mkdtempSync(join(tmpdir(), 'strata-cli-bin-'));

afterAll(() => rmSync(temp, { recursive: true, force: true }));

describe('the strata bin', () => {
  it('names a committed launcher, not a build output', () => {
    expect(pkg.bin.strata).toBeDefined();
    expect(relative(cliDir, target).split(/[\\/]/)[0]).not.toBe('dist');
    expect(existsSync(target)).toBe(true);
    expect(readFileSync(target, 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
    // Tracked by git: a fresh clone has it.
    execFileSync('git', ['ls-files', '--error-unmatch', relative(root, target)], { cwd: root, stdio: 'pipe' });
    // The lockfile (what npm ci links from) agrees.
    const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as { packages: Record<string, { bin?: Record<string, string> }> };
    expect(lock.packages['packages/cli']?.bin?.strata?.replace(/^\.\//, '')).toBe(pkg.bin.strata?.replace(/^\.\//, ''));
  });

  it('without a build, says in one line to run npm run build', () => {
    const copy = join(temp, 'cli', relative(cliDir, target));
    mkdirSync(dirname(copy), { recursive: true });
    copyFileSync(target, copy);
    const r = spawnSync(process.execPath, [copy, '--help'], { encoding: 'utf8', timeout: 10_000 });
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/run `npm run build`/);
  });

  it('with a build, runs the command', () => {
    const r = spawnSync(process.execPath, [target, '--help'], { encoding: 'utf8', timeout: 10_000 });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^Usage: strata/);
  });
});
