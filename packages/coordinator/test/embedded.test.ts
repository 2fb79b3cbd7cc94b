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
