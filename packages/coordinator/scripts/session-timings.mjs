#!/usr/bin/env node
/* eslint-disable no-console -- a measurement script prints its results */
// Measures the session timings the contract promises, against a real single-member etcd:
// - a SIGKILLed holder's session key vanishing (promise: within TTL + 1 s),
// - session loss noticed by the holder after SIGSTOP of etcd (promise: before TTL).
// Usage (after `npx tsc -b packages/coordinator`): node packages/coordinator/scripts/session-timings.mjs [rounds] [ttlMs]
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createMetadataStore } from '@strata/coordinator';
import { EtcdCluster } from '@strata/coordinator/testing';
import { silentLogger } from '@strata/runtime';

const rounds = Number(process.argv[2] ?? 10);
const ttlMs = Number(process.argv[3] ?? 2000);
const holderScript = join(dirname(fileURLToPath(import.meta.url)), '..', 'test', 'fixtures', 'session-holder.mjs');
const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return `min ${s[0]} ms, median ${s[Math.floor(s.length / 2)]} ms, max ${s[s.length - 1]} ms (n=${s.length})`;
};

const etcd = await EtcdCluster.start({ members: 1 });
const store = await createMetadataStore(etcd.url, { logger: silentLogger(), cluster: 'timings' });
try {
  const vanish = [];
  for (let i = 0; i < rounds; i++) {
    const key = `timings/${i}`;
    const child = spawn(process.execPath, [holderScript, etcd.url, 'timings', key, String(ttlMs)], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise((resolve) => createInterface({ input: child.stdout }).on('line', (l) => l.startsWith('READY') && resolve()));
    await new Promise((r) => setTimeout(r, Math.random() * ttlMs)); // a random phase of the keep-alive cycle
    const exited = new Promise((r) => child.once('exit', r));
    const t0 = Date.now();
    child.kill('SIGKILL');
    await exited;
    while ((await store.get(key)) !== undefined) await new Promise((r) => setTimeout(r, 10));
    vanish.push(Date.now() - t0);
  }
  console.log(`ttl ${ttlMs} ms: SIGKILLed holder's key gone after: ${stats(vanish)}`);

  const lost = [];
  for (let i = 0; i < Math.min(rounds, 5); i++) {
    const session = await store.createSession({ ttlMs });
    await new Promise((r) => setTimeout(r, Math.random() * ttlMs));
    const t0 = Date.now();
    etcd.pause(0);
    await new Promise((r) => session.signal.addEventListener('abort', r));
    lost.push(Date.now() - t0);
    etcd.resume(0);
    await new Promise((r) => setTimeout(r, 500));
  }
  console.log(`ttl ${ttlMs} ms: session lost after SIGSTOP of etcd: ${stats(lost)}`);
} finally {
  await store.close();
  await etcd.stop();
}
