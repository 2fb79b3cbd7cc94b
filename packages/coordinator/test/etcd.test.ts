import { silentLogger } from '@strata/runtime';
import { createMetadataStore } from '../src/index.js';
import { EtcdCluster } from '../src/testing/index.js';
import { metadataContract, unique } from './contract.js';
import { compactEtcd, recordingLogger } from './etcd-helpers.js';

metadataContract('single etcd', 'etcd', async () => {
  const etcd = await EtcdCluster.start({ members: 1 });
  const cluster = unique('c');
  const watchLog = recordingLogger();
  const open = () => createMetadataStore(etcd.url, { logger: silentLogger(), cluster });
  return {
    kind: 'etcd',
    url: etcd.url,
    cluster,
    client: open,
    watchClient: () => createMetadataStore(etcd.url, { logger: watchLog.logger, cluster }),
    watchResumes: () => watchLog.count('watch stream lost; resuming'),
    // The only member restarts: every client reconnects, the watcher resumes from its revision.
    disruptWatchClient: () => etcd.restart(0),
    compact: (s) => compactEtcd(etcd.endpoints, s),
    pauseAll: () => etcd.pause(0),
    resumeAll: () => etcd.resume(0),
    stop: () => etcd.stop(),
  };
});
