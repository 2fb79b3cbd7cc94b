export { BadVersionError, CompactedError, MetadataUnavailableError, SessionLostError } from './errors.js';
export type {
  CallOptions, CampaignOptions, DeleteOptions, KeyValue, Leadership, ListOptions, ListPage, MetadataStore, PutOptions,
  PutResult, Session, SessionOptions, WatchEvent, Watcher, WatchOptions,
} from './metadata/store.js';
