import * as grpc from '@grpc/grpc-js';

/**
 * Stable domain error codes. They cross the wire (trailing metadata `strata-error-code`, or the
 * `error_code` field of a stream item) and are part of the public contract: add codes, never rename.
 * docs/decisions/0003-error-codes.md lists what each means and whether it is retriable.
 */
export const ErrorCode = {
  INVALID_ARGUMENT: 'INVALID_ARGUMENT',
  NOT_FOUND: 'NOT_FOUND',
  ALREADY_EXISTS: 'ALREADY_EXISTS',
  BAD_VERSION: 'BAD_VERSION',
  TOO_LARGE: 'TOO_LARGE',
  CHECKSUM_MISMATCH: 'CHECKSUM_MISMATCH',
  OUT_OF_ORDER: 'OUT_OF_ORDER',
  FENCED: 'FENCED',
  LEDGER_CLOSED: 'LEDGER_CLOSED',
  READ_ONLY: 'READ_ONLY',
  NOT_ENOUGH_BOOKIES: 'NOT_ENOUGH_BOOKIES',
  NOT_OWNER: 'NOT_OWNER',
  SERVICE_NOT_READY: 'SERVICE_NOT_READY',
  TOO_MANY_REQUESTS: 'TOO_MANY_REQUESTS',
  PRODUCER_BUSY: 'PRODUCER_BUSY',
  CONSUMER_BUSY: 'CONSUMER_BUSY',
  METADATA_UNAVAILABLE: 'METADATA_UNAVAILABLE',
  SESSION_LOST: 'SESSION_LOST',
  TIMEOUT: 'TIMEOUT',
  UNAVAILABLE: 'UNAVAILABLE',
  CONFIG: 'CONFIG',
  INTERNAL: 'INTERNAL',
  UNIMPLEMENTED: 'UNIMPLEMENTED',
  UNAUTHENTICATED: 'UNAUTHENTICATED',
  PERMISSION_DENIED: 'PERMISSION_DENIED',
  PRECONDITION_FAILED: 'PRECONDITION_FAILED',
  /** A tenancy limit refuses it (max subscriptions per topic, ...): Pulsar's NotAllowed. */
  NOT_ALLOWED: 'NOT_ALLOWED',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const RETRIABLE: ReadonlySet<string> = new Set<ErrorCode>([
  'NOT_OWNER', 'SERVICE_NOT_READY', 'TOO_MANY_REQUESTS', 'METADATA_UNAVAILABLE', 'SESSION_LOST',
  'TIMEOUT', 'UNAVAILABLE', 'NOT_ENOUGH_BOOKIES', 'BAD_VERSION',
]);

/** Whether a code means "try again later" (the same request may then succeed). */
export function isRetriableCode(code: string): boolean {
  return RETRIABLE.has(code);
}

/** The base of every error a Strata server raises. Branch on `code`, never on the message. */
export class StrataError extends Error {
  readonly code: string;
  readonly retriable: boolean;

  constructor(code: string, message: string, options?: { cause?: unknown; retriable?: boolean }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'StrataError';
    this.code = code;
    this.retriable = options?.retriable ?? isRetriableCode(code);
  }
}

export function isStrataError(err: unknown): err is StrataError {
  return err instanceof Error && typeof (err as { code?: unknown }).code === 'string' && 'retriable' in err;
}

/** Wraps anything thrown into a StrataError, keeping the original as the cause. */
export function asStrataError(err: unknown): StrataError {
  if (isStrataError(err)) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new StrataError(ErrorCode.INTERNAL, message, { cause: err });
}

export const ERROR_CODE_METADATA_KEY = 'strata-error-code';

const GRPC_STATUS_BY_CODE: Record<string, grpc.status> = {
  INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  TOO_LARGE: grpc.status.INVALID_ARGUMENT,
  CHECKSUM_MISMATCH: grpc.status.DATA_LOSS,
  OUT_OF_ORDER: grpc.status.FAILED_PRECONDITION,
  NOT_FOUND: grpc.status.NOT_FOUND,
  ALREADY_EXISTS: grpc.status.ALREADY_EXISTS,
  BAD_VERSION: grpc.status.ABORTED,
  FENCED: grpc.status.FAILED_PRECONDITION,
  LEDGER_CLOSED: grpc.status.FAILED_PRECONDITION,
  READ_ONLY: grpc.status.FAILED_PRECONDITION,
  NOT_OWNER: grpc.status.FAILED_PRECONDITION,
  PRODUCER_BUSY: grpc.status.FAILED_PRECONDITION,
  CONSUMER_BUSY: grpc.status.FAILED_PRECONDITION,
  TOO_MANY_REQUESTS: grpc.status.RESOURCE_EXHAUSTED,
  NOT_ENOUGH_BOOKIES: grpc.status.UNAVAILABLE,
  SERVICE_NOT_READY: grpc.status.UNAVAILABLE,
  METADATA_UNAVAILABLE: grpc.status.UNAVAILABLE,
  SESSION_LOST: grpc.status.UNAVAILABLE,
  UNAVAILABLE: grpc.status.UNAVAILABLE,
  TIMEOUT: grpc.status.DEADLINE_EXCEEDED,
  UNIMPLEMENTED: grpc.status.UNIMPLEMENTED,
  UNAUTHENTICATED: grpc.status.UNAUTHENTICATED,
  PERMISSION_DENIED: grpc.status.PERMISSION_DENIED,
  PRECONDITION_FAILED: grpc.status.FAILED_PRECONDITION,
  NOT_ALLOWED: grpc.status.FAILED_PRECONDITION,
};

/**
 * Server side, the one place: a thrown error becomes a gRPC status with the domain code in the
 * trailing metadata.
 */
export function toGrpcError(err: unknown): grpc.ServiceError {
  const e = asStrataError(err);
  const metadata = new grpc.Metadata();
  metadata.set(ERROR_CODE_METADATA_KEY, e.code);
  const out = new Error(e.message) as grpc.ServiceError;
  out.code = GRPC_STATUS_BY_CODE[e.code] ?? grpc.status.INTERNAL;
  out.details = e.message;
  out.metadata = metadata;
  return out;
}

/**
 * Client side of a server-to-server call (the ledger client, brokers calling each other), the one
 * place: a gRPC error becomes a StrataError with the domain code the server sent, or UNAVAILABLE /
 * TIMEOUT for transport failures.
 */
export function fromGrpcError(err: unknown): StrataError {
  if (isStrataError(err)) return err;
  const e = err as Partial<grpc.ServiceError>;
  const sent = e.metadata?.get(ERROR_CODE_METADATA_KEY)?.[0];
  if (typeof sent === 'string') return new StrataError(sent, e.details ?? e.message ?? sent, { cause: err });
  switch (e.code) {
    case grpc.status.UNAVAILABLE:
    case grpc.status.CANCELLED:
      return new StrataError(ErrorCode.UNAVAILABLE, e.details || 'peer unavailable', { cause: err });
    case grpc.status.DEADLINE_EXCEEDED:
      return new StrataError(ErrorCode.TIMEOUT, e.details || 'deadline exceeded', { cause: err });
    case grpc.status.RESOURCE_EXHAUSTED:
      return new StrataError(ErrorCode.TOO_LARGE, e.details || 'resource exhausted', { cause: err });
    default:
      return new StrataError(ErrorCode.INTERNAL, e.details || e.message || 'unknown gRPC error', { cause: err });
  }
}
