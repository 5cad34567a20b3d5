import type { Attributes, Span } from '@opentelemetry/api';
import {
  ATTR_EXCEPTION_MESSAGE,
  ATTR_EXCEPTION_STACKTRACE,
  ATTR_EXCEPTION_TYPE,
} from '@opentelemetry/semantic-conventions';

/** The shape of Node's error codes (`ECONNREFUSED`, `EAI_AGAIN`, `ERR_INVALID_ARG_TYPE`). */
const NODE_ERROR_CODE = /^E[A-Z0-9_]+$/;

/**
 * `error.type` of an error, and the `exception.type` of its event: a Node error's string code
 * (`ECONNREFUSED`), else its class name (`RpcException`, `TypeError`; RxJS's by their `name`),
 * else its `name`; `_OTHER`
 * for anything else. OpenTelemetry's `Span#recordException` takes any `code` first, a gRPC
 * status number among them, and then `name`, which Nest's `RpcException` leaves at `Error`: the
 * two attributes would name one error differently.
 */
export function errorTypeOf(thrown: unknown): string {
  const error = carried(thrown);
  if (typeof error !== 'object' || error === null) return '_OTHER';
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && NODE_ERROR_CODE.test(code)) return code;
  if (error instanceof Error) {
    const type = error.constructor?.name;
    // RxJS makes its errors (`TimeoutError`, `EmptyError`, ...) with classes named `<name>Impl`.
    if (type !== undefined && type === `${error.name}Impl`) return error.name;
    return type || error.name || '_OTHER';
  }
  const name = (error as { name?: unknown }).name;
  return typeof name === 'string' && name !== '' ? name : '_OTHER';
}

/** A status message for an exception, an RPC error payload (`{ message }`) or a string. */
export function errorMessage(thrown: unknown): string | undefined {
  const error = carried(thrown);
  if (error instanceof Error) return error.message;
  if (typeof error === 'string') return error;
  const message = (error as { message?: unknown } | null)?.message;
  return typeof message === 'string' ? message : undefined;
}

/**
 * Adds the `exception` event of `error` to `span`: `exception.type` as {@link errorTypeOf} has
 * it, the message and the stack. Anything with neither a type nor a message (a thrown string, a
 * bare object) is recorded by its string form as the message.
 */
export function addExceptionEvent(span: Span, thrown: unknown): void {
  // Nothing to record on a span that records nothing (and a stack is dear to format).
  if (!span.isRecording()) return;
  const error = carried(thrown);
  const attributes: Attributes = {};
  if (typeof error === 'object' && error !== null) {
    const type = errorTypeOf(error);
    if (type !== '_OTHER') attributes[ATTR_EXCEPTION_TYPE] = type;
    const { message, stack } = error as { message?: unknown; stack?: unknown };
    if (typeof message === 'string' && message !== '') attributes[ATTR_EXCEPTION_MESSAGE] = message;
    if (typeof stack === 'string' && stack !== '') attributes[ATTR_EXCEPTION_STACKTRACE] = stack;
  }
  if (
    attributes[ATTR_EXCEPTION_TYPE] === undefined &&
    attributes[ATTR_EXCEPTION_MESSAGE] === undefined
  ) {
    attributes[ATTR_EXCEPTION_MESSAGE] = errorText(error);
  }
  span.addEvent('exception', attributes);
}

/**
 * The error a plain wrapper object carries, for one with no message of its own: Nest's RabbitMQ
 * client rejects with amqp-connection-manager's `{ err, url }` when the broker cannot be reached.
 * Anything else is itself.
 */
function carried(error: unknown): unknown {
  if (typeof error !== 'object' || error === null || error instanceof Error) return error;
  const { message, err, cause } = error as { message?: unknown; err?: unknown; cause?: unknown };
  if (typeof message === 'string') return error;
  const inner = err ?? cause;
  return typeof inner === 'object' && inner !== null ? inner : error;
}

/** `String(value)`, safe for an object with no prototype or a throwing `toString`. */
export function errorText(value: unknown): string {
  try {
    return String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}
