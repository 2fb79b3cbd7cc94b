import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Http2Server, ServerHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation, service as healthService } from 'grpc-health-check';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { accessForAll, admitHttp, ANONYMOUS, gateInterceptor, openGate, type CallGate, type MethodAccess, type RouteAccess, type ServiceAccess } from './gate.js';
import { asStrataError, ErrorCode, StrataError } from './errors.js';
import { EndpointTable, readJsonBody, sendHttpError, sendReply, type HttpEndpoint, type HttpMethod } from './http-api.js';
import type { Logger } from './logger.js';

/**
 * A port of a ServiceHost is taken by another process. Code CONFIG (a start-up problem the operator
 * fixes by choosing another port); `server` and `port` say which, so a command can name its flag.
 * The message names the role flag (`--grpc-port` / `--http-port`).
 */
export class PortInUseError extends StrataError {
  constructor(readonly server: 'grpc' | 'http', readonly host: string, readonly port: number, cause?: unknown) {
    super(ErrorCode.CONFIG, `port ${port} is in use (${host}:${port}): pass --${server}-port <n>`, { cause, retriable: false });
    this.name = 'PortInUseError';
  }
}

/**
 * Sends grpc-js's own log lines (by default written straight to stderr, e.g. "E No address added out
 * of total 1 resolved" next to an error that is also reported through the API) to `logger` at debug.
 * grpc-js has one logger per process: call this once, from the composition root.
 */
export function routeGrpcLogs(logger: Logger): void {
  const log = logger.child({ component: 'grpc-js' });
  grpc.setLogger({ error: (...args: unknown[]) => log.debug(args.map(String).join(' ')) });
}

export interface ServiceHostOptions {
  /** The role's name: the health service reports it, metrics carry it as a label. */
  role: string;
  grpcHost: string;
  grpcPort: number;
  httpHost: string;
  httpPort: number;
  /** Largest gRPC message accepted, in bytes. */
  maxMessageBytes: number;
  logger: Logger;
  /** Authentication, authorization and admission limits for every call and request (decision 0087); default: open. */
  gate?: CallGate;
}

export type HttpRoute = (req: IncomingMessage, res: ServerResponse) => Promise<void> | void;

const BUILT_IN_ROUTES: ReadonlyMap<string, RouteAccess> = new Map<string, RouteAccess>([
  ['/healthz', { action: 'public' }],
  ['/readyz', { action: 'public' }],
  ['/metrics', { action: 'metrics' }],
]);

/**
 * HTTP/2 receive window, per connection and per stream, of every gRPC server and server-to-server client
 * (decision 0081). Node's default is 64 KiB: a sender then stops for a WINDOW_UPDATE every 32-64 KiB, so
 * an entry of ~90 KB (1 ms batches at 100k msg/s) cannot cross one hop without a round trip, and every
 * few entries cost extra frames and wake-ups. 1 MiB is grpc-java's default. It is also what a peer can
 * still push into a stream the receiver has paused (the broker's and bookie's in-flight limits).
 */
const GRPC_RECEIVE_WINDOW_BYTES = 1024 * 1024;

/**
 * The process shell every server role shares: a gRPC server with the standard health service, and an
 * HTTP server with /healthz (the process is alive), /readyz (the role can serve) and Prometheus /metrics.
 * The role adds its services before start() and flips readiness as it gains and loses what it needs.
 */
export class ServiceHost {
  readonly metrics = new Registry();
  private readonly grpcServer: grpc.Server;
  private readonly health = new HealthImplementation({ '': 'NOT_SERVING' });
  private readonly routes = new Map<string, { route: HttpRoute; access: RouteAccess }>();
  /** Every gRPC method's access rule, by path (`/pkg.Service/Method`); the gate's interceptor reads it. */
  private readonly methodAccess = new Map<string, MethodAccess>();
  private readonly gate: CallGate;
  private readonly endpoints = new EndpointTable();
  private httpServer: HttpServer | undefined;
  private ready = false;
  private notReadyReason = 'starting';
  private bound: { grpcPort: number; httpPort: number } | undefined;

  constructor(private readonly options: ServiceHostOptions) {
    this.gate = options.gate ?? openGate;
    this.grpcServer = new grpc.Server({
      // The open gate admits everything: skip the interceptor and its per-message hop (the rules are
      // still required by addService, so turning a gate on cannot miss a method).
      ...(this.gate === openGate ? {} : { interceptors: [gateInterceptor(this.gate, (path) => this.methodAccess.get(path))] }),
      'grpc.max_receive_message_length': options.maxMessageBytes,
      'grpc.max_send_message_length': options.maxMessageBytes,
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      'grpc.keepalive_permit_without_calls': 1,
      // Clients ping every 3 s (the SDK, to notice a frozen broker); grpc-js does not police this anyway.
      'grpc.http2.min_ping_interval_without_data_ms': 2_000,
    });
    this.registerAccess(healthService, accessForAll(healthService, { action: 'public' }));
    this.health.addToServer(this.grpcServer);
    this.metrics.setDefaultLabels({ role: options.role });
    collectDefaultMetrics({ register: this.metrics });
  }

  /**
   * Adds a gRPC service with the access rule of each of its methods (decision 0087). A method without a
   * rule is a programming error: it throws here, at start-up, rather than serve a method the gate skips.
   */
  addService<I extends grpc.UntypedServiceImplementation>(service: grpc.ServiceDefinition<I>, impl: I, access: ServiceAccess<I>): void {
    this.registerAccess(service, access);
    this.grpcServer.addService(service, impl);
  }

  /** Adds an HTTP route beside the health and metrics ones, with its access rule (decision 0087). */
  addRoute(path: string, route: HttpRoute, access: RouteAccess): void {
    this.routes.set(path, { route, access });
  }

  /** Adds the endpoints of a JSON API (the admin REST API); each carries its access rule (decision 0087). */
  addApi(endpoints: readonly HttpEndpoint[]): void {
    for (const endpoint of endpoints) this.endpoints.add(endpoint);
  }

  setReady(ready: boolean, reason = ''): void {
    if (this.ready !== ready) this.options.logger.info({ ready, reason }, 'readiness changed');
    this.ready = ready;
    this.notReadyReason = ready ? '' : reason;
    this.health.setStatus('', ready ? 'SERVING' : 'NOT_SERVING');
    this.health.setStatus(this.options.role, ready ? 'SERVING' : 'NOT_SERVING');
  }

  isReady(): boolean {
    return this.ready;
  }

  /** Binds both servers; port 0 picks a free port. Returns the ports bound. */
  async start(): Promise<{ grpcPort: number; httpPort: number }> {
    const { grpcHost, grpcPort, httpHost, httpPort, logger } = this.options;
    const boundGrpc = await new Promise<number>((resolve, reject) => {
      this.grpcServer.bindAsync(`${grpcHost}:${grpcPort}`, grpc.ServerCredentials.createInsecure(), (err, port) =>
        // grpc-js reports a clash only in its message ("... errors: [listen EADDRINUSE ...]").
        err ? reject(/EADDRINUSE/.test(err.message) ? new PortInUseError('grpc', grpcHost, grpcPort, err) : err) : resolve(port),
      );
    });
    this.widenReceiveWindows();
    const http = createServer((req, res) => void this.serveHttp(req, res));
    http.on('clientError', answerAfterGarbage);
    this.httpServer = http;
    try {
      await new Promise<void>((resolve, reject) => {
        http.once('error', (err: NodeJS.ErrnoException) => reject(err.code === 'EADDRINUSE' ? new PortInUseError('http', httpHost, httpPort, err) : err));
        http.listen(httpPort, httpHost, () => resolve());
      });
    } catch (err) {
      // The gRPC port is bound already: free it, so the process can exit and a retry can bind it.
      this.httpServer = undefined;
      this.grpcServer.forceShutdown();
      throw err;
    }
    this.bound = { grpcPort: boundGrpc, httpPort: (http.address() as AddressInfo).port };
    logger.info({ grpc: `${grpcHost}:${this.bound.grpcPort}`, http: `${httpHost}:${this.bound.httpPort}` }, 'listening');
    return this.bound;
  }

  get ports(): { grpcPort: number; httpPort: number } {
    if (!this.bound) throw new Error('ServiceHost not started');
    return this.bound;
  }

  /** Stops taking calls, waits up to graceMs for running ones, then cuts the rest. */
  async stop(graceMs = 5_000): Promise<void> {
    this.setReady(false, 'stopping');
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.grpcServer.forceShutdown();
        resolve();
      }, graceMs);
      this.grpcServer.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    const http = this.httpServer;
    if (http) {
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    }
  }

  /**
   * grpc-js applies `grpc-node.flow_control_window` to clients only (grpc/grpc-node#3058), so the server's
   * windows are set on its HTTP/2 servers: the stream window in the SETTINGS of every new session, the
   * connection window per session. Without access to them (a grpc-js change) the defaults stay; logged.
   */
  private widenReceiveWindows(): void {
    const servers = (this.grpcServer as unknown as { http2Servers?: unknown }).http2Servers;
    if (!(servers instanceof Map)) {
      this.options.logger.warn('cannot reach grpc-js HTTP/2 servers: receive windows stay at 64 KiB');
      return;
    }
    for (const server of servers.keys() as IterableIterator<Http2Server>) {
      server.updateSettings({ initialWindowSize: GRPC_RECEIVE_WINDOW_BYTES });
      server.on('session', (session: ServerHttp2Session) => {
        try {
          session.setLocalWindowSize(GRPC_RECEIVE_WINDOW_BYTES);
        } catch (err) {
          // A session already torn down needs no window; never let it throw out of the event.
          this.options.logger.debug({ err }, 'could not widen an HTTP/2 session window');
        }
      });
    }
  }

  private registerAccess(service: grpc.ServiceDefinition, access: Record<string, MethodAccess | undefined>): void {
    for (const [name, definition] of Object.entries(service)) {
      const rule = access[name];
      if (!rule) throw new Error(`no access rule for ${definition.path}: every method needs one (decision 0087)`);
      this.methodAccess.set(definition.path, rule);
    }
  }

  private async serveHttp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname;
    try {
      // The one HTTP middleware: every route and endpoint, built-in or added, passes the gate first.
      const route = BUILT_IN_ROUTES.has(path) ? undefined : this.routes.get(path);
      const access = BUILT_IN_ROUTES.get(path) ?? route?.access;
      if (access) {
        if (this.gate !== openGate) await admitHttp(this.gate, access.action, access.resourceOf?.(req, url), req, path);
        if (path === '/healthz') return text(res, 200, 'ok\n');
        if (path === '/readyz') return this.ready ? text(res, 200, 'ready\n') : text(res, 503, `not ready: ${this.notReadyReason}\n`);
        if (path === '/metrics') {
          res.setHeader('content-type', this.metrics.contentType);
          return text(res, 200, await this.metrics.metrics());
        }
        return await route!.route(req, res);
      }
      const match = this.endpoints.match(req.method ?? 'GET', path);
      if (!match) {
        if (this.endpoints.hasPath(path)) return sendReply(res, { status: 405, body: { reason: `${req.method} is not allowed on ${path}` } });
        return text(res, 404, 'not found\n');
      }
      const { endpoint, params } = match;
      const principal = this.gate === openGate
        ? ANONYMOUS
        : await admitHttp(this.gate, endpoint.access.action, endpoint.access.resourceOf?.(params), req, path);
      const body = await readJsonBody(req);
      const reply = await endpoint.handle({
        method: endpoint.method as HttpMethod, path, params, query: url.searchParams, body, headers: req.headers, principal,
      });
      sendReply(res, reply);
    } catch (err) {
      if (res.headersSent) return void res.end();
      const e = asStrataError(err);
      if (e.code === 'INTERNAL') this.options.logger.warn({ err, path }, 'http request failed');
      // A body left unread (413) would be parsed as the next request on this connection: close it.
      if (!req.complete) res.setHeader('connection', 'close');
      sendHttpError(res, e);
    }
  }
}

/**
 * Some clients send a body on a DELETE or GET without Content-Length (Node's http.request writes it raw),
 * so the body reads as the start of the next request and fails to parse while the first one is still
 * being answered. Node's default answers 400 at once and destroys the socket, losing that answer; here
 * a socket with a request in flight closes after its answer instead (the garbage is dropped unread).
 */
function answerAfterGarbage(err: Error & { code?: string }, socket: Duplex): void {
  const inFlight = (socket as Duplex & { _httpMessage?: ServerResponse })._httpMessage;
  if (inFlight && !inFlight.writableEnded) {
    inFlight.shouldKeepAlive = false;
    inFlight.once('finish', () => socket.destroy());
    return;
  }
  if (socket.writable && err.code !== 'ECONNRESET') socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
  else socket.destroy();
}

function text(res: ServerResponse, status: number, body: string): void {
  res.statusCode = status;
  if (!res.hasHeader('content-type')) res.setHeader('content-type', 'text/plain; charset=utf-8');
  res.end(body);
}

/** Channel options for server-to-server clients: keepalive so a dead peer is noticed in seconds. */
export function channelOptions(maxMessageBytes: number): grpc.ChannelOptions {
  return {
    'grpc.max_receive_message_length': maxMessageBytes,
    'grpc.max_send_message_length': maxMessageBytes,
    'grpc.keepalive_time_ms': 10_000,
    'grpc.keepalive_timeout_ms': 5_000,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.initial_reconnect_backoff_ms': 200,
    'grpc.max_reconnect_backoff_ms': 2_000,
    'grpc-node.flow_control_window': GRPC_RECEIVE_WINDOW_BYTES,
  };
}
