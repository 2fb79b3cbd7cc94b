import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SERVER_NODE_FLAGS } from '../node-flags.js';
import { ChildProcessHandle } from './process.js';

/** The built `strata` bin of this checkout (packages/cli/dist/bin.js). */
export function strataBin(): string {
  const bin = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'cli', 'dist', 'bin.js');
  if (!existsSync(bin)) throw new Error(`${bin} is missing: run npm run build`);
  return bin;
}

/**
 * Starts `strata <role> <flags>` as a real process and waits until its /readyz answers 200
 * (pass the role's HTTP port in `httpPort`; default wait 20 s, `readyTimeoutMs` to change it), or only
 * until it is alive when `waitReady` is false.
 */
export async function spawnRole(
  role: string,
  flags: Record<string, string | number | boolean>,
  options: { httpPort: number; waitReady?: boolean; readyTimeoutMs?: number; logFile?: string; env?: Record<string, string> },
): Promise<ChildProcessHandle> {
  const args = [...SERVER_NODE_FLAGS, strataBin(), role, ...Object.entries(flags).flatMap(([k, v]) => (typeof v === 'boolean' ? [v ? `--${k}` : `--no-${k}`] : [`--${k}`, String(v)]))];
  const proc = ChildProcessHandle.spawn({ command: process.execPath, args, logFile: options.logFile, env: options.env });
  try {
    await proc.waitForHttp(`http://127.0.0.1:${options.httpPort}/${options.waitReady === false ? 'healthz' : 'readyz'}`, options.readyTimeoutMs);
  } catch (err) {
    await proc.kill();
    throw err;
  }
  return proc;
}
