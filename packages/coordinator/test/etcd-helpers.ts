import { Etcd3 } from 'etcd3';
import { pino, type Logger } from 'pino';
import type { MetadataStore } from '../src/index.js';

/** Compacts etcd up to its current revision with a raw client (what an operator or auto-compaction does). */
export async function compactEtcd(endpoints: string[], store: MetadataStore): Promise<void> {
  const raw = new Etcd3({ hosts: endpoints });
  try {
    const revision = await store.currentRevision();
    await raw.kv.compact({ revision, physical: true });
  } finally {
    raw.close();
  }
}

/** A logger that keeps the messages it is given, to check that a fault really hit the code under test. */
export function recordingLogger(): { logger: Logger; count(msg: string): number } {
  const messages: string[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void messages.push((JSON.parse(line) as { msg: string }).msg) });
  return { logger, count: (msg) => messages.filter((m) => m === msg).length };
}
