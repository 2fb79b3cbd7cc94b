import * as grpc from '@grpc/grpc-js';

/**
 * Stable error codes of the client SDK. The server's codes (they arrive in trailing metadata
 * `strata-error-code` or in the `error_code` field of a stream item) pass through unchanged; the
 * client adds its own for what only it can detect. Branch on `code`, never on the message text.
 */
export const ClientErrorCode = {
  // Sent by brokers (same spelling as the server's ErrorCode).
  INVALID_ARGUMENT: 'INVALID_ARGUMENT',
  NOT_FOUND: 'NOT_FOUND',
  ALREADY_EXISTS: 'ALREADY_EXISTS',
  TOO_LARGE: 'TOO_LARGE',
  FENCED: 'FENCED',
  NOT_OWNER: 'NOT_OWNER',
  SERVICE_NOT_READY: 'SERVICE_NOT_READY',
  TOO_MANY_REQUESTS: 'TOO_MANY_REQUESTS',
  PRODUCER_BUSY: 'PRODUCER_BUSY',
  CONSUMER_BUSY: 'CONSUMER_BUSY',
  NOT_ALLOWED: 'NOT_ALLOWED',
  METADATA_UNAVAILABLE: 'METADATA_UNAVAILABLE',
  TIMEOUT: 'TIMEOUT',
  UNAVAILABLE: 'UNAVAILABLE',
  INTERNAL: 'INTERNAL',
  // Raised by the client itself.
  INVALID_CONFIGURATION: 'INVALID_CONFIGURATION',
  INVALID_TOPIC_NAME: 'INVALID_TOPIC_NAME',
  UNSUPPORTED: 'UNSUPPORTED',
  ALREADY_CLOSED: 'ALREADY_CLOSED',
  PRODUCER_QUEUE_FULL: 'PRODUCER_QUEUE_FULL',
  ABORTED: 'ABORTED',
  CUMULATIVE_ACK_NOT_ALLOWED: 'CUMULATIVE_ACK_NOT_ALLOWED',
  // The broker's UNAUTHENTICATED / PERMISSION_DENIED, by pulsar-client's names (not retriable).
  AUTHENTICATION: 'AUTHENTICATION',
  AUTHORIZATION: 'AUTHORIZATION',
} as const;
export type ClientErrorCode = (typeof ClientErrorCode)[keyof typeof ClientErrorCode];

const RETRIABLE: ReadonlySet<string> = new Set([
  'NOT_OWNER', 'SERVICE_NOT_READY', 'TOO_MANY_REQUESTS', 'METADATA_UNAVAILABLE', 'SESSION_LOST',
  'TIMEOUT', 'UNAVAILABLE', 'NOT_ENOUGH_BOOKIES', 'BAD_VERSION', 'PRODUCER_QUEUE_FULL',
  'LEDGER_CLOSED', 'FENCED_LEDGER',
]);

/** Whether an error with this code may succeed if the same request is made again later. */
export function isRetriableCode(code: string): boolean {
  return RETRIABLE.has(code);
}

/**
 * The result names pulsar-client puts at the end of its error messages ("Failed to receive message:
 * TimeOut"). Applications ported from pulsar-client sometimes match on them, so the SDK keeps them.
 */
const RESULT_BY_CODE: Record<string, string> = {
  TIMEOUT: 'TimeOut',
  PRODUCER_QUEUE_FULL: 'ProducerQueueIsFull',
  ALREADY_CLOSED: 'AlreadyClosed',
  INVALID_CONFIGURATION: 'InvalidConfiguration',
  INVALID_TOPIC_NAME: 'InvalidTopicName',
  INVALID_ARGUMENT: 'InvalidConfiguration',
  UNSUPPORTED: 'OperationNotSupported',
  UNAVAILABLE: 'ConnectError',
  PRODUCER_BUSY: 'ProducerBusy',
  CONSUMER_BUSY: 'ConsumerBusy',
  NOT_ALLOWED: 'NotAllowedError',
  NOT_FOUND: 'TopicNotFound',
  TOO_LARGE: 'MessageTooBig',
  NOT_OWNER: 'ServiceUnitNotReady',
  SERVICE_NOT_READY: 'ServiceUnitNotReady',
  TOO_MANY_REQUESTS: 'TooManyLookupRequestException',
  METADATA_UNAVAILABLE: 'BrokerMetadataError',
  // Sic: pulsar-client spells this one result with its enum prefix.
  FENCED: 'ResultProducerFenced',
  ABORTED: 'Interrupted',
  CUMULATIVE_ACK_NOT_ALLOWED: 'CumulativeAcknowledgementNotAllowedError',
  AUTHENTICATION: 'AuthenticationError',
  AUTHORIZATION: 'AuthorizationError',
};

/** Server codes the SDK names as pulsar-client does. */
const CLIENT_CODE_OF_SERVER_CODE: Record<string, string> = {
  UNAUTHENTICATED: 'AUTHENTICATION',
  PERMISSION_DENIED: 'AUTHORIZATION',
};

function clientCode(serverCode: string): string {
  return CLIENT_CODE_OF_SERVER_CODE[serverCode] ?? serverCode;
}

/** pulsar-client's result name for a code ("UnknownError" when there is no closer one). */
export function resultName(code: string): string {
  return RESULT_BY_CODE[code] ?? 'UnknownError';
}

/** Every error the SDK raises or rejects with. */
export class ClientError extends Error {
  readonly code: string;
  readonly retriable: boolean;
  /** pulsar-client's name for the failure (e.g. `TimeOut`), also the last word of `message`. */
  readonly result: string;

  constructor(code: string, message: string, options?: { cause?: unknown; retriable?: boolean }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ClientError';
    this.code = code;
    this.retriable = options?.retriable ?? isRetriableCode(code);
    this.result = resultName(code);
  }

  /** A copy whose message starts with an operation, the way pulsar-client words its errors. */
  withContext(operation: string): ClientError {
    const detail = this.message && this.message !== this.result ? ` (${this.message})` : '';
    return new ClientError(this.code, `${operation}: ${this.result}${detail}`, { cause: this, retriable: this.retriable });
  }
}

export function isClientError(err: unknown): err is ClientError {
  return err instanceof ClientError;
}

/** An error in pulsar-client's words: `Failed to receive message: TimeOut`. */
export function operationError(operation: string, code: string, detail?: string, cause?: unknown): ClientError {
  const result = resultName(code);
  const message = detail ? `${operation}: ${result} (${detail})` : `${operation}: ${result}`;
  return new ClientError(code, message, cause === undefined ? undefined : { cause });
}

/** An option the SDK does not accept; thrown synchronously-in-spirit at create time. */
export function configError(detail: string): ClientError {
  return new ClientError(ClientErrorCode.INVALID_CONFIGURATION, detail);
}

export function unsupportedOption(where: string, option: string, why = 'Strata does not support it yet'): ClientError {
  return new ClientError(ClientErrorCode.UNSUPPORTED, `${where} option '${option}' is not supported: ${why}`);
}

export const ERROR_CODE_METADATA_KEY = 'strata-error-code';

/**
 * The one place the SDK turns a gRPC failure into a ClientError: the broker's domain code from
 * trailing metadata when it sent one, else a code derived from the transport status.
 */
export function fromGrpcError(err: unknown): ClientError {
  if (err instanceof ClientError) return err;
  const e = err as Partial<grpc.ServiceError>;
  const sent = e.metadata?.get(ERROR_CODE_METADATA_KEY)?.[0];
  if (typeof sent === 'string' && sent) return new ClientError(clientCode(sent), e.details || e.message || sent, { cause: err });
  switch (e.code) {
    case grpc.status.UNAVAILABLE:
    case grpc.status.CANCELLED:
    case grpc.status.UNKNOWN:
      return new ClientError(ClientErrorCode.UNAVAILABLE, e.details || 'broker unavailable', { cause: err });
    case grpc.status.DEADLINE_EXCEEDED:
      return new ClientError(ClientErrorCode.TIMEOUT, e.details || 'deadline exceeded', { cause: err });
    case grpc.status.RESOURCE_EXHAUSTED:
      return new ClientError(ClientErrorCode.TOO_LARGE, e.details || 'resource exhausted', { cause: err });
    case grpc.status.UNIMPLEMENTED:
      return new ClientError(ClientErrorCode.UNSUPPORTED, e.details || 'not implemented by the broker', { cause: err });
    case grpc.status.NOT_FOUND:
      return new ClientError(ClientErrorCode.NOT_FOUND, e.details || 'not found', { cause: err });
    case grpc.status.UNAUTHENTICATED:
      return new ClientError(ClientErrorCode.AUTHENTICATION, e.details || 'authentication failed', { cause: err });
    case grpc.status.PERMISSION_DENIED:
      return new ClientError(ClientErrorCode.AUTHORIZATION, e.details || 'permission denied', { cause: err });
    default:
      return new ClientError(ClientErrorCode.INTERNAL, e.details || e.message || 'unknown gRPC error', { cause: err });
  }
}

/** The error of a stream item (`error_code` + `message` of SendError or RequestError). */
export function fromStreamError(item: { errorCode: string; message: string }): ClientError {
  return new ClientError(clientCode(item.errorCode || ClientErrorCode.INTERNAL), item.message || item.errorCode);
}

export function abortError(signal: AbortSignal | undefined, operation: string): ClientError {
  return operationError(operation, ClientErrorCode.ABORTED, 'aborted by the caller', signal?.reason);
}
