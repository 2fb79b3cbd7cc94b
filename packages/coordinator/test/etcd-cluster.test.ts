import { silentLogger } from '@strata/runtime';
import { createMetadataStore } from '../src/index.js';
import { EtcdCluster } from '../src/testing/index.js';
import { metadataContract, unique } from './contract.js';
import { compactEtcd, recordingLogger } from './etcd-helpers.js';

metadataContract('3-member etcd cluster losing a member mid-suite', 'etcd', async () => {
  const etcd = await EtcdCluster.start({ members: 3 });
  const cluster = unique('c');
  const watchLog = recordingLogger();
  let dead: number | undefined;
  return {
    kind: 'etcd',
    url: etcd.url,
    cluster,
    client: () => createMetadataStore(etcd.url, { logger: silentLogger(), cluster }),
    // The watcher talks to member 0 only, so restarting member 0 surely cuts its stream.
    watchClient: () => createMetadataStore(etcd.urlOf(0), { logger: watchLog.logger, cluster }),
    watchResumes: () => watchLog.count('watch stream lost; resuming'),
    disruptWatchClient: () => etcd.restart(0),
    compact: (s) => compactEtcd(etcd.endpoints.filter((_, i) => i !== dead), s),
    pauseAll: () => etcd.endpoints.forEach((_, i) => i !== dead && etcd.pause(i)),
    resumeAll: () => etcd.endpoints.forEach((_, i) => i !== dead && etcd.resume(i)),
    victimClient: () => createMetadataStore(etcd.urlOf(2, 0, 1), { logger: silentLogger(), cluster }),
    midSuite: async () => {
      dead = 2;
      await etcd.kill(2);
    },
    stop: () => etcd.stop(),
  };
});
