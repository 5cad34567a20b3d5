import { context } from '@opentelemetry/api';
import { isObservable, tap } from 'rxjs';
import { isThenable } from '../decorators/trace.decorator.js';
import type { MicroservicesPackage } from './microservices-package.js';
import { RPC_SERVER_STATE, stateOfHandlerArgs, type RpcServerState } from './rpc-server-tracer.js';

const PATCHED = Symbol.for('nestjs-tracing.rpc-exceptions-handler');

type Handle = (this: unknown, ...args: unknown[]) => unknown;

/**
 * Lets the span of a message record the exception its processing raised.
 *
 * Every exception a message pattern raises (guard, pipe, interceptor, handler, or an Observable
 * the handler returned that errors) reaches `RpcExceptionsHandler#handle` before any filter
 * turns it into a reply, and the server's processing end hook is told nothing of it. As on the
 * HTTP side, the method is wrapped once per process; the wrapper only notes the exception on the
 * message's tracing state, found by the handler's arguments (see `stateOfHandlerArgs`), else in
 * the active context, and hands over unchanged.
 */
export function captureRpcExceptions(pkg: MicroservicesPackage): void {
  const proto = pkg.RpcExceptionsHandler.prototype as unknown as {
    handle: Handle;
    [PATCHED]?: true;
  };
  if (proto[PATCHED]) return;
  const original = proto.handle;
  Object.defineProperty(proto, PATCHED, { value: true });
  proto.handle = function handle(this: unknown, ...args: unknown[]) {
    const exception = args[0];
    const state =
      stateOfHandlerArgs((args[1] as { getArgs?: () => unknown[] } | undefined)?.getArgs?.()) ??
      (context.active().getValue(RPC_SERVER_STATE) as RpcServerState | undefined);
    if (state === undefined || state.failed || state.ended) return original.apply(this, args);
    state.failed = true;
    state.error = exception;
    const answer = original.apply(this, args);
    // What the exception layer (Nest's filter, or the app's) answers with is what the caller
    // gets: an error, or (a filter that recovered) a normal answer, and then the span is not an
    // error either. A gRPC call's status is that answer's, which grpc-js sends. Noted as it goes
    // out; nothing else changes.
    return followAnswer(state, answer);
  };
}

/**
 * Notes how the exception layer's answer goes: an Observable as it errors or completes; a
 * Promise (an `async catch()`) by what it settles to, which Nest sends on in its turn (an
 * Observable, as `super.catch()` returns, is followed in its turn); any other value is a normal
 * answer.
 */
function followAnswer(state: RpcServerState, answer: unknown): unknown {
  if (isObservable(answer)) {
    return answer.pipe(
      tap({
        error: (sent: unknown) => failedWith(state, sent),
        complete: () => recovered(state),
      }),
    );
  }
  if (isThenable(answer)) {
    // Adopted into a native Promise: a thenable's own `then` may return anything.
    return Promise.resolve(answer).then(
      (value) => followAnswer(state, value),
      (sent: unknown) => {
        failedWith(state, sent);
        throw sent;
      },
    );
  }
  recovered(state);
  return answer;
}

function failedWith(state: RpcServerState, sent: unknown): void {
  state.sent = sent;
  state.answered = true;
}

function recovered(state: RpcServerState): void {
  if (state.answered) return;
  state.answered = true;
  state.recovered = true;
}
