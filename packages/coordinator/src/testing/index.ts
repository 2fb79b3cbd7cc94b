export { EtcdCluster, freePort, type EtcdClusterOptions } from './etcd-cluster.js';
