import type { ArgumentsHost } from '@nestjs/common';
import { ExceptionsHandler } from '@nestjs/core/exceptions/exceptions-handler.js';
import { httpStateOf } from './http-server-tracer.js';

const PATCHED = Symbol.for('nestjs-tracing.exceptions-handler');

/**
 * Lets the SERVER span record the exception behind a 5xx response.
 *
 * Every exception a route raises (guard, pipe, interceptor, handler) reaches
 * Nest's `ExceptionsHandler#next` before any filter turns it into a response,
 * and Nest offers no hook there. The alternatives cost more or change
 * behaviour: a global interceptor costs ~10% of throughput and misses guards,
 * and a catch-all filter would shadow the application's own. So the method is
 * wrapped once per process; the wrapper only notes the exception on the
 * request's tracing state and hands over unchanged.
 */
export function captureHttpExceptions(): void {
  const proto = ExceptionsHandler.prototype as ExceptionsHandler & { [PATCHED]?: true };
  if (proto[PATCHED]) return;
  const original = proto.next;
  Object.defineProperty(proto, PATCHED, { value: true });
  proto.next = function next(this: ExceptionsHandler, exception: unknown, host: ArgumentsHost) {
    const state = host.getType() === 'http' ? httpStateOf(host.getArgByIndex(0)) : undefined;
    if (state !== undefined) state.exception = exception;
    return original.call(this, exception as Error, host);
  };
}
