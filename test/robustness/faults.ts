/**
 * Fault schedules for the robustness scenarios (docs/robustness.md): each scenario draws its timings
 * and targets from a Random seeded by STRATA_SEED and the scenario's name, and prints the schedule
 * before running it, so that `STRATA_SEED=<n> npx vitest run test/cluster-robustness.test.ts` replays it.
 */
import { Random } from '@strata/runtime';
import { adminCall, until, type BundleInfo } from '../harness/admin.js';
import type { Cluster, ClusterNode } from '../harness/cluster.js';

/** One action at `atMs` after the load started. */
export interface FaultStep {
  atMs: number;
  description: string;
  run(): Promise<void>;
}

let base: number | undefined;

/** The run's seed: STRATA_SEED if set, else a fresh one (printed by the caller). */
export function baseSeed(): number {
  if (base === undefined) {
    const env = process.env.STRATA_SEED;
    if (env !== undefined && env !== '') {
      base = Number(env);
      if (!Number.isInteger(base) || base < 0 || base > 0xffffffff) throw new RangeError(`STRATA_SEED must be an integer in [0, 2^32), got ${env}`);
    } else {
      base = Math.floor(Math.random() * 0x100000000);
    }
  }
  return base;
}

/** FNV-1a of the seed and the scenario name: one scenario's schedule does not depend on which others run. */
export function scenarioSeed(name: string): number {
  let h = 0x811c9dc5;
  for (const ch of `${baseSeed()}:${name}`) {
    h ^= ch.charCodeAt(0);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

export function scenarioRandom(name: string): Random {
  return new Random(scenarioSeed(name));
}

export function describeSchedule(steps: readonly FaultStep[]): string {
  return steps.map((s) => `  +${(s.atMs / 1000).toFixed(2)}s ${s.description}`).join('\n');
}

/**
 * Runs the steps in order, each no earlier than its offset from `startedAt` (a step that takes long,
 * like a restart waiting for readiness, delays the ones after it). Resolves with the time the last
 * step finished: the moment the cluster is whole again. `startedSteps` receives each step's start time.
 */
export async function runSchedule(steps: readonly FaultStep[], startedAt: number, log: (line: string) => void, startedSteps: number[] = []): Promise<number> {
  for (const step of steps) {
    const wait = startedAt + step.atMs - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const t0 = Date.now();
    startedSteps.push(t0);
    await step.run();
    log(`  done +${((Date.now() - startedAt) / 1000).toFixed(2)}s (${Date.now() - t0} ms) ${step.description}`);
  }
  return Date.now();
}

async function bookieAddsOk(node: ClusterNode): Promise<number> {
  try {
    const text = await (await fetch(`${node.httpUrl}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
    const line = text.split('\n').find((l) => l.startsWith('bookie_adds_total{') && l.includes('result="ok"'));
    return line ? Number(line.split(' ').pop()) : 0;
  } catch {
    return -1;
  }
}

/**
 * A bookie that is taking adds right now (so it is in the ensemble of an open ledger: the topic's,
 * under this load), chosen by `choice` among those, in index order. Two metric scrapes a second apart.
 */
export async function activeBookie(cluster: Cluster, choice: number): Promise<ClusterNode> {
  const running = cluster.bookies.filter((b) => b.running);
  const before = await Promise.all(running.map(bookieAddsOk));
  await new Promise((r) => setTimeout(r, 1000));
  const after = await Promise.all(running.map(bookieAddsOk));
  const active = running.filter((_, i) => (after[i] ?? 0) > (before[i] ?? 0));
  const from = active.length > 0 ? active : running;
  return from[choice % from.length] as ClusterNode;
}

export type Log = (line: string) => void;

/**
 * The broker that owns the topic's bundle now, asked of the running brokers' Admin `LookupBundle` (the
 * service behind `strata admin bundles list`) and confirmed by that broker itself (it claims a bundle
 * only while it holds it with a live session; another's cache may still show a dead owner's record,
 * and a broker restarted on the same address is not the owner its old session was). Waits (up to
 * `timeoutMs`) while nobody running claims it.
 */
export async function topicOwner(cluster: Cluster, topic: string, timeoutMs = 60_000): Promise<{ node: ClusterNode; bundle: BundleInfo }> {
  const lookup = (node: ClusterNode) => adminCall<BundleInfo>(node.address, 'LookupBundle', { topic }, 5_000).catch(() => undefined);
  return until(`a running owner of ${topic}`, async () => {
    for (const broker of cluster.brokers.filter((b) => b.running)) {
      const answer = await lookup(broker);
      const node = cluster.brokers.find((b) => b.address === answer?.ownerUrl && b.running);
      if (!node) continue;
      const own = node === broker ? answer : await lookup(node);
      if (own?.ownerUrl === node.address) return { node, bundle: own };
    }
    return undefined;
  }, timeoutMs, 200);
}

/** Logs which broker owns the topic now (or that none does within 30 s): where a fault moved it. */
function ownerNowStep(cluster: Cluster, topic: string, log: Log, atMs: number): FaultStep {
  return {
    atMs, description: 'report the topic\'s owner',
    run: async () => {
      const owner = await topicOwner(cluster, topic, 30_000).catch(() => undefined);
      log(`  owner now: ${owner ? `broker-${owner.node.index} (${owner.node.address})` : 'none running within 30 s'}`);
    },
  };
}

/**
 * kill -9 the broker that owns the topic (found when the step runs), restart it after a pause. With
 * several brokers the bundle goes to another one once the dead owner's session ends (revoked by the
 * coordinator's liveness probe, or expired), or back to the restarted one; the clients must follow it,
 * losing nothing acknowledged.
 */
export function ownerBrokerKill(cluster: Cluster, topic: string, rng: Random, log: Log): FaultStep[] {
  const at = rng.int(1500, 3000);
  const down = rng.int(500, 2500);
  let victim: ClusterNode | undefined;
  return [
    {
      atMs: at, description: 'kill -9 the owner broker of the topic',
      run: async () => {
        victim = (await topicOwner(cluster, topic)).node;
        log(`  owner: broker-${victim.index} (${victim.address})`);
        await victim.kill();
      },
    },
    { atMs: at + down, description: 'restart that broker', run: async () => victim?.restart() },
    ownerNowStep(cluster, topic, log, at + down),
  ];
}

/** kill -9 broker-0 (the only one, in a 1-broker cluster), restart it after a pause. With several, ownerBrokerKill. */
export function brokerKill(cluster: Cluster, rng: Random): FaultStep[] {
  const at = rng.int(1500, 3000);
  const down = rng.int(500, 2500);
  const broker = cluster.brokers[0]!;
  return [
    { atMs: at, description: `kill -9 broker-${broker.index}`, run: () => broker.kill() },
    { atMs: at + down, description: `restart broker-${broker.index}`, run: () => broker.restart() },
  ];
}

/** SIGTERM the broker (graceful), start it again after a pause. */
export function brokerGracefulRestart(cluster: Cluster, rng: Random): FaultStep[] {
  const at = rng.int(1500, 3000);
  const down = rng.int(200, 1500);
  const broker = cluster.brokers[0]!;
  return [
    { atMs: at, description: `SIGTERM broker-${broker.index} (graceful stop)`, run: () => broker.stop() },
    { atMs: at + down, description: `start broker-${broker.index}`, run: () => broker.restart() },
  ];
}

/** kill -9 a bookie taking adds (the ledger must change its ensemble), restart it later. */
export function bookieKill(cluster: Cluster, rng: Random, log: Log): FaultStep[] {
  const at = rng.int(1500, 3000);
  const down = rng.int(2000, 4000);
  const choice = rng.int(0, 1000);
  let victim: ClusterNode | undefined;
  return [
    {
      atMs: at, description: `kill -9 active bookie #${choice} (mod the bookies taking adds)`,
      run: async () => {
        victim = await activeBookie(cluster, choice);
        log(`  victim: bookie-${victim.index} (${victim.address})`);
        await victim.kill();
      },
    },
    { atMs: at + down, description: 'restart that bookie', run: async () => victim?.restart() },
  ];
}

/**
 * SIGSTOP a bookie taking adds (a long GC pause or a stalled disk), then SIGCONT. The pause outlasts
 * the ledger client's add timeout (5 s by default), so the writer must declare the bookie failed and
 * change the ensemble rather than wait; then the bookie wakes up with stale streams.
 */
export function bookiePause(cluster: Cluster, rng: Random, log: Log): FaultStep[] {
  const at = rng.int(1500, 3000);
  const paused = rng.int(6000, 8000);
  const choice = rng.int(0, 1000);
  let victim: ClusterNode | undefined;
  return [
    {
      atMs: at, description: `SIGSTOP active bookie #${choice} (mod the bookies taking adds)`,
      run: async () => {
        victim = await activeBookie(cluster, choice);
        log(`  victim: bookie-${victim.index} (${victim.address})`);
        victim.pause();
      },
    },
    { atMs: at + paused, description: 'SIGCONT that bookie', run: async () => victim?.resume() },
  ];
}

/** kill -9 one member of a 3-member etcd cluster (quorum holds), restart it later. */
export function etcdMemberKill(cluster: Cluster, rng: Random): FaultStep[] {
  const at = rng.int(1500, 3000);
  const down = rng.int(2000, 4000);
  const member = cluster.etcdMembers[rng.int(0, cluster.etcdMembers.length)]!;
  return [
    { atMs: at, description: `kill -9 etcd member ${member.index}`, run: () => member.kill() },
    { atMs: at + down, description: `restart etcd member ${member.index}`, run: () => member.restart() },
  ];
}

/**
 * `n` rounds of a scenario's faults, one after the other (a round's first step comes 1.5-3 s after the
 * previous round's last one, as drawn by the builder). The long form of the suite runs several.
 */
export function rounds(n: number, rng: Random, make: (rng: Random) => FaultStep[]): FaultStep[] {
  const out: FaultStep[] = [];
  let offset = 0;
  for (let i = 0; i < n; i++) {
    const steps = make(rng);
    for (const s of steps) out.push({ ...s, atMs: s.atMs + offset, description: n > 1 ? `[round ${i + 1}] ${s.description}` : s.description });
    offset += Math.max(0, ...steps.map((s) => s.atMs));
  }
  return out;
}

/**
 * kill -9 a bookie taking adds, and while it is down kill -9 the broker too, 0-1.5 s later: before or
 * after the writer changed the ensemble, so the new broker recovers the ledger with a bookie of its
 * last ensemble missing, or with the changed ensemble in its metadata.
 */
export function bookieThenBrokerKill(cluster: Cluster, rng: Random, log: Log): FaultStep[] {
  const [killBookie, restartBookie] = bookieKill(cluster, rng, log) as [FaultStep, FaultStep];
  const broker = cluster.brokers[0]!;
  const brokerAt = killBookie.atMs + rng.int(0, 1500);
  const brokerDown = rng.int(500, 1500);
  return [
    killBookie,
    { atMs: brokerAt, description: `kill -9 broker-${broker.index}`, run: () => broker.kill() },
    { atMs: brokerAt + brokerDown, description: `restart broker-${broker.index}`, run: () => broker.restart() },
    { ...restartBookie, atMs: Math.max(restartBookie.atMs, brokerAt + brokerDown + 1000) },
  ];
}

/**
 * SIGSTOP the broker past its metadata session (its registration expires: `sessionTtlMs`, 10 s by
 * default), then SIGCONT: the broker must notice it lost its session and recover without losing or
 * duplicating what it had acknowledged.
 */
export function brokerPausePastSession(cluster: Cluster, rng: Random, sessionTtlMs: number, log: Log): FaultStep[] {
  const at = rng.int(1500, 3000);
  const paused = sessionTtlMs + rng.int(1000, 3000);
  const broker = cluster.brokers[0]!;
  return [
    { atMs: at, description: `SIGSTOP broker-${broker.index} for ${paused} ms (session TTL ${sessionTtlMs} ms)`, run: async () => broker.pause() },
    { atMs: at + paused, description: `SIGCONT broker-${broker.index}`, run: async () => broker.resume() },
    {
      // Reported, not asserted (docs/robustness.md "Findings"): the broker does not register again.
      atMs: at + paused + 3000, description: `probe broker-${broker.index} /readyz`,
      run: async () => log(`  broker-${broker.index} /readyz after its session was lost: ${(await isReady(broker)) ? 'ready' : 'NOT ready'}`),
    },
  ];
}

/**
 * SIGSTOP the owner of the topic past its metadata session (`sessionTtlMs`, the broker's default 3 s
 * unless the cluster sets another), then SIGCONT. Another broker takes the bundle while it sleeps;
 * woken up, the old owner must see by its own clock that its session is gone and stop serving (fencing
 * refuses its writes anyway; the history shows whether anything slipped through). Checked here: no
 * overlap of claims (watchClaims) and, where the node's output is kept, that it logged the loss.
 */
export function ownerBrokerPausePastSession(cluster: Cluster, topic: string, rng: Random, log: Log, options: { sessionTtlMs?: number; pausedMs?: number } = {}): FaultStep[] {
  const sessionTtlMs = options.sessionTtlMs ?? 3_000;
  const at = rng.int(1500, 3000);
  const drawn = sessionTtlMs + rng.int(1000, 3000);
  const paused = options.pausedMs ?? drawn;
  let victim: ClusterNode | undefined;
  let claims: ReturnType<typeof watchClaims> | undefined;
  let pausedAt = 0;
  return [
    {
      atMs: at, description: `SIGSTOP the owner broker of the topic for ${paused} ms (session TTL ${sessionTtlMs} ms)`,
      run: async () => {
        victim = (await topicOwner(cluster, topic)).node;
        log(`  owner: broker-${victim.index} (${victim.address})`);
        pausedAt = Date.now();
        victim.pause();
        claims = watchClaims(cluster, topic, victim);
      },
    },
    { atMs: at + paused, description: 'SIGCONT that broker', run: async () => victim?.resume() },
    {
      atMs: at + paused + 3000, description: 'check: it noticed its session was lost, and never claimed the bundle alongside its successor',
      run: async () => {
        if (!victim) return;
        const overlap = await claims?.stop();
        log(`  broker-${victim.index} /readyz 3 s after SIGCONT: ${(await isReady(victim)) ? 'ready' : 'NOT ready'}`);
        if (overlap) throw new Error(`two owners at once: ${overlap}`);
        if (victim.recentOutput !== undefined && loggedAt(victim, 'metadata session lost', pausedAt) === undefined) {
          throw new Error(`broker-${victim.index} never logged "metadata session lost" after a pause past its session`);
        }
      },
    },
    ownerNowStep(cluster, topic, log, at + paused + 3000),
  ];
}

/**
 * Graceful unload of the topic's bundle through the Admin API (what `strata admin bundles unload` does),
 * asked of a running broker that need not be the owner: the owner closes the bundle's topics telling
 * clients where it went, the bundle goes to another live broker, the clients follow the redirect.
 * Checked here: with another broker running, the bundle has a new owner within 30 s.
 */
export function gracefulUnload(cluster: Cluster, topic: string, rng: Random, log: Log): FaultStep[] {
  const at = rng.int(1500, 3000);
  const ask = rng.int(0, 1000);
  let before: ClusterNode | undefined;
  return [
    {
      atMs: at, description: `unload the topic's bundle (admin API, asked of running broker #${ask} mod the running ones)`,
      run: async () => {
        const { node, bundle } = await topicOwner(cluster, topic);
        before = node;
        const running = cluster.brokers.filter((b) => b.running);
        const via = running[ask % running.length]!;
        log(`  bundle ${bundle.namespace}/${bundle.range} owned by broker-${node.index}; unload asked of broker-${via.index}`);
        await adminCall(via.address, 'UnloadBundle', { namespace: bundle.namespace, range: bundle.range });
      },
    },
    {
      atMs: at, description: 'check: the bundle moved to another broker',
      run: async () => {
        if (!before || cluster.brokers.filter((b) => b.running).length < 2) return;
        const from = before;
        const after = await until(`a new owner of ${topic}`, async () => {
          const owner = await topicOwner(cluster, topic, 5_000).catch(() => undefined);
          return owner && owner.node !== from ? owner.node : undefined;
        }, 30_000, 200);
        log(`  owner now: broker-${after.index} (${after.address})`);
      },
    },
  ];
}

/**
 * Rolling restart of every broker, one by one, under load: SIGTERM (the broker drains: its bundles go to
 * the others), start it again on the same ports, wait until /readyz answers, pause, next. The order is
 * drawn from the seed; the topic's owner is logged before each stop.
 */
export function rollingRestart(cluster: Cluster, topic: string, rng: Random, log: Log): FaultStep[] {
  const order = cluster.brokers.map((b) => b);
  for (let i = order.length - 1; i > 0; i--) {
    const j = rng.int(0, i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  let atMs = rng.int(1500, 3000);
  const steps: FaultStep[] = [];
  for (const broker of order) {
    steps.push({
      atMs, description: `SIGTERM broker-${broker.index} (drain), start it again, wait until ready`,
      run: async () => {
        const owner = await topicOwner(cluster, topic, 30_000).catch(() => undefined);
        log(`  owner before: ${owner ? `broker-${owner.node.index}` : 'none running'}`);
        await broker.stop();
        await broker.restart();
      },
    });
    atMs += rng.int(500, 2000);
  }
  steps.push(ownerNowStep(cluster, topic, log, atMs));
  return steps;
}

/**
 * kill -9 a bookie taking adds, and while it is down kill -9 the topic's owner broker too, 0-1.5 s
 * later (bookieThenBrokerKill, aimed at the owner among several brokers).
 */
export function bookieThenOwnerKill(cluster: Cluster, topic: string, rng: Random, log: Log): FaultStep[] {
  const [killBookie, restartBookie] = bookieKill(cluster, rng, log) as [FaultStep, FaultStep];
  const brokerAt = killBookie.atMs + rng.int(0, 1500);
  const brokerDown = rng.int(500, 1500);
  // ownerBrokerKill's own timings (drawn after these) are replaced by the ones above.
  const [killOwner, restartOwner] = ownerBrokerKill(cluster, topic, rng, log) as [FaultStep, FaultStep];
  return [
    killBookie,
    { ...killOwner, atMs: brokerAt },
    { ...restartOwner, atMs: brokerAt + brokerDown },
    { ...restartBookie, atMs: Math.max(restartBookie.atMs, brokerAt + brokerDown + 1000) },
  ];
}

/** The coordinator that leads now (its /metrics says strata_coordinator_is_leader 1). */
export async function leadingCoordinator(cluster: Cluster, timeoutMs = 15_000): Promise<ClusterNode> {
  return until(`a leading coordinator among ${cluster.coordinators.length}`, async () => {
    for (const node of cluster.coordinators) {
      if (!node.running) continue;
      const text = await fetch(`${node.httpUrl}/metrics`, { signal: AbortSignal.timeout(2_000) }).then((r) => r.text()).catch(() => '');
      if (/strata_coordinator_is_leader\{[^}]*\} 1\b/.test(text)) return node;
    }
    return undefined;
  }, timeoutMs);
}

/**
 * kill -9 the leading coordinator and the topic's owner broker at the same moment (issue 21, item 2),
 * restart both later. The standby coordinator must take over the leader's duties (the dead owner's
 * bundles are assigned again) within the session TTL, and the clients follow, losing nothing acknowledged.
 */
export function leaderCoordinatorAndOwnerKill(cluster: Cluster, topic: string, rng: Random, log: Log): FaultStep[] {
  const at = rng.int(1500, 3000);
  const down = rng.int(1500, 3000);
  let coordinator: ClusterNode | undefined;
  let owner: ClusterNode | undefined;
  return [
    {
      atMs: at, description: 'kill -9 the leading coordinator and the owner broker together',
      run: async () => {
        [coordinator, owner] = await Promise.all([leadingCoordinator(cluster), topicOwner(cluster, topic).then((o) => o.node)]);
        log(`  leader: coordinator-${coordinator.index}; owner: broker-${owner.index} (${owner.address})`);
        await Promise.all([coordinator.kill(), owner.kill()]);
      },
    },
    { atMs: at + down, description: 'restart both', run: async () => { await Promise.all([coordinator?.restart(), owner?.restart()]); } },
    ownerNowStep(cluster, topic, log, at + down),
  ];
}

/**
 * Cuts the topic's owner broker off every etcd member (both directions; the cluster's `cutFromEtcd`,
 * iptables on loopback for processes) for longer than its session TTL, then heals. The owner must drop
 * its bundles when its session lapses by its own clock (before the lease expires on the server, so
 * before another broker can take them); the bundle moves and the clients follow, nothing acknowledged
 * lost. Checked here: no overlap of claims (watchClaims) and, where the node's output is kept, that it
 * logged the loss before anyone else claimed the bundle. Throws when the cluster cannot cut (check
 * `cluster.cutFromEtcdUnavailable` first).
 */
export function brokerEtcdCut(cluster: Cluster, topic: string, rng: Random, log: Log, options: { sessionTtlMs?: number; cutMs?: number } = {}): FaultStep[] {
  const sessionTtlMs = options.sessionTtlMs ?? 3_000;
  const at = rng.int(1500, 3000);
  const drawn = sessionTtlMs + rng.int(2000, 4000);
  // A fixed length (the long form's long partitions) still draws, so the rest of the schedule is the seed's.
  const cut = options.cutMs ?? drawn;
  let heal: (() => Promise<void>) | undefined;
  let victim: ClusterNode | undefined;
  let claims: ReturnType<typeof watchClaims> | undefined;
  let cutAt = 0;
  return [
    {
      atMs: at, description: `cut the owner broker of the topic off every etcd member for ${cut} ms (session TTL ${sessionTtlMs} ms)`,
      run: async () => {
        if (!cluster.cutFromEtcd) throw new Error(`this cluster cannot cut a broker off etcd: ${cluster.cutFromEtcdUnavailable?.() ?? 'no cutFromEtcd'}`);
        victim = (await topicOwner(cluster, topic)).node;
        log(`  owner: broker-${victim.index} (${victim.address})`);
        cutAt = Date.now();
        heal = await cluster.cutFromEtcd(victim);
        claims = watchClaims(cluster, topic, victim);
      },
    },
    {
      atMs: at + cut, description: 'heal the cut; check: the owner noticed its session was lost, and never claimed the bundle alongside its successor',
      run: async () => {
        const overlap = await claims?.stop();
        await heal?.();
        heal = undefined;
        if (!victim) return;
        if (overlap) throw new Error(`two owners at once: ${overlap}`);
        const lostAt = loggedAt(victim, 'metadata session lost', cutAt);
        log(`  broker-${victim.index} logged its session lost ${lostAt === undefined ? 'never (or its output is not kept)' : `${lostAt - cutAt} ms into the cut`}`);
        if (victim.recentOutput !== undefined && lostAt === undefined) {
          throw new Error(`broker-${victim.index} never logged "metadata session lost" while cut off etcd past its session TTL`);
        }
      },
    },
    ownerNowStep(cluster, topic, log, at + cut),
    {
      atMs: at + cut + 3000, description: 'probe that broker\'s /readyz',
      run: async () => {
        if (victim) log(`  broker-${victim.index} /readyz 3 s after the heal: ${(await isReady(victim)) ? 'ready' : 'NOT ready'}`);
      },
    },
  ];
}

/**
 * Watches which brokers claim the topic's bundle (each running broker's own `LookupBundle` answer, every
 * 100 ms) while a fault keeps `victim` away from etcd, to check that the victim stopped claiming it
 * before another broker claimed it. A claim is timed conservatively: the victim's at the request's
 * send time (it was answered no earlier), another's at the reply's arrival (no later); so an overlap
 * reported is a real one, whatever the machine's load.
 */
export function watchClaims(cluster: Cluster, topic: string, victim: ClusterNode): { stop(): Promise<string | undefined> } {
  let running = true;
  let victimLastClaimSentAt = 0;
  let otherFirstClaim: { at: number; by: ClusterNode } | undefined;
  const loops = cluster.brokers.map(async (broker) => {
    while (running) {
      const sentAt = Date.now();
      const info = await adminCall<BundleInfo>(broker.address, 'LookupBundle', { topic }, 1_000).catch(() => undefined);
      const claims = info?.ownerUrl === broker.address;
      if (claims && broker === victim) victimLastClaimSentAt = Math.max(victimLastClaimSentAt, sentAt);
      if (claims && broker !== victim && !otherFirstClaim) otherFirstClaim = { at: Date.now(), by: broker };
      await new Promise((r) => setTimeout(r, 100));
    }
  });
  return {
    /** Undefined when no overlap was seen; else what overlapped, for the failure message. */
    async stop() {
      running = false;
      await Promise.all(loops);
      const other = otherFirstClaim;
      if (!other || victimLastClaimSentAt <= other.at) return undefined;
      return `broker-${victim.index} still claimed the topic's bundle at ${new Date(victimLastClaimSentAt).toISOString()} (or later), `
        + `after broker-${other.by.index} claimed it at ${new Date(other.at).toISOString()} (or earlier)`;
    },
  };
}

/** The time of the first `message` line the node logged at or after `since` (pino JSON, ISO time), if its output is kept. */
function loggedAt(node: ClusterNode, message: string, since: number): number | undefined {
  for (const line of (node.recentOutput ?? '').split('\n')) {
    if (!line.includes(message)) continue;
    const t = Date.parse(/"time":"([^"]+)"/.exec(line)?.[1] ?? '');
    if (t >= since) return t;
  }
  return undefined;
}

/** Whether the node's /readyz answers 200 now. */
export async function isReady(node: ClusterNode): Promise<boolean> {
  try {
    return (await fetch(`${node.httpUrl}/readyz`, { signal: AbortSignal.timeout(5_000) })).status === 200;
  } catch {
    return false;
  }
}

/**
 * Brings every node back before a scenario, so that one that failed half-way does not leave the next a
 * broken cluster. With `restartUnready`, a running node that is not ready (e.g. a broker that lost its
 * session) is restarted too.
 */
export async function healCluster(cluster: Cluster, options: { restartUnready?: boolean } = {}): Promise<void> {
  await cluster.healCuts?.();
  for (const m of cluster.etcdMembers) if (!m.running) await m.restart();
  for (const node of [...cluster.bookies, ...cluster.coordinators, ...cluster.brokers]) {
    node.resume();
    if (options.restartUnready && node.running && !(await isReady(node))) await node.stop();
    if (!node.running) await node.restart();
  }
}
