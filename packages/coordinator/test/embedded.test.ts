import { describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '@strata/runtime';
import { EmbeddedMetadataStore, type MetadataStore } from '../src/index.js';
import { metadataContract } from './contract.js';

/** Every "client" of an embedded store is the one store (one process owns the directory). */
function shared(store: MetadataStore): MetadataStore {
  return {
    get: (...a) => store.get(...a),
    put: (...a) => store.put(...a),
    delete: (...a) => store.delete(...a),
    list: (...a) => store.list(...a),
    currentRevision: (...a) => store.currentRevision(...a),
    watch: (...a) => store.watch(...a),
    createSession: (...a) => store.createSession(...a),
    campaign: (...a) => store.campaign(...a),
    getLeader: (...a) => store.getLeader(...a),
    close: async () => {},
  };
}

metadataContract('embedded', 'embedded', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'strata-embedded-contract-'));
  const store = await EmbeddedMetadataStore.open({ dir, logger: silentLogger(), historyMax: 200 });
  return {
    kind: 'embedded',
    client: async () => shared(store),
    compact: async (s) => {
      for (let i = 0; i < 300; i++) await s.put(`junk/${i}`, 'x');
    },
    stop: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

describe('embedded store flush loop', () => {
  // Regression: a write queued by code that a flushed write resumed (here via a watch event) used to
  // wait forever, because the flush loop had seen an empty queue but not yet cleared its handle.
  it('commits a write made by code resumed during a flush', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'strata-embedded-race-'));
    const store = await EmbeddedMetadataStore.open({ dir, logger: silentLogger() });
    try {
      let wake: (() => void) | undefined;
      const woken = new Promise<void>((resolve) => (wake = resolve));
      await store.watch('trigger', { onEvent: () => wake?.() });
      const writer = (async () => {
        await woken;
        await store.put('after', 'x');
      })();
      await store.put('trigger', '1');
      await Promise.race([writer, new Promise((_, reject) => setTimeout(() => reject(new Error('put never resolved')), 5_000))]);
      expect((await store.get('after'))?.value.toString()).toBe('x');
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
