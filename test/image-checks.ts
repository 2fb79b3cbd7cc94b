// The checks every Strata image must pass, however it was built (scripts/build-image.sh from local
// files: test/image.test.ts; the root Dockerfile: test/dockerfile.test.ts): it runs the `strata` bin,
// as a non-root user, read-only, with tini as PID 1 so that SIGTERM reaches node, and declares the
// Dockerfile's entry point and user.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';

export const repoRoot = fileURLToPath(new URL('..', import.meta.url));

export function run(cmd: string, args: string[], timeoutMs = 60_000, env?: NodeJS.ProcessEnv) {
  const out = spawnSync(cmd, args, { cwd: repoRoot, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 << 20, env: env ?? process.env });
  return { status: out.status, stdout: out.stdout ?? '', stderr: out.stderr ?? '' };
}

export function dockerUp(): boolean {
  return run('docker', ['info'], 20_000).status === 0;
}

/**
 * Registers the image checks (`it` blocks and an afterAll that removes their containers) in the
 * calling `describe`. `image` is read when the checks run, so a beforeAll may build it first.
 * `runsCli: false` skips the checks that run the strata bin (the local build needs a host build that runs).
 */
export function imageChecks(image: () => string, options: { runsCli: boolean }): void {
  const containers: string[] = [];
  afterAll(() => {
    for (const id of containers) run('docker', ['rm', '-f', id]);
  });

  it.skipIf(!options.runsCli)('runs `strata --help` and a role`s --help', () => {
    const help = run('docker', ['run', '--rm', image(), '--help']);
    expect(help.stderr).toBe('');
    expect(help.status).toBe(0);
    for (const role of ['standalone', 'broker', 'bookie', 'coordinator']) expect(help.stdout).toContain(role);
    const broker = run('docker', ['run', '--rm', image(), 'broker', '--help']);
    expect(broker.status).toBe(0);
    expect(broker.stdout).toContain('--grpc-port');
    expect(broker.stdout).toContain('STRATA_METADATA_URL');
  });

  it('runs as uid 10001 (not root), on a read-only root file system, as Kubernetes runs it', () => {
    const user = run('docker', ['image', 'inspect', '-f', '{{.Config.User}}', image()]);
    expect(user.stdout.trim()).toBe('10001:10001');
    // The same process the entry point starts, asked who it is.
    const who = run('docker', [
      'run', '--rm', '--read-only', '--tmpfs', '/tmp', '--entrypoint', '/sbin/tini', image(),
      '--', '/usr/bin/node', '-e', 'const os=require("os");process.stdout.write(JSON.stringify({uid:process.getuid(),gid:process.getgid(),user:os.userInfo().username}))',
    ]);
    expect(who.stderr).toBe('');
    expect(JSON.parse(who.stdout)).toEqual({ uid: 10001, gid: 10001, user: 'strata' });
    const write = run('docker', ['run', '--rm', '--read-only', '--entrypoint', '/usr/bin/node', image(), '-e', 'require("fs").writeFileSync("/app/x","")']);
    expect(write.status).not.toBe(0);
    expect(write.stderr).toMatch(/EROFS|EACCES/);
  });

  it('has tini as PID 1, which passes SIGTERM on to node', () => {
    // A node process that exits 0 on SIGTERM: with node as PID 1 and no handler the signal would be
    // ignored and `docker stop` would wait its full timeout.
    const start = run('docker', [
      'run', '-d', '--read-only', '--entrypoint', '/sbin/tini', image(), '--', '/usr/bin/node', '-e',
      'process.on("SIGTERM",()=>{console.log("got SIGTERM");process.exit(0)});console.log("pid",process.pid);setInterval(()=>{},1000)',
    ]);
    expect(start.status, start.stderr).toBe(0);
    const id = start.stdout.trim();
    containers.push(id);
    for (let i = 0; i < 50 && !/pid \d+/.test(run('docker', ['logs', id]).stdout); i++) spawnSync('sleep', ['0.1']);
    const top = run('docker', ['top', id, '-o', 'pid,ppid,comm']);
    expect(top.stdout).toMatch(/tini/);
    const stop = run('docker', ['stop', '-t', '20', id], 30_000);
    expect(stop.status).toBe(0);
    const logs = run('docker', ['logs', id]);
    expect(logs.stdout).toMatch(/pid \d+/);
    expect(logs.stdout).not.toMatch(/pid 1\n/);
    expect(logs.stdout).toContain('got SIGTERM');
    expect(run('docker', ['inspect', '-f', '{{.State.ExitCode}}', id]).stdout.trim()).toBe('0');
  });

  it.skipIf(!options.runsCli)('runs `strata standalone` read-only as non-root, serves a message, and stops on SIGTERM at once', () => {
    const start = run('docker', ['run', '-d', '--read-only', '--tmpfs', '/tmp:uid=10001', image(), 'standalone', '--host', '127.0.0.1', '--data-dir', '/tmp/data']);
    expect(start.status, start.stderr).toBe(0);
    const id = start.stdout.trim();
    containers.push(id);
    const exec = (...args: string[]) => run('docker', ['exec', id, '/usr/bin/node', ...args]);
    let ready = false;
    for (let i = 0; i < 100 && !ready; i++) {
      ready = exec('-e', 'fetch("http://127.0.0.1:8080/readyz").then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))').status === 0;
      if (!ready) spawnSync('sleep', ['0.2']);
    }
    expect(ready, run('docker', ['logs', id]).stderr).toBe(true);
    expect(run('docker', ['top', id, '-o', 'user,comm']).stdout).not.toMatch(/^root/m);
    const cli = (...args: string[]) => exec('/app/packages/cli/dist/bin.js', ...args, '--service-url', 'pulsar://127.0.0.1:6650');
    const topic = `image-test-${process.pid}`;
    expect(cli('produce', topic, '-m', 'hello-image').stdout).toContain('1 messages successfully produced');
    expect(cli('consume', topic, '-s', 'sub', '-p', 'Earliest', '-n', '1').stdout).toContain('content:hello-image');
    // tini passes SIGTERM to the role, which stops cleanly: exit 0, long before docker's 20 s timeout.
    const t0 = Date.now();
    expect(run('docker', ['stop', '-t', '20', id], 30_000).status).toBe(0);
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(run('docker', ['inspect', '-f', '{{.State.ExitCode}}', id]).stdout.trim()).toBe('0');
  });

  it('declares the same entry point and user as the Dockerfile', () => {
    const dockerfile = readFileSync(`${repoRoot}/Dockerfile`, 'utf8');
    const runtime = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
    const entrypoint = JSON.parse(/^ENTRYPOINT (.+)$/m.exec(runtime)?.[1] ?? 'null') as string[];
    const user = /^USER (.+)$/m.exec(runtime)?.[1];
    const inspect = JSON.parse(run('docker', ['image', 'inspect', '-f', '{{json .Config}}', image()]).stdout) as { Entrypoint: string[]; User: string };
    expect(inspect.Entrypoint).toEqual(entrypoint);
    expect(entrypoint.slice(0, 2)).toEqual(['/sbin/tini', '--']);
    expect(inspect.User).toBe(user);
  });
}

/** Every regular file in the image (but /proc, /sys, /dev), listed by the image's own node. */
export function imageFiles(image: string): string[] {
  const script =
    'const fs=require("fs"),path=require("path"),out=[];' +
    'const walk=(d)=>{for(const e of fs.readdirSync(d,{withFileTypes:true})){const p=path.join(d,e.name);' +
    'if(["/proc","/sys","/dev"].includes(p))continue;if(e.isDirectory())walk(p);else out.push(p)}};' +
    'walk("/");process.stdout.write(JSON.stringify(out.sort()))';
  const out = run('docker', ['run', '--rm', '--entrypoint', '/usr/bin/node', image, '-e', script]);
  if (out.status !== 0) throw new Error(`listing the files of ${image} failed: ${out.stderr}`);
  return JSON.parse(out.stdout) as string[];
}
