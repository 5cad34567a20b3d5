import { context } from '@opentelemetry/api';
import type { HttpServer } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Logger } from '@nestjs/common';
import type { ResolvedHttpConfig } from '../sdk/tracing-config.js';
import { captureHttpExceptions } from './http-exception-capture.js';
import {
  HTTP_STATE,
  HttpServerTracer,
  hookServerResponse,
  inRequestContext,
  markMiddleware,
  markNotFoundHandler,
  reenter,
  runUntraced,
  type HttpRequestState,
} from './http-server-tracer.js';

const logger = new Logger('TracingModule');

type Done = (err?: unknown) => void;
type RequestHook = (req: unknown, res: unknown, done: Done) => unknown;
type HookableAdapter = HttpServer & {
  getType(): string;
  setOnRequestHook?(hook: RequestHook): void;
  onRequestHook?: RequestHook;
};
type TracedRawRequest = IncomingMessage & { [HTTP_STATE]?: HttpRequestState | null };
interface ServerLike {
  prependListener(
    event: 'request',
    listener: (req: IncomingMessage, res: ServerResponse) => void,
  ): unknown;
}
interface FastifyLikeRequest {
  raw: TracedRawRequest;
  routeOptions?: { url?: string };
}
interface FastifyLike {
  addHook(
    name: 'preHandler',
    hook: (req: FastifyLikeRequest, reply: unknown, done: Done) => void,
  ): void;
}

let reported = false;
function reportOnce(error: unknown): void {
  if (reported) return;
  reported = true;
  logger.warn(
    `Inbound HTTP tracing failed for a request, which went on untraced: ${(error as Error)?.message ?? String(error)}`,
  );
}

/**
 * Wires inbound HTTP tracing into a Nest HTTP adapter (Express or Fastify):
 * - the adapter's request hook (the first thing to see a request, before body
 *   parsing and middleware) starts the SERVER span and runs the rest of the
 *   request inside it;
 * - just before the route runs (after Express's `app.use` middleware, at
 *   Fastify's preHandler) the span is made active again: body-parser and
 *   Fastify keep the async context themselves, but an app's own parser or
 *   hook that resumes from an event emitted elsewhere would otherwise run
 *   guards, pipes, interceptors and the handler outside the span;
 * - Fastify knows the route template at onRequest; Express keeps it on the
 *   request.
 * Returns false when the adapter offers no request hook.
 */
export function installHttpTracing(adapter: HttpServer, config: ResolvedHttpConfig): boolean {
  const hookable = adapter as HookableAdapter;
  if (typeof hookable.setOnRequestHook !== 'function' || typeof hookable.getType !== 'function') {
    return false;
  }
  const type = hookable.getType();
  const tracer = new HttpServerTracer(config);
  captureHttpExceptions();
  hookServerResponse();

  // The span starts in a 'request' listener ahead of the framework's, on the request and response
  // as Node made them: every request object still shares one hidden class there, so reading it
  // and adding the state costs little. By the first Express middleware each request has a class
  // of its own and every property access misses V8's caches. The request hook below still starts
  // the span when the request reached the app some other way (the app handed to a server of the
  // user's own, say).
  const server = hookable.getHttpServer?.() as ServerLike | undefined;
  if (server !== undefined && server !== null && typeof server.prependListener === 'function') {
    server.prependListener('request', (req: IncomingMessage, res: ServerResponse) => {
      try {
        tracer.start(req, res, true);
      } catch (error) {
        // Served untraced (e.g. an http.ignore predicate that throws), without asking again.
        (req as TracedRawRequest)[HTTP_STATE] ??= null;
        reportOnce(error);
      }
    });
  }

  // Keep a hook the application set before us, running it inside the span.
  const previous = hookable.onRequestHook;
  const onExpress = type === 'express';
  hookable.setOnRequestHook(function tracingRequestHook(this: unknown, req, res, done) {
    // Express's request and response are Node's own; Fastify wraps them (`raw`).
    const rawReq = (onExpress ? req : ((req as { raw?: unknown }).raw ?? req)) as TracedRawRequest;
    const rawRes = (onExpress ? res : ((res as { raw?: unknown }).raw ?? res)) as ServerResponse;
    let state: HttpRequestState | undefined;
    try {
      const early = rawReq[HTTP_STATE];
      state = early === undefined ? tracer.start(rawReq, rawRes, true) : (early ?? undefined);
      // Fastify has routed the request already; keep the route even if body parsing fails.
      if (state !== undefined && rawReq !== req)
        state.route = fastifyRoute((req as FastifyLikeRequest).routeOptions?.url);
    } catch (error) {
      // Tracing must never fail a request (e.g. an http.ignore predicate that throws).
      reportOnce(error);
    }
    // An ignored request (null) runs with tracing suppressed.
    const untraced = state === undefined && rawReq[HTTP_STATE] === null;
    if (previous !== undefined) {
      const run = () => previous.call(this, req, res, done);
      if (state !== undefined) return context.with(state.context, run);
      return untraced ? runUntraced(run) : run();
    }
    if (state !== undefined) return context.with(state.context, done);
    return untraced ? runUntraced(done) : done();
  });

  reenterAtMiddleware(adapter);
  if (type === 'express') {
    adapter.use((req: IncomingMessage, _res: ServerResponse, next: () => void) =>
      reenter(req, next),
    );
    // A request Nest serves from its not-found handler matched none of the app's routes, though
    // it may have passed one: a route whose version (header or media-type versioning) or host
    // did not match hands the request on with `next()`, and `req.route` stays that route's. So
    // the handler notes, on the request, that it has no route (named by its method only). Under
    // a global prefix the handler is a route of its own (`*path`), noted as such too.
    const withNotFound = adapter as {
      setNotFoundHandler?: (...args: unknown[]) => unknown;
      normalizePrefix?: (prefix: string) => string;
    };
    const setNotFoundHandler = withNotFound.setNotFoundHandler;
    if (typeof setNotFoundHandler === 'function') {
      withNotFound.setNotFoundHandler = function (this: unknown, ...args: unknown[]) {
        const prefix = typeof args[1] === 'string' ? args[1] : '';
        const normalized =
          typeof withNotFound.normalizePrefix === 'function'
            ? withNotFound.normalizePrefix(prefix)
            : prefix.replace(/^\/+|\/+$/g, '');
        const handler = args[0];
        if (typeof handler === 'function') {
          const notFound = function (this: unknown, ...handlerArgs: unknown[]) {
            const state = (handlerArgs[0] as TracedRawRequest | undefined)?.[HTTP_STATE];
            if (state) state.unrouted = true;
            return (handler as (...a: unknown[]) => unknown).apply(this, handlerArgs);
          };
          args[0] = notFound;
          if (normalized) markNotFoundHandler(notFound);
        }
        return setNotFoundHandler.apply(this, args);
      };
    }
  } else if (type === 'fastify') {
    const fastify = adapter.getInstance() as FastifyLike;
    fastify.addHook('preHandler', (request, _reply, done) => {
      const state = request.raw[HTTP_STATE];
      if (state === null) return runUntraced(done);
      if (state === undefined) return done();
      state.route ??= fastifyRoute(request.routeOptions?.url);
      if (inRequestContext(state)) return done();
      context.with(state.context, done);
    });
  }
  return true;
}

type ExpressHandler = (req: IncomingMessage, res: ServerResponse, next: Done) => unknown;

type Mount = (path: unknown, callback: unknown) => unknown;

/**
 * Makes the span active again, if it was lost, as each of Nest's middleware (`MiddlewareConsumer`)
 * starts and as it hands the request on, on Express and Fastify alike: a middleware that calls
 * `next()` from a callback that lost the async context would otherwise take the rest of the
 * request (the next middleware, guards, pipes, interceptors, handler) out of the span. The
 * adapter's middleware factory (synchronous on Express, asynchronous on Fastify) mounts each one.
 * Only apps with Nest middleware pay for it, a closure per middleware a request.
 */
function reenterAtMiddleware(adapter: HttpServer): void {
  const withMiddleware = adapter as { createMiddlewareFactory?: (method: unknown) => unknown };
  const createMiddlewareFactory = withMiddleware.createMiddlewareFactory;
  if (typeof createMiddlewareFactory !== 'function') return;
  const wrapMount = (mount: unknown): unknown =>
    typeof mount !== 'function'
      ? mount
      : (path: unknown, callback: unknown) =>
          (mount as Mount)(
            path,
            typeof callback === 'function' ? reentering(callback as ExpressHandler) : callback,
          );
  withMiddleware.createMiddlewareFactory = function (this: unknown, method: unknown) {
    const mount = createMiddlewareFactory.call(this, method);
    return mount instanceof Promise ? mount.then(wrapMount) : wrapMount(mount);
  };
}

/** A middleware that runs, and hands the request on, in its request's span context. */
function reentering(handler: ExpressHandler): ExpressHandler {
  const wrapped: ExpressHandler = function (this: unknown, req, res, next) {
    const state = (req as TracedRawRequest)[HTTP_STATE];
    if (state === undefined) return handler.call(this, req, res, next);
    const onward: Done = (err) => reenter(req, () => next(err));
    if (state !== null && inRequestContext(state)) return handler.call(this, req, res, onward);
    return reenter(req, () => handler.call(this, req, res, onward));
  };
  // Mounted as a route when limited to a method: its path is not the request's route.
  markMiddleware(wrapped);
  return wrapped;
}

/**
 * A Fastify route's template as `http.route`. Nest's routes all start with `/`; a plugin's
 * catch-all does not (`@fastify/cors` answers every preflight from `OPTIONS *`), and is no route
 * of the app's: such a request is named by its method, as on Express.
 */
function fastifyRoute(url: string | undefined): string | undefined {
  return url !== undefined && url.startsWith('/') ? url : undefined;
}
