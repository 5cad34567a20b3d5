import type { ArgumentsHost } from '@nestjs/common';
import { ExceptionsHandler } from '@nestjs/core/exceptions/exceptions-handler.js';
import { RouterResponseController } from '@nestjs/core/router/router-response-controller.js';
import { isObservable, tap } from 'rxjs';
import { httpStateOf, type HttpRequestState } from './http-server-tracer.js';

const PATCHED = Symbol.for('nestjs-tracing.exceptions-handler');
const SSE_PATCHED = Symbol.for('nestjs-tracing.sse');

/**
 * Whether a response (Node's, or Fastify's reply around it) has sent its head, or, a Fastify
 * reply, is sent or hijacked (as Nest's adapter asks before answering for an exception).
 */
function headSent(response: unknown): boolean {
  if (response === null || typeof response !== 'object') return false;
  const reply = response as { raw?: { headersSent?: unknown }; sent?: unknown };
  if (reply.raw !== undefined && reply.sent === true) return true;
  return ((reply.raw ?? response) as { headersSent?: unknown }).headersSent === true;
}

/**
 * An exception that came once the response had started: no filter can answer for it any more,
 * and the status that went out says nothing of it (Nest only ends the response).
 */
function noteLateException(state: HttpRequestState, exception: unknown): void {
  state.exception = exception;
  state.exceptionAfterHead = true;
}

/**
 * Lets the SERVER span record the exception behind a 5xx response, or one that came after the
 * response had started.
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
  captureSseErrors();
  const proto = ExceptionsHandler.prototype as ExceptionsHandler & { [PATCHED]?: true };
  if (proto[PATCHED]) return;
  const original = proto.next;
  Object.defineProperty(proto, PATCHED, { value: true });
  proto.next = function next(this: ExceptionsHandler, exception: unknown, host: ArgumentsHost) {
    const state = host.getType() === 'http' ? httpStateOf(host.getArgByIndex(0)) : undefined;
    if (state !== undefined) {
      if (headSent(host.getArgByIndex(1))) noteLateException(state, exception);
      else state.exception = exception;
    }
    return original.call(this, exception as Error, host);
  };
}

type Sse = (result: unknown, response: unknown, request: unknown, ...rest: unknown[]) => unknown;

/**
 * An `@Sse()` stream that fails once its head is out: Nest sends the client an `error` event and
 * ends the stream normally, and no exception layer sees it. The handler's Observable is followed
 * for its error, per SSE request only.
 */
function captureSseErrors(): void {
  const proto = RouterResponseController.prototype as unknown as {
    sse?: Sse;
    [SSE_PATCHED]?: true;
  };
  const original = proto.sse;
  if (proto[SSE_PATCHED] || typeof original !== 'function') return;
  Object.defineProperty(proto, SSE_PATCHED, { value: true });
  proto.sse = function sse(this: unknown, result, response, request, ...rest) {
    const state = httpStateOf(request);
    if (state === undefined || !state.span.isRecording()) {
      return original.call(this, result, response, request, ...rest);
    }
    const follow = (source: unknown): unknown =>
      isObservable(source)
        ? source.pipe(
            tap({
              error: (error: unknown) => {
                if (headSent(response)) noteLateException(state, error);
              },
            }),
          )
        : source;
    // An Observable is followed as it is, so that Nest subscribes to it as soon as it would; an
    // async handler's Promise of one reaches Nest a microtask later than it would untraced.
    const followed = isObservable(result) ? follow(result) : Promise.resolve(result).then(follow);
    return original.call(this, followed, response, request, ...rest);
  };
}
