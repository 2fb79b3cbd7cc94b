/**
 * `@strata/client/admin`: what tools that administer a cluster need from the SDK, and nothing an
 * application needs. The Admin service door (AdminApi) and the SDK's own reading of service URLs and topic
 * names, so that a tool accepts exactly what the SDK accepts. Applications import `@strata/client`.
 */
export { AdminApi, ADMIN_CALL_TIMEOUT_MS } from './admin-api.js';
export type { AdminApiOptions, BrokerInfo, BundleInfo, NamespacePolicies, TopicStats } from './admin-api.js';
export { fullTopicName, parseServiceUrl } from '../topic.js';
