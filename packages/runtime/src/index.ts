export { backoffMs, Random, sleep, systemClock, type Clock } from './clock.js';
export { ConfigError, describeConfig, field, loadConfig, type ConfigSpec, type ConfigValues, type FieldSpec } from './config.js';
export {
  asStrataError, ERROR_CODE_METADATA_KEY, ErrorCode, fromGrpcError, isRetriableCode, isStrataError, StrataError, toGrpcError,
} from './errors.js';
export {
  accessForAll, openGate, principalOf, PRINCIPAL_METADATA_KEY, type Action, type AuthorizeRequest, type CallCredentials, type CallGate, type MethodAccess,
  type Principal, type RouteAccess, type ServiceAccess,
} from './gate.js';
export {
  HTTP_API_MAX_BODY_BYTES, httpStatusOf, type EndpointAccess, type HttpEndpoint, type HttpMethod, type HttpReply, type HttpRequest,
} from './http-api.js';
export { channelOptions, PortInUseError, routeGrpcLogs, ServiceHost, type HttpRoute, type ServiceHostOptions } from './host.js';
export { Lifecycle, type Component } from './lifecycle.js';
export { createLogger, LOG_LEVELS, silentLogger, type Logger } from './logger.js';
export { SERVER_NODE_FLAGS } from './node-flags.js';
export { loadProtos, PROTO_LOADER_OPTIONS, protosDir } from './protos.js';
