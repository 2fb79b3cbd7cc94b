#!/usr/bin/env node
// Which sends are slow, and when: a diagnostic for publish-latency tails (docs/benchmarks.md).
//
//   node scripts/latency-timeline.mjs <serviceUrl> [rate=10000] [seconds=10] [--json FILE]
//
// Publishes 1 KB messages to a new topic at a fixed rate (1 ms batching, as `strata perf`), times every
// send to its acknowledgement, skips the first 2 s, and prints the percentiles and every 50 ms window
// whose slowest send took over 10 ms, with how many sends in it did. Slow sends spread evenly point at CPU
// scheduling; slow windows a few seconds apart point at something periodic (a flush, a GC cycle).
// Windows are in ms since the first send; `--json` writes every (send time, latency) pair and the wall
// clock of the first send, to line them up with a server's logs.
import { writeFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Client } from '@strata/client';

// `| head` closes stdout early: that is not an error of ours.
process.stdout.on('error', (err) => (err.code === 'EPIPE' ? process.exit(0) : Promise.reject(err)));
const { positionals, values } = parseArgs({ allowPositionals: true, options: { json: { type: 'string' } } });
const [serviceUrl, rateArg = '10000', secondsArg = '10'] = positionals;
if (!serviceUrl) {
  process.stderr.write('usage: node scripts/latency-timeline.mjs <serviceUrl> [rate] [seconds] [--json FILE]\n');
  process.exit(2);
}
const rate = Number(rateArg);
const seconds = Number(secondsArg);
const WARMUP_MS = 2000;
const WINDOW_MS = 50;
const SLOW_MS = 10;

const client = new Client({ serviceUrl });
const producer = await client.createProducer({
  topic: `persistent://public/default/latency-timeline-${Date.now().toString(36)}`,
  batchingEnabled: true, batchingMaxPublishDelayMs: 1, maxPendingMessages: 1000, blockIfQueueFull: true,
});
const payload = Buffer.alloc(1024, 7);
const loopDelay = monitorEventLoopDelay({ resolution: 1 });
loopDelay.enable();
const sentAt = [];
const latency = [];
const start = performance.now();
const startWallMs = performance.timeOrigin + start;
const end = start + WARMUP_MS + seconds * 1000;
const intervalMs = 1000 / rate;
let next = start;
while (performance.now() < end) {
  const now = performance.now();
  if (next > now) {
    await new Promise((resolve) => setTimeout(resolve, next - now));
    continue;
  }
  next = Math.max(next, now - 100) + intervalMs; // catch up at most 100 ms of missed sends
  const t0 = performance.now();
  producer.send({ data: payload }).then(() => {
    sentAt.push(t0 - start);
    latency.push(performance.now() - t0);
  }, (err) => process.stderr.write(`send failed: ${err.message}\n`));
}
await producer.flush();
await producer.close();
await client.close();
loopDelay.disable();

const measured = sentAt.map((t, i) => i).filter((i) => sentAt[i] >= WARMUP_MS);
const sorted = measured.map((i) => latency[i]).sort((a, b) => a - b);
const q = (p) => (sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN).toFixed(2);
process.stdout.write(`${sorted.length} sends at ${rate}/s: publish latency ms p50 ${q(0.5)} p95 ${q(0.95)} p99 ${q(0.99)} p99.9 ${q(0.999)} max ${q(1)}\n`);
process.stdout.write(`this process's event-loop delay ms: p99 ${(loopDelay.percentile(99) / 1e6).toFixed(1)} max ${(loopDelay.max / 1e6).toFixed(1)}\n`);
const windows = new Map();
for (const i of measured) {
  const w = Math.floor(sentAt[i] / WINDOW_MS) * WINDOW_MS;
  const s = windows.get(w) ?? { max: 0, slow: 0 };
  s.max = Math.max(s.max, latency[i]);
  if (latency[i] > SLOW_MS) s.slow++;
  windows.set(w, s);
}
const slow = [...windows].filter(([, s]) => s.max > SLOW_MS);
process.stdout.write(`${slow.length} of ${windows.size} windows of ${WINDOW_MS} ms had a send over ${SLOW_MS} ms (start ms: slowest ms / sends over ${SLOW_MS} ms):\n`);
process.stdout.write(`${slow.map(([w, s]) => `${w}: ${s.max.toFixed(0)}/${s.slow}`).join('  ')}\n`);
if (values.json) writeFileSync(values.json, JSON.stringify({ startWallMs, sentAtMs: sentAt, latencyMs: latency }));
