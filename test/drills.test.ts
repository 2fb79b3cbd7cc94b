// The kubectl failover drills (deploy/k8s/drills): shellcheck-clean, their parsing of the strata CLI's
// output right, and their flow (load, fault, recovery, read-back, report) right, run here through the
// platform seam with a scripted in-memory platform. Against real clusters they run with
// --platform k8s (docs/deploy.md) or --platform docker (the testcontainers cluster).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const drills = join(root, 'deploy/k8s/drills');

const haveShellcheck = spawnSync('shellcheck', ['--version']).status === 0;
if (!haveShellcheck) console.warn('SKIPPED shellcheck in test/drills.test.ts: shellcheck is not installed (bash scripts/setup.sh installs it)');

function bash(script: string, env: Record<string, string> = {}) {
  const out = spawnSync('bash', ['-c', script], { cwd: root, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000 });
  return { status: out.status, stdout: out.stdout, stderr: out.stderr };
}

describe('deploy/k8s/drills', () => {
  let tmp = '';
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'strata-drills-'));
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it.skipIf(!haveShellcheck)('passes shellcheck, with the image scripts', () => {
    const scripts = [
      ...readdirSync(drills).filter((f) => f.endsWith('.sh')).map((f) => join(drills, f)),
      join(root, 'scripts/build-image.sh'),
      ...readdirSync(join(root, 'scripts/docker')).filter((f) => f.endsWith('.sh')).map((f) => join(root, 'scripts/docker', f)),
    ];
    expect(scripts.length).toBeGreaterThanOrEqual(6);
    const out = spawnSync('shellcheck', ['-x', '-P', 'SCRIPTDIR', ...scripts], { encoding: 'utf8' });
    expect(out.stdout + out.stderr).toBe('');
    expect(out.status).toBe(0);
  });

  it('shellcheck would catch a defect (the check is live)', { skip: !haveShellcheck }, () => {
    const bad = join(tmp, 'bad.sh');
    writeFileSync(bad, '#!/usr/bin/env bash\nrm -rf $1/*\n');
    expect(spawnSync('shellcheck', [bad]).status).not.toBe(0);
  });

  const lib = (body: string) => bash(`set -euo pipefail; WORK_DIR='${tmp}'; source deploy/k8s/drills/lib.sh; ${body}`);

  it('finds the owner address in `strata admin topics partitioned-lookup --json`', () => {
    // The CLI prints JSON.stringify(rows, null, 2) (packages/cli/src/commands/index.ts).
    const rows = [{ topic: 'persistent://public/default/t', range: '0x00000000_0x40000000', owner: 'broker-1', url: 'pulsar://10.1.2.3:6650' }];
    writeFileSync(join(tmp, 'lookup.json'), JSON.stringify(rows, null, 2));
    expect(lib(`parse_owner_address < '${tmp}/lookup.json'`).stdout.trim()).toBe('10.1.2.3:6650');
    writeFileSync(join(tmp, 'unowned.json'), JSON.stringify([{ ...rows[0], owner: '', url: '' }], null, 2));
    expect(lib(`parse_owner_address < '${tmp}/unowned.json'`).stdout.trim()).toBe('');
  });

  it('reads acknowledged sends and errors from the perf summary, and the tracer count', () => {
    const interval = { type: 'interval', elapsedS: 1, publish: { messages: 10, bytes: 10240, msgPerS: 10, mbPerS: 0.01, errors: 0, latency: { p50: 1 } } };
    const summary = { type: 'summary', durationS: 60, publish: { messages: 11990, bytes: 12277760, msgPerS: 199.8, mbPerS: 0.2, errors: 7, latency: { count: 11990, p50Ms: 1.2, p99Ms: 30, maxMs: 281.53 } } };
    writeFileSync(join(tmp, 'load.jsonl'), `${JSON.stringify(interval)}\n${JSON.stringify(summary)}\n`);
    expect(lib(`parse_perf_summary < '${tmp}/load.jsonl'`).stdout.trim()).toBe('11990 7');
    expect(lib(`parse_perf_max_latency < '${tmp}/load.jsonl'`).stdout.trim()).toBe('281.53');
    const stall = { ...interval, elapsedS: 2, publish: { ...interval.publish, messages: 0, msgPerS: 0 } };
    writeFileSync(join(tmp, 'stalls.jsonl'), [interval, stall, stall, interval, summary].map((x) => JSON.stringify(x)).join('\n'));
    expect(lib(`parse_perf_stalled_seconds < '${tmp}/stalls.jsonl'`).stdout.trim()).toBe('2');
    // Progress goes to stderr while sending; the final line to stdout when all were acknowledged.
    writeFileSync(join(tmp, 'tracer.out'), '1200 messages successfully produced\n');
    writeFileSync(join(tmp, 'tracer.err'), 'produced 600/1200\nproduced 1180/1200\n');
    expect(lib('tracer_acked').stdout.trim()).toBe('1200');
    writeFileSync(join(tmp, 'tracer.out'), '');
    writeFileSync(join(tmp, 'tracer.err'), 'produced 431/1200\nstrata: send timed out\n');
    expect(lib('tracer_acked').stdout.trim()).toBe('431');
  });

  it('counts the distinct acknowledged tracer messages read back', () => {
    writeFileSync(join(tmp, 'read.jsonl'), ['{"payload":"drill-seq-1"}', '{"payload":"drill-seq-2"}', '{"payload":"drill-seq-2"}', '{"payload":"drill-seq-9"}', '{"payload":"drill-probe-1"}'].join('\n'));
    expect(lib(`tracer_seen '${tmp}/read.jsonl' 3`).stdout.trim()).toBe('2');
    expect(lib(`tracer_seen '${tmp}/missing.jsonl' 3`).stdout.trim()).toBe('0');
  });

  it('names lost and duplicated tracer messages', () => {
    expect(lib(`printf '1\\n2\\n2\\n4\\n5\\n6\\n' | compare_tracer 5`).stdout.trim()).toBe('1 1 3');
    expect(lib(`printf '1\\n2\\n3\\n' | compare_tracer 3`).stdout.trim()).toBe('0 0 -');
    expect(lib(`printf '' | compare_tracer 2`).stdout.trim()).toBe('2 0 1');
  });

  /**
   * A scripted platform: a "cluster" of files. The owner broker is killed by the fault; produce
   * appends to the topic; consume prints it back, losing LOSE (a tracer number) if set.
   */
  function fakePlatform(dir: string): string {
    const file = join(dir, 'platform-fake.sh');
    writeFileSync(file, `# shellcheck shell=bash
STATE='${dir}'
platform_setup() { echo setup >> "$STATE/calls"; }
platform_teardown() { echo teardown >> "$STATE/calls"; }
platform_cli() {
  echo "cli $*" >> "$STATE/calls"
  case "$1 $2" in
    "admin topics") printf '[\\n  {\\n    "topic": "%s",\\n    "url": "pulsar://10.0.0.%s:6650"\\n  }\\n]\\n' "$4" "$(cat "$STATE/owner")" ;;
    "perf produce") sleep 1; echo '{"type":"summary","durationS":2,"publish":{"messages":400,"bytes":1,"msgPerS":200,"mbPerS":0.2,"errors":0,"latency":{}}}' ;;
    "produce "*)
      if [ -f "$STATE/killed" ] && [ ! -f "$STATE/recovered" ]; then touch "$STATE/recovered"; return 1; fi
      tr ',' '\\n' <<<"$4" >> "$STATE/topic"; echo "$(tr ',' '\\n' <<<"$4" | wc -l) messages successfully produced" ;;
    "consume "*) grep -v "^drill-seq-\${LOSE:-none}\\$" "$STATE/topic" | sed 's/.*/{"payload":"&"}/' ;;
  esac
}
platform_target_of_address() { [ "$1" = "10.0.0.$(cat "$STATE/owner"):6650" ] && echo "broker-$(cat "$STATE/owner")"; }
platform_kill() { echo "kill $1" >> "$STATE/calls"; touch "$STATE/killed"; echo 2 > "$STATE/owner"; }
platform_bookies() { echo bookie-0; echo bookie-1; }
platform_drain_node_of() { echo "drain $1" >> "$STATE/calls"; }
platform_undrain() { :; }
platform_rolling_restart_brokers() { echo restart >> "$STATE/calls"; }
`);
    writeFileSync(join(dir, 'owner'), '1\n');
    writeFileSync(join(dir, 'topic'), '');
    writeFileSync(join(dir, 'calls'), '');
    return file;
  }

  const drillEnv = { LOAD_SECONDS: '2', TRACER_RATE: '5', SETTLE_SECONDS: '0', VERIFY_SECONDS: '5', RECOVERY_TIMEOUT_SECONDS: '10', DRILL_ID: 'test' };

  it('runs a broker-kill drill through the platform seam and reports recovery and no loss', () => {
    const dir = mkdtempSync(join(tmp, 'fake-'));
    const platform = fakePlatform(dir);
    const out = bash(`deploy/k8s/drills/drill.sh --platform '${platform}' broker-kill`, { ...drillEnv, WORK_DIR: dir });
    expect(out.stderr).toContain('owner of persistent://public/default/drill-test is 10.0.0.1:6650 (broker-1): killing it');
    expect(out.status, out.stderr).toBe(0);
    const report = JSON.parse(out.stdout) as Record<string, unknown>;
    expect(report).toMatchObject({ drill: 'broker-kill', target: 'broker-1', perfAcknowledged: 400, perfSendErrors: 0, perfMaxLatencyMs: -1, perfStalledSeconds: 0, tracerAcknowledged: 10, tracerLost: 0, tracerDuplicates: 0, firstLost: '-' });
    expect(report.recoveryMs).toBeGreaterThanOrEqual(0);
    expect(report.readBackMs).toBeGreaterThanOrEqual(0);
    const calls = spawnSync('cat', [join(dir, 'calls')], { encoding: 'utf8' }).stdout;
    expect(calls).toContain('kill broker-1');
    expect(calls.trim().split('\n').at(-1)).toBe('teardown');
  });

  it('fails the drill and names the first lost message when an acknowledged message is missing', () => {
    const dir = mkdtempSync(join(tmp, 'fake-'));
    const platform = fakePlatform(dir);
    const out = bash(`deploy/k8s/drills/drill.sh --platform '${platform}' broker-kill`, { ...drillEnv, WORK_DIR: dir, LOSE: '4' });
    expect(out.status).not.toBe(0);
    expect(JSON.parse(out.stdout)).toMatchObject({ tracerAcknowledged: 10, tracerLost: 1, firstLost: '4', readBackMs: -1 });
  });

  it('uses KILL_CMD instead of the platform kill when set', () => {
    const dir = mkdtempSync(join(tmp, 'fake-'));
    const platform = fakePlatform(dir);
    const killer = join(dir, 'kill.sh');
    writeFileSync(killer, `#!/usr/bin/env bash\ntouch '${dir}/killed-by-cmd-'"$1"\n`, { mode: 0o755 });
    const out = bash(`deploy/k8s/drills/drill.sh --platform '${platform}' bookie-kill`, { ...drillEnv, WORK_DIR: dir, KILL_CMD: killer });
    expect(JSON.parse(out.stdout)).toMatchObject({ drill: 'bookie-kill', target: 'bookie-0' });
    expect(readdirSync(dir)).toContain('killed-by-cmd-bookie-0');
  });
});
