import { ErrorCode, StrataError } from '@strata/runtime';

/**
 * Every error the broker service raises. Each has a stable `code` (runtime's ErrorCode) that crosses
 * the wire: as a gRPC status + `strata-error-code` trailer for unary calls and stream failures, or as
 * the `error_code` of a SendError / RequestError item for one failed request on a healthy stream.
 */

/** A name, size, field or command order the broker refuses. Not retriable: the same request fails again. */
export class InvalidRequestError extends StrataError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.INVALID_ARGUMENT, message, { ...options, retriable: false });
    this.name = 'InvalidRequestError';
  }
}

export class InvalidTopicNameError extends StrataError {
  constructor(readonly topic: string, reason: string) {
    super(ErrorCode.INVALID_ARGUMENT, `invalid topic name "${truncate(topic)}": ${reason}`, { retriable: false });
    this.name = 'InvalidTopicNameError';
  }
}

export class NotFoundError extends StrataError {
  constructor(what: string) {
    super(ErrorCode.NOT_FOUND, `${what} not found`, { retriable: false });
    this.name = 'NotFoundError';
  }
}

export class AlreadyExistsError extends StrataError {
  constructor(what: string) {
    super(ErrorCode.ALREADY_EXISTS, `${what} already exists`, { retriable: false });
    this.name = 'AlreadyExistsError';
  }
}

export class MessageTooLargeError extends StrataError {
  constructor(size: number, max: number) {
    super(ErrorCode.TOO_LARGE, `entry of ${size} bytes exceeds the limit of ${max} bytes`, { retriable: false });
    this.name = 'MessageTooLargeError';
  }
}

/** A pending-publish limit is full (per producer or per broker). Retry after a receipt arrives. */
export class TooManyRequestsError extends StrataError {
  constructor(message: string) {
    super(ErrorCode.TOO_MANY_REQUESTS, message, { retriable: true });
    this.name = 'TooManyRequestsError';
  }
}

/** The producer name is already in use on the topic. */
export class ProducerBusyError extends StrataError {
  constructor(message: string) {
    super(ErrorCode.PRODUCER_BUSY, message, { retriable: false });
    this.name = 'ProducerBusyError';
  }
}

/** Another producer has exclusive access to the topic (Pulsar's ProducerFenced). */
export class ProducerFencedError extends StrataError {
  constructor(message: string) {
    super(ErrorCode.FENCED, message, { retriable: false });
    this.name = 'ProducerFencedError';
  }
}

/** The subscription's type or exclusivity forbids this consumer, or unsubscribe with others attached. */
export class ConsumerBusyError extends StrataError {
  constructor(message: string) {
    super(ErrorCode.CONSUMER_BUSY, message, { retriable: false });
    this.name = 'ConsumerBusyError';
  }
}

/** This broker does not own the topic's bundle; look the topic up again. */
export class NotOwnerError extends StrataError {
  constructor(topic: string) {
    super(ErrorCode.NOT_OWNER, `this broker does not serve ${topic}`, { retriable: true });
    this.name = 'NotOwnerError';
  }
}

/** The topic (or the broker) is closing; reconnect and retry. */
export class ServiceNotReadyError extends StrataError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.SERVICE_NOT_READY, message, { ...options, retriable: true });
    this.name = 'ServiceNotReadyError';
  }
}

/**
 * An ack receipt (Ack.durable) cannot be given: the acknowledgement lies in an individually acked range
 * above the persisted bound (maxAckedRangesPersisted), so a crash would redeliver it. Not retriable as
 * is: the receipt becomes possible once the holes below it are acknowledged.
 */
export class AckNotDurableError extends StrataError {
  constructor(message: string) {
    super(ErrorCode.PRECONDITION_FAILED, message, { retriable: false });
    this.name = 'AckNotDurableError';
  }
}

/** A namespace's resource limit refuses it (Pulsar's NotAllowed; producer and consumer limits are *Busy). */
export class NotAllowedError extends StrataError {
  constructor(message: string) {
    super(ErrorCode.NOT_ALLOWED, message, { retriable: false });
    this.name = 'NotAllowedError';
  }
}

export class UnimplementedError extends StrataError {
  constructor(what: string) {
    super(ErrorCode.UNIMPLEMENTED, `${what} is not implemented yet`, { retriable: false });
    this.name = 'UnimplementedError';
  }
}

function truncate(s: string): string {
  return s.length > 300 ? `${s.slice(0, 300)}...` : s;
}
