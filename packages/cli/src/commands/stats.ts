/**
 * Counting and reporting for `strata perf`: HDR histograms of latency (recorded in microseconds, reported
 * in milliseconds), per-interval rates, and the text/JSON forms of the periodic line and the final summary.
 * Pure apart from the histogram library: time comes in as arguments.
 */
import * as hdr from 'hdr-histogram-js';

/** Latencies above one hour are clamped to it (and still counted). */
const HIGHEST_US = 3_600_000_000;

export class LatencyHistogram {
  private readonly h: hdr.Histogram = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: HIGHEST_US,
    numberOfSignificantValueDigits: 3,
    useWebAssembly: false,
  });

  recordMicros(us: number): void {
    this.h.recordValue(Math.min(HIGHEST_US, Math.max(1, Math.round(us))));
  }

  get count(): number {
    return this.h.totalCount;
  }

  add(other: LatencyHistogram): void {
    this.h.add(other.h);
  }

  reset(): void {
    this.h.reset();
  }

  summary(): LatencySummary {
    const ms = (us: number): number => round3(us / 1000);
    if (this.h.totalCount === 0) return { count: 0, avgMs: 0, p50Ms: 0, p75Ms: 0, p95Ms: 0, p99Ms: 0, p999Ms: 0, p9999Ms: 0, maxMs: 0 };
    return {
      count: this.h.totalCount,
      avgMs: ms(this.h.mean),
      p50Ms: ms(this.h.getValueAtPercentile(50)),
      p75Ms: ms(this.h.getValueAtPercentile(75)),
      p95Ms: ms(this.h.getValueAtPercentile(95)),
      p99Ms: ms(this.h.getValueAtPercentile(99)),
      p999Ms: ms(this.h.getValueAtPercentile(99.9)),
      p9999Ms: ms(this.h.getValueAtPercentile(99.99)),
      maxMs: ms(this.h.maxValue),
    };
  }

  /** HdrHistogram's classic percentile distribution, values in milliseconds. */
  distribution(): string {
    if (this.h.totalCount === 0) return '(no samples)\n';
    return this.h.outputPercentileDistribution(5, 1000);
  }
}

export interface LatencySummary {
  count: number;
  avgMs: number;
  p50Ms: number;
  p75Ms: number;
  p95Ms: number;
  p99Ms: number;
  p999Ms: number;
  p9999Ms: number;
  maxMs: number;
}

export interface RateReport {
  messages: number;
  bytes: number;
  msgPerS: number;
  mbPerS: number;
  errors: number;
  latency: LatencySummary;
}

export interface IntervalReport {
  type: 'interval';
  elapsedS: number;
  intervalS: number;
  publish?: RateReport;
  consume?: RateReport;
  /** Messages published but not yet consumed, summed over subscriptions (when both sides run here). */
  backlog?: number;
}

export interface SummaryReport {
  type: 'summary';
  durationS: number;
  publish?: RateReport;
  consume?: RateReport;
}

/** Which sides a meter reports: a producer-only run has no consume numbers and vice versa. */
export interface MeterSides {
  publish: boolean;
  consume: boolean;
  /** Subscriptions that each receive every message (for the backlog); 0 when consuming is not measured. */
  subscriptions: number;
}

interface Window {
  sent: number;
  sentBytes: number;
  sendErrors: number;
  received: number;
  receivedBytes: number;
  publishLatency: LatencyHistogram;
  e2eLatency: LatencyHistogram;
}

function emptyWindow(): Window {
  return { sent: 0, sentBytes: 0, sendErrors: 0, received: 0, receivedBytes: 0, publishLatency: new LatencyHistogram(), e2eLatency: new LatencyHistogram() };
}

/**
 * Counts sends and receives into two windows: the current report interval and the whole measured run
 * (from the end of warm-up). Backlog counts everything since the start, warm-up included.
 */
export class PerfMeter {
  private current = emptyWindow();
  private total = emptyWindow();
  private startedMs: number;
  private readonly runStartMs: number;
  private lastReportMs: number;
  private sentEver = 0;
  private receivedEver = 0;

  constructor(private readonly sides: MeterSides, nowMs: number) {
    this.startedMs = nowMs;
    this.runStartMs = nowMs;
    this.lastReportMs = nowMs;
  }

  recordSend(bytes: number, latencyUs: number): void {
    this.sentEver++;
    for (const w of [this.current, this.total]) {
      w.sent++;
      w.sentBytes += bytes;
      w.publishLatency.recordMicros(latencyUs);
    }
  }

  recordSendError(): void {
    this.current.sendErrors++;
    this.total.sendErrors++;
  }

  /** `e2eUs` undefined when the message carries no usable send time. */
  recordReceive(bytes: number, e2eUs: number | undefined): void {
    this.receivedEver++;
    for (const w of [this.current, this.total]) {
      w.received++;
      w.receivedBytes += bytes;
      if (e2eUs !== undefined) w.e2eLatency.recordMicros(e2eUs);
    }
  }

  /** Ends warm-up: the summary covers only what happens from now on. */
  restartTotals(nowMs: number): void {
    this.total = emptyWindow();
    this.startedMs = nowMs;
  }

  get totalSent(): number {
    return this.total.sent;
  }

  get totalReceived(): number {
    return this.total.received;
  }

  takeInterval(nowMs: number): IntervalReport {
    const intervalS = Math.max(1e-3, (nowMs - this.lastReportMs) / 1000);
    const w = this.current;
    this.current = emptyWindow();
    this.lastReportMs = nowMs;
    return {
      type: 'interval',
      // Since the start of the run, warm-up included, so that the lines' times read as a clock.
      elapsedS: round3((nowMs - this.runStartMs) / 1000),
      intervalS: round3(intervalS),
      ...(this.sides.publish ? { publish: rate(w.sent, w.sentBytes, w.sendErrors, intervalS, w.publishLatency) } : {}),
      ...(this.sides.consume ? { consume: rate(w.received, w.receivedBytes, 0, intervalS, w.e2eLatency) } : {}),
      ...(this.sides.publish && this.sides.subscriptions > 0 ? { backlog: Math.max(0, this.sentEver * this.sides.subscriptions - this.receivedEver) } : {}),
    };
  }

  summary(nowMs: number): SummaryReport {
    const durationS = Math.max(1e-3, (nowMs - this.startedMs) / 1000);
    const w = this.total;
    return {
      type: 'summary',
      durationS: round3(durationS),
      ...(this.sides.publish ? { publish: rate(w.sent, w.sentBytes, w.sendErrors, durationS, w.publishLatency) } : {}),
      ...(this.sides.consume ? { consume: rate(w.received, w.receivedBytes, 0, durationS, w.e2eLatency) } : {}),
    };
  }

  publishHistogram(): LatencyHistogram {
    return this.total.publishLatency;
  }

  endToEndHistogram(): LatencyHistogram {
    return this.total.e2eLatency;
  }
}

function rate(messages: number, bytes: number, errors: number, seconds: number, latency: LatencyHistogram): RateReport {
  return {
    messages,
    bytes,
    msgPerS: round3(messages / seconds),
    mbPerS: round3(bytes / seconds / (1024 * 1024)),
    errors,
    latency: latency.summary(),
  };
}

function round3(n: number): number {
  return Math.round(n * 1000) / 1000;
}

// ---------------------------------------------------------------------------------------------------
// Text forms

function fmtRate(n: number): string {
  return n.toLocaleString('en-US', { minimumFractionDigits: 1, maximumFractionDigits: 1 });
}

function fmtMs(n: number): string {
  return n.toFixed(3);
}

function latencyText(l: LatencySummary): string {
  return `p50 ${fmtMs(l.p50Ms)} p99 ${fmtMs(l.p99Ms)} p99.9 ${fmtMs(l.p999Ms)} max ${fmtMs(l.maxMs)}`;
}

/** One line per report interval, pulsar-perf style but shorter. */
export function formatInterval(r: IntervalReport): string {
  const parts: string[] = [`[${r.elapsedS.toFixed(1).padStart(7)}s]`];
  if (r.publish) {
    const p = r.publish;
    parts.push(`produce ${fmtRate(p.msgPerS).padStart(11)} msg/s ${p.mbPerS.toFixed(2).padStart(8)} MB/s | publish latency ms ${latencyText(p.latency)}${p.errors > 0 ? ` | errors ${p.errors}` : ''}`);
  }
  if (r.consume) {
    const c = r.consume;
    parts.push(`${r.publish ? '|| ' : ''}consume ${fmtRate(c.msgPerS).padStart(11)} msg/s ${c.mbPerS.toFixed(2).padStart(8)} MB/s | end-to-end latency ms ${latencyText(c.latency)}`);
  }
  if (r.backlog !== undefined) parts.push(`| backlog ${r.backlog}`);
  return parts.join(' ');
}

function summaryBlock(title: string, r: RateReport, distribution: string): string {
  const l = r.latency;
  return [
    `${title}: ${r.messages} messages, ${fmtRate(r.msgPerS)} msg/s, ${r.mbPerS.toFixed(2)} MB/s${r.errors > 0 ? `, ${r.errors} errors` : ''}`,
    `  latency ms: avg ${fmtMs(l.avgMs)} p50 ${fmtMs(l.p50Ms)} p75 ${fmtMs(l.p75Ms)} p95 ${fmtMs(l.p95Ms)} p99 ${fmtMs(l.p99Ms)} p99.9 ${fmtMs(l.p999Ms)} p99.99 ${fmtMs(l.p9999Ms)} max ${fmtMs(l.maxMs)}`,
    '  HDR histogram (ms):',
    ...distribution.trimEnd().split('\n').map((line) => `  ${line}`),
  ].join('\n');
}

/** The final summary: totals, percentiles and the HDR percentile distribution of each side. */
export function formatSummary(s: SummaryReport, histograms: { publish?: LatencyHistogram; endToEnd?: LatencyHistogram }): string {
  const out = [`----- summary over ${s.durationS.toFixed(1)} s -----`];
  if (s.publish) out.push(summaryBlock('published (publish latency)', s.publish, histograms.publish?.distribution() ?? ''));
  if (s.consume) out.push(summaryBlock('consumed (end-to-end latency)', s.consume, histograms.endToEnd?.distribution() ?? ''));
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------------
// OpenMessaging Benchmark result

/**
 * The result of `strata perf run`, with the field names of OMB's TestResult so that the JSON compares
 * with published OMB results (per-interval arrays, then aggregated percentiles in milliseconds).
 */
export interface OmbResult {
  workload: string;
  driver: string;
  messageSize: number;
  topics: number;
  partitions: number;
  producersPerTopic: number;
  consumersPerTopic: number;
  publishRate: number[];
  consumeRate: number[];
  backlog: number[];
  publishLatencyAvg: number[];
  publishLatency50pct: number[];
  publishLatency99pct: number[];
  publishLatency999pct: number[];
  publishLatencyMax: number[];
  endToEndLatencyAvg: number[];
  endToEndLatency50pct: number[];
  endToEndLatency99pct: number[];
  endToEndLatency999pct: number[];
  endToEndLatencyMax: number[];
  aggregatedPublishLatencyAvg: number;
  aggregatedPublishLatency50pct: number;
  aggregatedPublishLatency75pct: number;
  aggregatedPublishLatency95pct: number;
  aggregatedPublishLatency99pct: number;
  aggregatedPublishLatency999pct: number;
  aggregatedPublishLatency9999pct: number;
  aggregatedPublishLatencyMax: number;
  aggregatedEndToEndLatencyAvg: number;
  aggregatedEndToEndLatency50pct: number;
  aggregatedEndToEndLatency75pct: number;
  aggregatedEndToEndLatency95pct: number;
  aggregatedEndToEndLatency99pct: number;
  aggregatedEndToEndLatency999pct: number;
  aggregatedEndToEndLatency9999pct: number;
  aggregatedEndToEndLatencyMax: number;
  /** Not in OMB: the run's mean rates over the measured period. */
  aggregatedPublishRate: number;
  aggregatedConsumeRate: number;
  publishErrors: number;
}

export function emptyOmbResult(meta: Pick<OmbResult, 'workload' | 'messageSize' | 'topics' | 'partitions' | 'producersPerTopic' | 'consumersPerTopic'>): OmbResult {
  return {
    ...meta,
    driver: 'strata',
    publishRate: [], consumeRate: [], backlog: [],
    publishLatencyAvg: [], publishLatency50pct: [], publishLatency99pct: [], publishLatency999pct: [], publishLatencyMax: [],
    endToEndLatencyAvg: [], endToEndLatency50pct: [], endToEndLatency99pct: [], endToEndLatency999pct: [], endToEndLatencyMax: [],
    aggregatedPublishLatencyAvg: 0, aggregatedPublishLatency50pct: 0, aggregatedPublishLatency75pct: 0, aggregatedPublishLatency95pct: 0,
    aggregatedPublishLatency99pct: 0, aggregatedPublishLatency999pct: 0, aggregatedPublishLatency9999pct: 0, aggregatedPublishLatencyMax: 0,
    aggregatedEndToEndLatencyAvg: 0, aggregatedEndToEndLatency50pct: 0, aggregatedEndToEndLatency75pct: 0, aggregatedEndToEndLatency95pct: 0,
    aggregatedEndToEndLatency99pct: 0, aggregatedEndToEndLatency999pct: 0, aggregatedEndToEndLatency9999pct: 0, aggregatedEndToEndLatencyMax: 0,
    aggregatedPublishRate: 0, aggregatedConsumeRate: 0, publishErrors: 0,
  };
}

/** Appends one measured interval to the OMB result's arrays. */
export function addOmbInterval(result: OmbResult, r: IntervalReport): void {
  const p = r.publish?.latency;
  const e = r.consume?.latency;
  result.publishRate.push(r.publish?.msgPerS ?? 0);
  result.consumeRate.push(r.consume?.msgPerS ?? 0);
  result.backlog.push(r.backlog ?? 0);
  result.publishLatencyAvg.push(p?.avgMs ?? 0);
  result.publishLatency50pct.push(p?.p50Ms ?? 0);
  result.publishLatency99pct.push(p?.p99Ms ?? 0);
  result.publishLatency999pct.push(p?.p999Ms ?? 0);
  result.publishLatencyMax.push(p?.maxMs ?? 0);
  result.endToEndLatencyAvg.push(e?.avgMs ?? 0);
  result.endToEndLatency50pct.push(e?.p50Ms ?? 0);
  result.endToEndLatency99pct.push(e?.p99Ms ?? 0);
  result.endToEndLatency999pct.push(e?.p999Ms ?? 0);
  result.endToEndLatencyMax.push(e?.maxMs ?? 0);
}

/** Fills the aggregated fields from the run's summary. */
export function finishOmbResult(result: OmbResult, s: SummaryReport): OmbResult {
  const p = s.publish?.latency;
  const e = s.consume?.latency;
  if (p) {
    Object.assign(result, {
      aggregatedPublishLatencyAvg: p.avgMs, aggregatedPublishLatency50pct: p.p50Ms, aggregatedPublishLatency75pct: p.p75Ms,
      aggregatedPublishLatency95pct: p.p95Ms, aggregatedPublishLatency99pct: p.p99Ms, aggregatedPublishLatency999pct: p.p999Ms,
      aggregatedPublishLatency9999pct: p.p9999Ms, aggregatedPublishLatencyMax: p.maxMs,
    });
  }
  if (e) {
    Object.assign(result, {
      aggregatedEndToEndLatencyAvg: e.avgMs, aggregatedEndToEndLatency50pct: e.p50Ms, aggregatedEndToEndLatency75pct: e.p75Ms,
      aggregatedEndToEndLatency95pct: e.p95Ms, aggregatedEndToEndLatency99pct: e.p99Ms, aggregatedEndToEndLatency999pct: e.p999Ms,
      aggregatedEndToEndLatency9999pct: e.p9999Ms, aggregatedEndToEndLatencyMax: e.maxMs,
    });
  }
  result.aggregatedPublishRate = s.publish?.msgPerS ?? 0;
  result.aggregatedConsumeRate = s.consume?.msgPerS ?? 0;
  result.publishErrors = s.publish?.errors ?? 0;
  return result;
}

/** OMB's closing lines, so that a run reads like an OMB log. */
export function formatOmbSummary(r: OmbResult): string {
  const f = (n: number): string => n.toFixed(3);
  return [
    `----- ${r.workload} (strata) -----`,
    `Pub rate ${fmtRate(r.aggregatedPublishRate)} msg/s | Cons rate ${fmtRate(r.aggregatedConsumeRate)} msg/s | publish errors ${r.publishErrors}`,
    `Aggregated Pub Latency (ms) avg: ${f(r.aggregatedPublishLatencyAvg)} - 50%: ${f(r.aggregatedPublishLatency50pct)} - 95%: ${f(r.aggregatedPublishLatency95pct)} - 99%: ${f(r.aggregatedPublishLatency99pct)} - 99.9%: ${f(r.aggregatedPublishLatency999pct)} - 99.99%: ${f(r.aggregatedPublishLatency9999pct)} - Max: ${f(r.aggregatedPublishLatencyMax)}`,
    `Aggregated E2E Latency (ms) avg: ${f(r.aggregatedEndToEndLatencyAvg)} - 50%: ${f(r.aggregatedEndToEndLatency50pct)} - 95%: ${f(r.aggregatedEndToEndLatency95pct)} - 99%: ${f(r.aggregatedEndToEndLatency99pct)} - 99.9%: ${f(r.aggregatedEndToEndLatency999pct)} - 99.99%: ${f(r.aggregatedEndToEndLatency9999pct)} - Max: ${f(r.aggregatedEndToEndLatencyMax)}`,
  ].join('\n');
}
