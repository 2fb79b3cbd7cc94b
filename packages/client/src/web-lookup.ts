import type { TokenSource } from './auth.js';
import { ClientError, ClientErrorCode } from './errors.js';
import { brokerAddress } from './topic.js';

/**
 * Lookups over a broker's web port, for a service URL such as `http://localhost:8080` (pulsar-client's
 * HTTP lookup): which broker owns a topic, its partition count and a namespace's topics come from
 * Pulsar's REST API (`/lookup/v2/topic/...`, `/admin/v2/...`); producers and consumers then speak to
 * the named broker on its client port as usual. The hosts are tried in turn, starting at the last one
 * that answered, so one dead web host costs one failed request, not every call.
 */
export class WebLookup {
  #index = 0;

  /** The token sent with the last request, dropped after a 401. */
  #token: Promise<string> | undefined;

  constructor(
    private readonly bases: readonly string[],
    private readonly timeoutMs: number,
    private readonly tokens?: TokenSource,
  ) {}

  async #headers(): Promise<Record<string, string>> {
    if (!this.tokens) return { accept: 'application/json' };
    const pending = (this.#token = this.tokens.current());
    try {
      return { accept: 'application/json', authorization: `Bearer ${await pending}` };
    } catch (err) {
      throw new ClientError(ClientErrorCode.AUTHENTICATION, `the token supplier failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }

  /** The client address (`host:port`) of the broker that owns `topic` (a full name). */
  async lookup(topic: string): Promise<string> {
    const res = await this.#get<{ brokerUrl?: string }>(`/lookup/v2/topic/${topicPath(topic)}`, topic);
    if (!res.brokerUrl) throw new ClientError(ClientErrorCode.SERVICE_NOT_READY, `no broker owns ${topic} yet`);
    return brokerAddress(res.brokerUrl);
  }

  /** The partition count of `topic` (0: not partitioned, or not created yet). */
  async partitions(topic: string): Promise<number> {
    try {
      const res = await this.#get<{ partitions?: number }>(`/admin/v2/${topicPath(topic)}/partitions`, topic);
      return res.partitions ?? 0;
    } catch (err) {
      // As a binary lookup answers: a topic that does not exist yet has no partitions.
      if (err instanceof ClientError && err.code === ClientErrorCode.NOT_FOUND) return 0;
      throw err;
    }
  }

  /** Every topic of `tenant/namespace`, as full names. */
  listTopics(namespace: string): Promise<string[]> {
    return this.#get<string[]>(`/admin/v2/namespaces/${namespace}/topics`, namespace);
  }

  async #get<T>(path: string, what: string): Promise<T> {
    let lastError: ClientError | undefined;
    for (let tries = 0; tries < this.bases.length; tries++) {
      const base = this.bases[this.#index % this.bases.length]!;
      let res: Response;
      try {
        res = await fetch(`${base}${path}`, { signal: AbortSignal.timeout(this.timeoutMs), headers: await this.#headers() });
      } catch (err) {
        const timedOut = (err as Error).name === 'TimeoutError';
        lastError = new ClientError(timedOut ? ClientErrorCode.TIMEOUT : ClientErrorCode.UNAVAILABLE, `web service ${base}: ${timedOut ? 'no answer in time' : (err as Error).message}`, { cause: err });
        this.#index++;
        continue;
      }
      if (res.ok) return (await res.json()) as T;
      if (res.status === 401 && this.#token) this.tokens?.refused(this.#token);
      const reason = await reasonOf(res);
      const error = new ClientError(codeOfStatus(res.status), `${what}: HTTP ${res.status}${reason ? ` ${reason}` : ''}`);
      if (res.status < 500) throw error;
      lastError = error;
      this.#index++;
    }
    throw lastError ?? new ClientError(ClientErrorCode.UNAVAILABLE, 'no web service host');
  }
}

/** `persistent://t/ns/x` as the REST API's path: `persistent/t/ns/x` (each part URL-encoded). */
function topicPath(topic: string): string {
  const [domain, rest] = topic.split('://', 2) as [string, string];
  return [domain, ...rest.split('/').map(encodeURIComponent)].join('/');
}

function codeOfStatus(status: number): ClientErrorCode {
  if (status === 404) return ClientErrorCode.NOT_FOUND;
  if (status === 401) return ClientErrorCode.AUTHENTICATION;
  if (status === 403) return ClientErrorCode.AUTHORIZATION;
  if (status === 400 || status === 412) return ClientErrorCode.INVALID_ARGUMENT;
  if (status === 429) return ClientErrorCode.TOO_MANY_REQUESTS;
  if (status === 503) return ClientErrorCode.SERVICE_NOT_READY;
  return status >= 500 ? ClientErrorCode.UNAVAILABLE : ClientErrorCode.INTERNAL;
}

/** Pulsar's error bodies are `{"reason": "..."}`. */
async function reasonOf(res: Response): Promise<string> {
  try {
    const body = (await res.json()) as { reason?: unknown };
    return typeof body.reason === 'string' ? body.reason : '';
  } catch {
    return '';
  }
}
