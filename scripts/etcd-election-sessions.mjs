#!/usr/bin/env node
// Do metadata sessions survive an etcd leader election? A diagnostic for the session-TTL trade-off
// (docs/robustness.md, "What is left"; decisions 0014 and 0064).
//
//   npm run build && node scripts/etcd-election-sessions.mjs [kill|pause] [rounds=4] [ttlMs,...=3000,6000]
//
// Starts a 3-member etcd cluster (real processes, free ports, own temp dirs), and for each TTL and round:
// opens a session through the two members that do not lead Raft, SIGKILLs (or SIGSTOPs) the leader, waits
// TTL + 3 s, prints whether the session was lost and when, then brings the member back.
import { createMetadataStore } from '@strata/coordinator';
import { EtcdCluster } from '@strata/coordinator/testing';
import { silentLogger, sleep } from '@strata/runtime';

const [mode = 'kill', roundsArg = '4', ttlsArg = '3000,6000'] = process.argv.slice(2);
if (!['kill', 'pause'].includes(mode)) {
  process.stderr.write('usage: node scripts/etcd-election-sessions.mjs [kill|pause] [rounds] [ttlMs,...]\n');
  process.exit(2);
}
const rounds = Number(roundsArg);

async function leaderOf(etcd) {
  for (let i = 0; i < 50; i++) {
    const leader = await etcd.leaderIndex();
    if (leader !== undefined) return leader;
    await sleep(100);
  }
  throw new Error('no etcd leader after 5 s');
}

const etcd = await EtcdCluster.start({ members: 3 });
try {
  for (const ttlMs of ttlsArg.split(',').map(Number)) {
    let lost = 0;
    for (let r = 0; r < rounds; r++) {
      const leader = await leaderOf(etcd);
      const others = [0, 1, 2].filter((i) => i !== leader);
      const store = await createMetadataStore(etcd.urlOf(...others), { logger: silentLogger(), cluster: `elections-${Date.now()}` });
      const session = await store.createSession({ ttlMs });
      let lostAfterMs;
      const faultAt = { ms: 0 };
      session.signal.addEventListener('abort', () => { lostAfterMs = Date.now() - faultAt.ms; });
      await sleep(1_000);
      faultAt.ms = Date.now();
      if (mode === 'kill') await etcd.kill(leader);
      else etcd.pause(leader);
      await sleep(ttlMs + 3_000);
      process.stdout.write(`ttl ${ttlMs} ms, round ${r + 1}: leader (member ${leader}) ${mode === 'kill' ? 'killed' : 'paused'}; `
        + `session ${lostAfterMs === undefined ? 'kept' : `lost ${lostAfterMs} ms after`}; new leader member ${await etcd.leaderIndex()}\n`);
      if (lostAfterMs !== undefined) lost++;
      if (mode === 'kill') await etcd.restart(leader);
      else etcd.resume(leader);
      await etcd.waitHealthy(leader);
      await sleep(2_000);
      await store.close().catch(() => undefined);
    }
    process.stdout.write(`ttl ${ttlMs} ms: session lost in ${lost} of ${rounds} leader ${mode === 'kill' ? 'kills' : 'pauses'}\n`);
  }
} finally {
  await etcd.stop();
}
