import {
  asStrataError, ErrorCode, httpStatusOf, StrataError, type EndpointAccess, type HttpEndpoint, type HttpMethod, type HttpReply, type HttpRequest, type Logger,
} from '@strata/runtime';
import { checkTenantName, parseNamespace, TopicName, type TopicDomain } from '../names.js';
import type { AdminOps, AdminOpsContext } from './admin-ops.js';

/** What the REST admin API's files share (rest-api.ts assembles them): its context, names, bodies, errors, redirects. */

export interface RestApiContext extends AdminOpsContext {
  logger: Logger;
  /** The cluster name (config `cluster`): the one cluster this API knows. */
  cluster: string;
  /** Whether the broker can serve (its metadata session is alive): /admin/v2/brokers/health. */
  isReady(): boolean;
}

export interface RestTools {
  readonly ops: AdminOps;
  readonly ctx: RestApiContext;
  /** An endpoint whose errors become Pulsar's status and `{"reason"}` (see `restStatusOf`). */
  endpoint(method: HttpMethod, path: string, access: EndpointAccess, handle: (req: HttpRequest) => Promise<HttpReply>, options?: { busyStatus?: number }): HttpEndpoint;
}

/** Pulsar's answers for a name it cannot parse: 412 (PRECONDITION_FAILED), not 400 (kept for bodies). */
export function tenantParam(req: HttpRequest): string {
  return asName(() => {
    checkTenantName(req.params.tenant ?? '');
    return req.params.tenant as string;
  });
}

export function namespaceParam(req: HttpRequest): string {
  return asName(() => parseNamespace(`${req.params.tenant ?? ''}/${req.params.namespace ?? ''}`).name);
}

export function topicParam(req: HttpRequest, domain: TopicDomain): TopicName {
  return asName(() => TopicName.parse(`${domain}://${req.params.tenant ?? ''}/${req.params.namespace ?? ''}/${req.params.topic ?? ''}`));
}

function asName<T>(parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    const e = asStrataError(err);
    if (e.code === ErrorCode.INVALID_ARGUMENT) throw new StrataError(ErrorCode.PRECONDITION_FAILED, e.message, { retriable: false });
    throw err;
  }
}

/** A body that must be a JSON value of one kind; 400 otherwise. */
export function bodyError(what: string): StrataError {
  return new StrataError(ErrorCode.INVALID_ARGUMENT, `request body must be ${what}`, { retriable: false });
}

export function queryFlag(req: HttpRequest, name: string): boolean {
  return req.query.get(name) === 'true';
}

/**
 * Status of a failed REST call, as Pulsar's admin API answers: httpStatusOf for the shared codes, and
 * CONSUMER_BUSY (a tenant/namespace not empty, a topic in use) as 409, or the endpoint's `busyStatus`
 * (412 for a topic with connected clients, as Pulsar's delete answers).
 */
export function restStatusOf(code: string, busyStatus = 409): number {
  if (code === ErrorCode.CONSUMER_BUSY || code === ErrorCode.PRODUCER_BUSY) return busyStatus;
  return httpStatusOf(code);
}

/**
 * Answers with a 307 to the owner's HTTP address when another broker owns the topic's bundle, 503
 * when nobody owns it yet (or this request was already redirected here); undefined when it is ours.
 */
export async function redirectToOwner(ops: AdminOps, req: HttpRequest, name: TopicName): Promise<HttpReply | undefined> {
  const owner = await ops.ownerOf(name);
  if (owner?.isMine) return undefined;
  if (!owner) throw new StrataError(ErrorCode.SERVICE_NOT_READY, `no broker owns the bundle of ${name} yet; retry`, { retriable: true });
  if (!owner.httpUrl || req.query.get('authoritative') === 'true') {
    throw new StrataError(ErrorCode.SERVICE_NOT_READY, `${name} is served by ${owner.brokerId}, which is not reachable over HTTP from here; retry`, { retriable: true });
  }
  const query = new URLSearchParams(req.query);
  query.set('authoritative', 'true');
  return { status: 307, headers: { location: `http://${owner.httpUrl}${req.path}?${query.toString()}` } };
}

