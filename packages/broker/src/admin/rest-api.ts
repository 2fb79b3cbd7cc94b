import { asStrataError, ErrorCode, StrataError, type EndpointAccess, type HttpEndpoint } from '@strata/runtime';
import { adminOps } from './admin-ops.js';
import { restStatusOf, topicParam, type RestApiContext, type RestTools } from './rest-common.js';
import { namespaceEndpoints, tenantEndpoints } from './rest-tenants.js';
import { topicEndpoints } from './rest-topics.js';

export type { RestApiContext } from './rest-common.js';

/**
 * Pulsar's admin REST API v2 and lookup v2 on the broker's HTTP port (docs/admin-rest.md), served
 * through ServiceHost.addApi so that every endpoint passes the call gate with its own access rule
 * (decision 0087). Every operation is admin-ops.ts's, shared with the gRPC Admin service; this face
 * only parses paths and bodies, shapes JSON as Pulsar does, and translates errors in one place (`rest`).
 *
 * Topic operations that need the topic's owner are answered with a 307 redirect to the owner's HTTP
 * address, as Pulsar does, with `authoritative=true` so that a broker whose view of ownership lags
 * answers 503 (retry) instead of bouncing the request back.
 *
 * Every endpoint of the REST admin API, for `ServiceHost.addApi`. */
export function restApi(ctx: RestApiContext): HttpEndpoint[] {
  const ops = adminOps(ctx);
  const logger = ctx.logger.child({ component: 'admin-rest' });
  const tools: RestTools = {
    ops, ctx,
    endpoint: (method, path, access, handle, options = {}) => ({
      method, path, access,
      handle: async (req) => {
        try {
          return await handle(req);
        } catch (err) {
          const e = asStrataError(err);
          if (e.code === ErrorCode.INTERNAL) logger.warn({ err, method, path: req.path }, 'admin request failed');
          else logger.debug({ err, method, path: req.path }, 'admin request refused');
          return { status: restStatusOf(e.code, options.busyStatus), body: { reason: e.message } };
        }
      },
    }),
  };
  return [...clusterEndpoints(tools), ...tenantEndpoints(tools), ...namespaceEndpoints(tools), ...topicEndpoints(tools), ...lookupEndpoints(tools)];
}

const superUser: EndpointAccess = { action: 'super-user' };

function clusterEndpoints({ ops, ctx, endpoint }: RestTools): HttpEndpoint[] {
  const me = () => ctx.service.ownership.self;
  const checkCluster = (name: string | undefined) => {
    if (name !== ctx.cluster) throw new StrataError(ErrorCode.NOT_FOUND, `cluster ${String(name)} not found (this is ${ctx.cluster})`, { retriable: false });
  };
  return [
    endpoint('GET', '/admin/v2/clusters', superUser, async () => ({ body: [ctx.cluster] })),
    endpoint('GET', '/admin/v2/clusters/:cluster', superUser, async (req) => {
      checkCluster(req.params.cluster);
      const http = ctx.ownership?.httpUrl ?? '';
      return { body: { serviceUrl: http ? `http://${http}` : '', brokerServiceUrl: `pulsar://${me().url}` } };
    }),
    // Pulsar's list of the cluster's active brokers: their web (HTTP) addresses, host:port.
    endpoint('GET', '/admin/v2/brokers/:cluster', superUser, async (req) => {
      checkCluster(req.params.cluster);
      return { body: (await ops.listBrokers()).map((b) => b.httpUrl || b.url) };
    }),
    endpoint('GET', '/admin/v2/brokers/health', superUser, async () => {
      if (!ctx.isReady()) throw new StrataError(ErrorCode.SERVICE_NOT_READY, 'broker is not ready (no metadata session)', { retriable: true });
      return { body: 'ok' };
    }),
  ];
}

function lookupEndpoints({ ops, endpoint }: RestTools): HttpEndpoint[] {
  const out: HttpEndpoint[] = [];
  for (const domain of ['persistent', 'non-persistent'] as const) {
    out.push(endpoint('GET', `/lookup/v2/topic/${domain}/:tenant/:namespace/:topic`,
      { action: 'lookup', resourceOf: (p) => `${domain}://${p.tenant}/${p.namespace}/${p.topic}` },
      async (req) => {
        const name = topicParam(req, domain);
        const owner = await ops.ownerOf(name);
        if (!owner) throw new StrataError(ErrorCode.SERVICE_NOT_READY, `no broker owns the bundle of ${name} yet; retry`, { retriable: true });
        const http = owner.httpUrl ? `http://${owner.httpUrl}` : '';
        return { body: { brokerUrl: `pulsar://${owner.url}`, brokerUrlTls: '', httpUrl: http, httpUrlTls: '', nativeUrl: `pulsar://${owner.url}` } };
      }));
  }
  return out;
}
