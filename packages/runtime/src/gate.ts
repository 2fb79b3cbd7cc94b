import type { IncomingMessage } from 'node:http';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { asStrataError, ErrorCode, StrataError, toGrpcError } from './errors.js';

/**
 * The one seam where cross-cutting checks (authentication, authorization, admission limits) enter a
 * server (decision 0087). ServiceHost runs every gRPC call (one server interceptor) and every HTTP
 * request (one middleware) through a `CallGate`, and it takes no service or route without an access
 * rule for each of its methods: a handler cannot be added that the gate does not see.
 *
 * Order per call: `authenticate` once, from the call's headers and connection, before the handler sees
 * anything; then `authorize` for every inbound message that names a resource (the request of a unary
 * call; each open/subscribe command of a stream), before the handler sees that message. A refusal ends
 * the call with the gate's error (UNAUTHENTICATED, PERMISSION_DENIED, TOO_MANY_REQUESTS, ...).
 * Per-message limits on a data path (publish and dispatch rates) are not the gate's: they throttle a
 * stream that was admitted, in the topic code.
 */

/**
 * What a method needs. Pulsar's model: `lookup`, `produce`, `consume` on a topic (granted per
 * namespace or topic); `tenant-admin` on a tenant, namespace or topic (the tenant's admin roles);
 * `super-user` for cluster-wide administration; `cluster` for links between Strata's own roles
 * (bookie, coordinator); `metrics` for /metrics; `public` for health and readiness, which skip the gate.
 */
export type Action = 'public' | 'metrics' | 'lookup' | 'produce' | 'consume' | 'tenant-admin' | 'super-user' | 'cluster';

/** The access rule of one gRPC method. */
export interface MethodAccess<Message = unknown> {
  readonly action: Action;
  /**
   * The resource an inbound message names (a topic, `tenant/namespace`, a tenant), or undefined when it
   * names none (a send on an open producer stream). Called for every inbound message: keep it a field
   * read. Without it the action is checked once, with no resource, on the call's first message.
   */
  resourceOf?(message: Message): string | undefined;
}

/** One rule per method of a service; ServiceHost refuses a service with a method left out. */
export type ServiceAccess<I> = { readonly [M in keyof I]: MethodAccess };

/** The access rule of one HTTP route. */
export interface RouteAccess {
  readonly action: Action;
  resourceOf?(req: IncomingMessage, url: URL): string | undefined;
}

/** What a call presents to `authenticate`. */
export interface CallCredentials {
  readonly transport: 'grpc' | 'http';
  /** `/strata.broker.v1.Broker/Lookup`, or `GET /admin/v2/tenants`. */
  readonly operation: string;
  /** The action the method or route needs (its access rule), e.g. so /metrics may be left unauthenticated. */
  readonly action: Action;
  /** Header (gRPC metadata) values by lower-case name; the first value of each. */
  readonly headers: ReadonlyMap<string, string>;
  readonly peerAddress: string;
  /** The client's certificate, on a TLS connection that presented one. */
  readonly peerCertificate?: PeerCertificate;
}

/** Who a call acts as. `role` undefined: anonymous. */
export interface Principal {
  readonly role: string | undefined;
}

export interface AuthorizeRequest {
  readonly principal: Principal;
  readonly action: Action;
  readonly resource: string | undefined;
  readonly operation: string;
}

export interface CallGate {
  /** Resolves with who the call acts as; throws a StrataError (UNAUTHENTICATED) to refuse it. */
  authenticate(credentials: CallCredentials): Promise<Principal> | Principal;
  /** Resolves to admit; throws a StrataError (PERMISSION_DENIED, TOO_MANY_REQUESTS, ...) to refuse. */
  authorize(request: AuthorizeRequest): Promise<void> | void;
}

export const ANONYMOUS: Principal = { role: undefined };

/** Admits every call as anonymous: a server with security off. ServiceHost then skips the seam. */
export const openGate: CallGate = {
  authenticate: () => ANONYMOUS,
  authorize: () => undefined,
};

/** Metadata key under which the gate hands the authenticated role to handlers (inbound copies are dropped). */
export const PRINCIPAL_METADATA_KEY = 'strata-principal';

/** The role the gate authenticated for this call, as handlers read it; undefined for anonymous. */
export function principalOf(call: { metadata: grpc.Metadata }): string | undefined {
  const value = call.metadata.get(PRINCIPAL_METADATA_KEY)[0];
  return typeof value === 'string' ? value : undefined;
}

/** The gRPC server interceptor that runs the gate; `accessOf` maps a method path to its rule. */
export function gateInterceptor(gate: CallGate, accessOf: (path: string) => MethodAccess | undefined): grpc.ServerInterceptor {
  return (method, call) => {
    const access = accessOf(method.path);
    let principal: Principal | undefined;
    let checkedWithoutResource = false;
    // Messages are checked one at a time, in order; a refusal ends the call and drops what follows.
    let queue: Promise<void> = Promise.resolve();
    let pending = 0;
    let refused = false;
    const refuse = (err: unknown): void => {
      if (refused) return;
      refused = true;
      const e = toGrpcError(err);
      call.sendStatus({ code: e.code, details: e.details, metadata: e.metadata });
    };
    const listener = new grpc.ServerListenerBuilder()
      .withOnReceiveMetadata((metadata, next) => {
        metadata.remove(PRINCIPAL_METADATA_KEY);
        if (!access) return refuse(new StrataError(ErrorCode.PERMISSION_DENIED, `no access rule for ${method.path}`));
        if (access.action === 'public') return next(metadata);
        pending++;
        queue = queue
          .then(async () => {
            principal = await gate.authenticate(grpcCredentials(method.path, access.action, metadata, call));
            if (principal.role !== undefined) metadata.set(PRINCIPAL_METADATA_KEY, principal.role);
            if (!refused) next(metadata);
          })
          .catch((err: unknown) => refuse(authError(err, ErrorCode.UNAUTHENTICATED)))
          .finally(() => pending--);
      })
      .withOnReceiveMessage((message, next) => {
        if (refused) return;
        const resource = access?.resourceOf?.(message);
        const mustCheck = access !== undefined && access.action !== 'public' && (resource !== undefined || (!access.resourceOf && !checkedWithoutResource));
        // The fast path: nothing to check and nothing queued ahead of this message.
        if (!mustCheck && pending === 0) return next(message);
        if (mustCheck && resource === undefined) checkedWithoutResource = true;
        pending++;
        queue = queue
          .then(async () => {
            if (refused) return;
            if (mustCheck && access) {
              await gate.authorize({ principal: principal ?? ANONYMOUS, action: access.action, resource, operation: method.path });
            }
            if (!refused) next(message);
          })
          .catch((err: unknown) => refuse(authError(err, ErrorCode.PERMISSION_DENIED)))
          .finally(() => pending--);
      })
      .build();
    return new grpc.ServerInterceptingCall(call, new grpc.ResponderBuilder().withStart((next) => next(listener)).build());
  };
}

/** Runs the gate for one HTTP request; throws the refusal. Returns the principal. */
export async function admitHttp(gate: CallGate, action: Action, resource: string | undefined, req: IncomingMessage, path: string): Promise<Principal> {
  if (action === 'public') return ANONYMOUS;
  const operation = `${req.method ?? 'GET'} ${path}`;
  const headers = new Map<string, string>();
  for (const [name, value] of Object.entries(req.headers)) {
    const first = Array.isArray(value) ? value[0] : value;
    if (first !== undefined) headers.set(name, first);
  }
  const socket = req.socket as Partial<TLSSocket>;
  const certificate = typeof socket.getPeerCertificate === 'function' ? socket.getPeerCertificate() : undefined;
  let principal: Principal;
  try {
    principal = await gate.authenticate({
      transport: 'http', operation, action, headers, peerAddress: req.socket.remoteAddress ?? 'unknown',
      ...(certificate && Object.keys(certificate).length > 0 ? { peerCertificate: certificate } : {}),
    });
  } catch (err) {
    throw authError(err, ErrorCode.UNAUTHENTICATED);
  }
  try {
    await gate.authorize({ principal, action, resource, operation });
  } catch (err) {
    throw authError(err, ErrorCode.PERMISSION_DENIED);
  }
  return principal;
}

function grpcCredentials(path: string, action: Action, metadata: grpc.Metadata, call: grpc.ServerInterceptingCallInterface): CallCredentials {
  const headers = new Map<string, string>();
  for (const [name, values] of Object.entries(metadata.getMap())) {
    if (typeof values === 'string') headers.set(name, values);
  }
  const auth = call.getAuthContext();
  return {
    transport: 'grpc', operation: path, action, headers, peerAddress: call.getPeer(),
    ...(auth.sslPeerCertificate ? { peerCertificate: auth.sslPeerCertificate } : {}),
  };
}

/** A gate that threw something other than a StrataError refused with the stage's code, not INTERNAL. */
function authError(err: unknown, code: ErrorCode): StrataError {
  const e = asStrataError(err);
  return e.code === ErrorCode.INTERNAL && !(err instanceof StrataError) ? new StrataError(code, e.message, { cause: err }) : e;
}

/** One rule for every method of a service: the internal links (bookie, coordinator) are `cluster` throughout. */
export function accessForAll(service: grpc.ServiceDefinition, rule: MethodAccess): ServiceAccess<Record<string, unknown>> {
  return Object.fromEntries(Object.keys(service).map((name) => [name, rule]));
}
