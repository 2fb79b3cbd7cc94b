import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { silentLogger } from '@strata/runtime';
import { createMetadataStore, EmbeddedMetadataStore, listAll, PrefixCache, type MetadataStore } from '../src/index.js';
import { EtcdCluster } from '../src/testing/index.js';
import { unique, waitFor } from './contract.js';

function suite(name: string, open: () => Promise<{ store: MetadataStore; stop(): Promise<void> }>): void {
  describe(`PrefixCache (${name})`, () => {
    let env: { store: MetadataStore; stop(): Promise<void> };
    beforeAll(async () => {
      env = await open();
    });
    afterAll(async () => {
      await env?.stop();
    });

    test('misses no change made while it lists and starts watching', async () => {
      const { store } = env;
      const prefix = `${unique('p')}/`;
      for (let i = 0; i < 50; i++) await store.put(`${prefix}k${i}`, '0');
      const changes: string[] = [];
      const cache = new PrefixCache<{ v: number }>({
        store, prefix, logger: silentLogger(), decode: (v) => ({ v: Number(v.toString()) }),
        onChange: (key, entry) => changes.push(`${key}=${entry?.value.v ?? 'deleted'}`),
      });
      // Writes race with the list and the watch start: each key gets several versions, some deleted.
      const writer = (async () => {
        for (let round = 1; round <= 4; round++) {
          for (let i = 0; i < 50; i += 1 + round) {
            if (round === 3 && i % 2 === 0) await store.delete(`${prefix}k${i}`);
            else await store.put(`${prefix}k${i}`, String(round));
          }
        }
        await store.put(`${prefix}zz-last`, '9');
      })();
      await cache.start();
      await writer;
      await waitFor('the last write', () => cache.get(`${prefix}zz-last`));
      const truth = await listAll(store, prefix);
      expect(cache.size).toBe(truth.items.length);
      for (const kv of truth.items) {
        expect(cache.get(kv.key)).toMatchObject({ value: { v: Number(kv.value.toString()) }, version: kv.version, modRevision: kv.modRevision });
      }
      expect(changes.length).toBeGreaterThan(50);
      await cache.close();
    });

    test('a malformed value is treated as absent', async () => {
      const { store } = env;
      const prefix = `${unique('p')}/`;
      await store.put(`${prefix}good`, '{"a":1}');
      await store.put(`${prefix}bad`, 'not json');
      const cache = new PrefixCache<{ a: number }>({
        store, prefix, logger: silentLogger(),
        decode: (v) => { try { return JSON.parse(v.toString()) as { a: number }; } catch { return undefined; } },
      });
      await cache.start();
      expect(cache.get(`${prefix}good`)?.value.a).toBe(1);
      expect(cache.get(`${prefix}bad`)).toBeUndefined();
      await store.put(`${prefix}good`, 'broken');
      await waitFor('good to vanish', () => cache.get(`${prefix}good`) === undefined || undefined);
      await cache.close();
    });
  });
}

suite('embedded', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'strata-cache-'));
  const store = await EmbeddedMetadataStore.open({ dir, logger: silentLogger() });
  return { store, stop: async () => { await store.close(); await rm(dir, { recursive: true, force: true }); } };
});

suite('etcd', async () => {
  const etcd = await EtcdCluster.start({ members: 1 });
  const store = await createMetadataStore(etcd.url, { logger: silentLogger(), cluster: unique('c') });
  return { store, stop: async () => { await store.close(); await etcd.stop(); } };
});
