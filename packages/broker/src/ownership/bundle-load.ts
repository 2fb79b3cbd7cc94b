import { MAX_REPORTED_BUNDLES, type BundleLoad, type BundleSpec } from '@strata/coordinator';

/** The load of one loaded topic (the service measures it; the load report sums it per bundle). Rates are per second. */
export interface TopicLoad extends Omit<BundleLoad, 'bundle' | 'topics'> {
  namespace: string;
  /** topicHash of the topic: which bundle of its namespace holds it. */
  hash: number;
}

/**
 * Per-bundle sums of the topics' loads, for the owned bundles only (a topic outside them, e.g. one
 * closing after its bundle was released, is not counted). Bundles without a loaded topic are left out;
 * the rest are ordered busiest first (messages, then bytes, then sessions, then topics) and cut at
 * `limit`, so a load report stays bounded whatever the number of owned bundles.
 */
export function bundleLoads(owned: readonly BundleSpec[], topics: readonly TopicLoad[], limit = MAX_REPORTED_BUNDLES): BundleLoad[] {
  const byNamespace = new Map<string, BundleSpec[]>();
  for (const b of owned) {
    const list = byNamespace.get(b.namespace);
    if (list) list.push(b);
    else byNamespace.set(b.namespace, [b]);
  }
  const sums = new Map<string, BundleLoad>();
  for (const t of topics) {
    const spec = byNamespace.get(t.namespace)?.find((b) => t.hash >= b.start && (t.hash < b.end || (b.end === 0xffffffff && t.hash === b.end)));
    if (!spec) continue;
    let s = sums.get(spec.id);
    if (!s) {
      s = { bundle: spec.id, topics: 0, producers: 0, consumers: 0, msgRateIn: 0, msgRateOut: 0, msgThroughputIn: 0, msgThroughputOut: 0 };
      sums.set(spec.id, s);
    }
    s.topics += 1;
    s.producers += t.producers;
    s.consumers += t.consumers;
    s.msgRateIn += t.msgRateIn;
    s.msgRateOut += t.msgRateOut;
    s.msgThroughputIn += t.msgThroughputIn;
    s.msgThroughputOut += t.msgThroughputOut;
  }
  const busy = (b: BundleLoad): number[] => [b.msgRateIn + b.msgRateOut, b.msgThroughputIn + b.msgThroughputOut, b.producers + b.consumers, b.topics];
  const out = [...sums.values()].map((b) => ({
    ...b, msgRateIn: round(b.msgRateIn), msgRateOut: round(b.msgRateOut), msgThroughputIn: round(b.msgThroughputIn), msgThroughputOut: round(b.msgThroughputOut),
  }));
  out.sort((x, y) => {
    const bx = busy(x);
    const by = busy(y);
    for (let i = 0; i < bx.length; i++) if (bx[i] !== by[i]) return (by[i] as number) - (bx[i] as number);
    return x.bundle < y.bundle ? -1 : 1;
  });
  return out.slice(0, Math.max(0, limit));
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
