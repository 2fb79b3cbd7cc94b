// The built `strata` bin (packages/cli/dist/bin.js, so `npx tsc -b packages/cli` first) run as a child
// process to its end: exit code and everything it printed. Killed with SIGKILL after `timeoutMs`.
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const strataBinPath = join(repoRoot, 'packages', 'cli', 'dist', 'bin.js');

export interface BinRun { code: number | null; stdout: string; stderr: string }

export function runBin(args: string[], timeoutMs = 30_000, env: Record<string, string> = {}): Promise<BinRun> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [strataBinPath, ...args], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
