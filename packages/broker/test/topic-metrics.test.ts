// Which topics get topic-level metrics: at most N, the busiest (rate in + out) first, ties by name.
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { BrokerMetrics, busiestTopics, type TopicSample } from '../src/metrics.js';
import type { TopicStats } from '../src/generated/strata/broker/v1/TopicStats.js';

const topic = (name: string, msgRateIn: number, msgRateOut = 0, subscriptions: TopicStats['subscriptions'] = [], consumers = 0): TopicSample =>
  ({ stats: { topic: `persistent://public/default/${name}`, msgRateIn, msgRateOut, storageSize: 10, backlogSize: 3, publishers: [], subscriptions }, consumers });

describe('topic-level metrics', () => {
  it('keeps the n busiest topics, ties by name', () => {
    const all = [topic('quiet', 0), topic('b', 5, 5), topic('hot', 100), topic('a', 5, 5), topic('out', 0, 50)];
    expect(busiestTopics(all, 3).map((t) => t.stats.topic)).toEqual(['hot', 'out', 'a'].map((n) => `persistent://public/default/${n}`));
    expect(busiestTopics(all, 0)).toEqual([]);
    expect(busiestTopics(all, 10)).toHaveLength(5);
  });

  it('exports at most maxTopics topics with their subscriptions, and none with maxTopics 0', async () => {
    const stats = [topic('hot', 100, 0, [{ name: 's1', msgBacklog: 7, msgRateOut: 1, unackedMessages: 2, consumers: [{}, {}] }], 2), topic('cold', 1)];
    const scrape = async (maxTopics: number) => {
      const registry = new Registry();
      new BrokerMetrics(registry, { topicsLoaded: () => stats.length, pendingPublishes: () => 0, topics: () => stats, maxTopics });
      return registry.metrics();
    };
    const one = await scrape(1);
    expect(one).toContain('broker_topic_msg_rate_in{topic="persistent://public/default/hot"} 100');
    expect(one).not.toContain('persistent://public/default/cold');
    expect(one).toContain('broker_topic_consumers{topic="persistent://public/default/hot"} 2');
    expect(one).toContain('broker_subscription_msg_backlog{topic="persistent://public/default/hot",subscription="s1"} 7');
    expect(one).toContain('broker_subscription_unacked_messages{topic="persistent://public/default/hot",subscription="s1"} 2');
    expect(await scrape(2)).toContain('broker_topic_storage_size_bytes{topic="persistent://public/default/cold"} 10');
    const none = await scrape(0);
    expect(none).not.toContain('broker_topic_');
    expect(none).toContain('broker_topics_loaded 2');
  });
});
