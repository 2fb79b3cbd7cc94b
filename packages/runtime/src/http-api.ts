import type { IncomingMessage, ServerResponse } from 'node:http';
import { asStrataError, ErrorCode, StrataError } from './errors.js';
import type { Action, Principal } from './gate.js';

/**
 * A JSON-over-HTTP API (the admin REST API) as a table of endpoints that ServiceHost serves beside its
 * own routes. Each endpoint names its access rule, so the host's one HTTP middleware runs the call gate
 * with the endpoint's action and resource before the handler (decision 0087).
 */

export type HttpMethod = 'GET' | 'PUT' | 'POST' | 'DELETE';

export interface EndpointAccess {
  readonly action: Action;
  /** The resource the request names, from its path parameters (a topic, `tenant/namespace`, a tenant). */
  resourceOf?(params: Readonly<Record<string, string>>): string | undefined;
}

export interface HttpRequest {
  readonly method: HttpMethod;
  readonly path: string;
  /** Path parameters, URL-decoded. */
  readonly params: Readonly<Record<string, string>>;
  readonly query: URLSearchParams;
  /** The JSON body (undefined when empty). */
  readonly body: unknown;
  readonly headers: IncomingMessage['headers'];
  readonly principal: Principal;
}

export interface HttpReply {
  readonly status?: number;
  /** Sent as JSON; a string is sent as it is, as text. Omitted: no body (204 unless status says). */
  readonly body?: unknown;
  readonly headers?: Readonly<Record<string, string>>;
}

export interface HttpEndpoint {
  readonly method: HttpMethod;
  /** `/admin/v2/tenants/:tenant`: `:name` matches one segment. Static segments win over parameters. */
  readonly path: string;
  readonly access: EndpointAccess;
  handle(request: HttpRequest): Promise<HttpReply> | HttpReply;
}

/** Largest request body read; a larger one is answered 413 without reading the rest. */
export const HTTP_API_MAX_BODY_BYTES = 1024 * 1024;

interface Compiled {
  readonly endpoint: HttpEndpoint;
  readonly segments: readonly string[];
  /** Per segment, 0 for static and 1 for a parameter: compared left to right, lower wins. */
  readonly rank: string;
}

export interface EndpointMatch {
  readonly endpoint: HttpEndpoint;
  readonly params: Record<string, string>;
}

/** The endpoints of every API added to one host, matched by method and path. */
export class EndpointTable {
  private readonly byMethod = new Map<string, Compiled[]>();

  add(endpoint: HttpEndpoint): void {
    const segments = split(endpoint.path);
    const rank = segments.map((s) => (s.startsWith(':') ? '1' : '0')).join('');
    const list = this.byMethod.get(endpoint.method) ?? [];
    if (list.some((c) => c.segments.length === segments.length && c.segments.every((s, i) => s === segments[i]))) {
      throw new Error(`endpoint ${endpoint.method} ${endpoint.path} added twice`);
    }
    list.push({ endpoint, segments, rank });
    list.sort((a, b) => (a.rank < b.rank ? -1 : a.rank > b.rank ? 1 : 0));
    this.byMethod.set(endpoint.method, list);
  }

  /** The endpoint for a request; `methodsAt` tells a 405 from a 404 when none matches. */
  match(method: string, path: string): EndpointMatch | undefined {
    const parts = split(path);
    for (const c of this.byMethod.get(method) ?? []) {
      const params = matchSegments(c.segments, parts);
      if (params) return { endpoint: c.endpoint, params };
    }
    return undefined;
  }

  /** Whether any endpoint, of any method, has this path (a wrong method then answers 405). */
  hasPath(path: string): boolean {
    const parts = split(path);
    for (const list of this.byMethod.values()) if (list.some((c) => matchSegments(c.segments, parts))) return true;
    return false;
  }
}

function split(path: string): string[] {
  return path.split('/').filter((s) => s !== '');
}

function matchSegments(pattern: readonly string[], parts: readonly string[]): Record<string, string> | undefined {
  if (pattern.length !== parts.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!;
    const part = parts[i]!;
    if (p.startsWith(':')) {
      try {
        params[p.slice(1)] = decodeURIComponent(part);
      } catch {
        return undefined;
      }
    } else if (p !== part) {
      return undefined;
    }
  }
  return params;
}

/** Reads a request's JSON body, at most HTTP_API_MAX_BODY_BYTES; undefined when empty. */
export async function readJsonBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > HTTP_API_MAX_BODY_BYTES) throw new StrataError(ErrorCode.TOO_LARGE, `request body over ${HTTP_API_MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'request body is not valid JSON');
  }
}

/**
 * HTTP status for a domain error, as Pulsar's REST API answers: 404 unknown, 409 exists or conflicts,
 * 412 a precondition (e.g. not empty, invalid name), 401/403 from the gate, 307 handled by the caller.
 */
export function httpStatusOf(code: string): number {
  switch (code) {
    case ErrorCode.INVALID_ARGUMENT: return 400;
    case ErrorCode.UNAUTHENTICATED: return 401;
    case ErrorCode.PERMISSION_DENIED: return 403;
    case ErrorCode.NOT_FOUND: return 404;
    case ErrorCode.ALREADY_EXISTS:
    case ErrorCode.BAD_VERSION: return 409;
    case ErrorCode.PRECONDITION_FAILED:
    case ErrorCode.NOT_ALLOWED: return 412;
    case ErrorCode.TOO_LARGE: return 413;
    case ErrorCode.TOO_MANY_REQUESTS: return 429;
    case ErrorCode.UNIMPLEMENTED: return 501;
    case ErrorCode.NOT_OWNER:
    case ErrorCode.SERVICE_NOT_READY:
    case ErrorCode.METADATA_UNAVAILABLE:
    case ErrorCode.SESSION_LOST:
    case ErrorCode.UNAVAILABLE:
    case ErrorCode.NOT_ENOUGH_BOOKIES: return 503;
    case ErrorCode.TIMEOUT: return 504;
    default: return 500;
  }
}

/** Writes an error as Pulsar's REST API does: the status and `{"reason": "..."}`. */
export function sendHttpError(res: ServerResponse, err: unknown): void {
  const e = asStrataError(err);
  sendReply(res, { status: httpStatusOf(e.code), body: { reason: e.message } });
}

export function sendReply(res: ServerResponse, reply: HttpReply): void {
  for (const [name, value] of Object.entries(reply.headers ?? {})) res.setHeader(name, value);
  if (reply.body === undefined) {
    res.statusCode = reply.status ?? 204;
    res.end();
    return;
  }
  res.statusCode = reply.status ?? 200;
  if (typeof reply.body === 'string') {
    if (!res.hasHeader('content-type')) res.setHeader('content-type', 'text/plain; charset=utf-8');
    res.end(reply.body);
    return;
  }
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify(reply.body));
}
