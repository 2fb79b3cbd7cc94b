import { configError } from './errors.js';

/**
 * Full topic names: `persistent://tenant/namespace/topic`. A short name `my-topic` means
 * `persistent://public/default/my-topic`; `tenant/ns/topic` means `persistent://tenant/ns/topic`.
 */
export function fullTopicName(topic: string): string {
  if (typeof topic !== 'string' || topic.length === 0) throw configError('Topic name must be a non-empty string');
  if (topic.includes('://')) {
    const [domain, rest] = topic.split('://', 2) as [string, string];
    if (domain !== 'persistent' && domain !== 'non-persistent') throw configError(`Invalid topic domain in '${topic}'`);
    if (rest.split('/').length !== 3) throw configError(`Invalid topic name '${topic}'`);
    return topic;
  }
  const parts = topic.split('/');
  if (parts.length === 1) return `persistent://public/default/${topic}`;
  if (parts.length === 3) return `persistent://${topic}`;
  throw configError(`Invalid topic name '${topic}'`);
}

export function partitionTopicName(topic: string, partition: number): string {
  return `${topic}-partition-${partition}`;
}

/** `tenant/namespace` of a full topic name. */
export function namespaceOf(fullName: string): string {
  const rest = fullName.split('://', 2)[1] ?? fullName;
  const [tenant, ns] = rest.split('/');
  return `${tenant}/${ns}`;
}

/** Parses `pulsar://h:p[,h2:p2]` or `strata://...` into gRPC target addresses. */
export function parseServiceUrl(url: unknown): string[] {
  if (typeof url !== 'string' || url.length === 0) throw configError('Service URL is required and must be specified as a string unless serviceUrlProvider is configured');
  const m = /^(pulsar|strata):\/\/(.+?)\/?$/.exec(url);
  if (!m) {
    if (/^(pulsar\+ssl|https):\/\//.test(url)) throw configError(`Service URL '${url}' is not supported: Strata has no TLS yet (use pulsar:// or http://)`);
    const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(url)?.[1];
    if (scheme) throw configError(`Invalid scheme: ${scheme} (expected pulsar://, strata:// or http://)`);
    throw configError(`Invalid service URL '${url}': expected pulsar://host:port`);
  }
  const hosts = m[2]!.split(',').map((h) => h.trim()).filter(Boolean);
  for (const h of hosts) {
    if (!/^[^:/]+:\d+$/.test(h) && !/^\[[^\]]+\]:\d+$/.test(h)) throw configError(`Invalid host:port '${h}' in service URL '${url}'`);
  }
  if (hosts.length === 0) throw configError(`Invalid service URL '${url}'`);
  return hosts;
}

/**
 * The web service hosts of `http://h:p[,h2:p2][/]` as base URLs (`http://h:p`), or undefined when the
 * URL is not a web service URL (it is then a binary one, for parseServiceUrl).
 */
export function parseWebServiceUrl(url: unknown): string[] | undefined {
  if (typeof url !== 'string') return undefined;
  const m = /^http:\/\/(.+?)\/?$/.exec(url);
  if (!m) return undefined;
  const hosts = m[1]!.split(',').map((h) => h.trim()).filter(Boolean);
  for (const h of hosts) {
    if (!/^[^:/]+(:\d+)?$/.test(h) && !/^\[[^\]]+\](:\d+)?$/.test(h)) throw configError(`Invalid host[:port] '${h}' in service URL '${url}'`);
  }
  if (hosts.length === 0) throw configError(`Invalid service URL '${url}'`);
  return hosts.map((h) => `http://${h}`);
}

/** A broker address as the broker reports it (`host:port`, perhaps with a scheme) as a gRPC target. */
export function brokerAddress(url: string): string {
  return url.replace(/^[a-z+]+:\/\//, '').replace(/\/$/, '');
}
