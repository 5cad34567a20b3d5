import {
  context,
  propagation,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Span,
} from '@opentelemetry/api';
import {
  ATTR_CLIENT_ADDRESS,
  ATTR_ERROR_TYPE,
  ATTR_HTTP_REQUEST_HEADER,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_REQUEST_METHOD_ORIGINAL,
  ATTR_HTTP_RESPONSE_HEADER,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_HTTP_ROUTE,
  ATTR_NETWORK_PEER_ADDRESS,
  ATTR_NETWORK_PEER_PORT,
  ATTR_NETWORK_PROTOCOL_VERSION,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  ATTR_URL_PATH,
  ATTR_URL_QUERY,
  ATTR_URL_SCHEME,
  ATTR_USER_AGENT_ORIGINAL,
} from '@opentelemetry/semantic-conventions';
import { isTracingSuppressed, suppressTracing } from '@opentelemetry/core';
import {
  ServerResponse,
  type IncomingMessage,
  type OutgoingHttpHeader,
  type OutgoingHttpHeaders,
} from 'node:http';
import type { TLSSocket } from 'node:tls';
import {
  appendServerTiming,
  formatTraceparent,
  forwardedFacts,
  httpHeadersGetter,
  parseHost,
} from '../propagation/http.carrier.js';
import type { ResolvedHttpConfig } from '../sdk/tracing-config.js';
import { EMPTY_CONTEXT, withSpan } from '../sdk/chain-context.js';
import { errorMessage, errorTypeOf, addExceptionEvent } from '../sdk/errors.js';
import { startSpanWith } from '../sdk/tracer.js';
import { compileIgnoreRules, type IgnoreMatcher } from './http-ignore.js';
import { redactedQuery } from './query-redaction.js';

/** Where a request's tracing state lives: on the raw request and response objects. */
export const HTTP_STATE = Symbol('nestjs-tracing.http');

/** The tracing state of one request. */
export interface HttpRequestState {
  span: Span;
  /** The context with the SERVER span active; re-entered just before the route runs. */
  context: Context;
  request: IncomingMessage;
  /** Route template, when the framework found a route. */
  route: string | undefined;
  /** The exception Nest's exception layer handled for this request, if any. */
  exception: unknown;
  /** That exception came after the response's head had gone out (its status is no sign of it). */
  exceptionAfterHead: boolean;
  /**
   * Whether writeHead has to run {@link beforeHeaders}: the trace headers are on, or response
   * headers are recorded. Cleared once it ran.
   */
  hookHeaders: boolean;
  /** Add traceresponse / Server-Timing when the headers go out. */
  traceResponse: boolean;
  /** The span name before a route was known: the method. */
  name: string;
  /** The header object a framework passed to writeHead (Fastify does), if any. */
  headerObject: OutgoingHttpHeaders | undefined;
  /** Served by the framework's not-found handler: no route of the app's matched. */
  unrouted: boolean;
  /** The raw header list given to `writeHead` (flat or as pairs), if one was. */
  headerList: unknown[] | undefined;
  /** Response headers to record, shared by all requests of one tracer. */
  responseHeaders: ReadonlyArray<[string, string]>;
  ended: boolean;
}

type TracedRequest = IncomingMessage & {
  /** null: seen by the server's request listener and not traced (an ignored route). */
  [HTTP_STATE]?: HttpRequestState | null;
  route?: unknown;
  baseUrl?: string;
  originalUrl?: string;
};
type TracedResponse = ServerResponse & { [HTTP_STATE]?: HttpRequestState };

const KNOWN_METHODS = new Set([
  'CONNECT',
  'DELETE',
  'GET',
  'HEAD',
  'OPTIONS',
  'PATCH',
  'POST',
  'PUT',
  'QUERY',
  'TRACE',
]);

/**
 * Starts and ends the SERVER span of each inbound HTTP request on the raw Node
 * request/response, so the same code serves Express and Fastify. Everything
 * that does not depend on the request (header attribute names, ignore rules) is
 * prepared once here.
 */
export class HttpServerTracer {
  private readonly ignore: IgnoreMatcher | undefined;
  private readonly requestHeaders: ReadonlyArray<[string, string]>;
  private readonly responseHeaders: ReadonlyArray<[string, string]>;
  private readonly traceResponse: boolean;

  constructor(config: ResolvedHttpConfig) {
    this.ignore = compileIgnoreRules(config.ignore);
    this.requestHeaders = config.requestHeaders.map((h) => [h, ATTR_HTTP_REQUEST_HEADER(h)]);
    this.responseHeaders = config.responseHeaders.map((h) => [h, ATTR_HTTP_RESPONSE_HEADER(h)]);
    this.traceResponse = config.traceResponse;
  }

  /**
   * Starts the span of a request and hooks its end to the response. Returns
   * the state (with the context to run the rest of the request in), or
   * undefined when the request is ignored (or already traced). `markIgnored`
   * leaves a null on an ignored request, so that a later hook does not test
   * the ignore rules again.
   */
  start(
    req: TracedRequest,
    res: TracedResponse,
    markIgnored = false,
  ): HttpRequestState | undefined {
    if (req[HTTP_STATE] !== undefined) return undefined;
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    let path = q === -1 ? url : url.slice(0, q);
    // `GET http://host/health HTTP/1.1` (absolute form, as sent to a proxy) is served like
    // `GET /health`: the path is the URL's.
    if (path.charCodeAt(0) !== 47 /* / */) path = pathOfTarget(path);
    if (this.ignore !== undefined && this.ignore(path, req)) {
      if (markIgnored) req[HTTP_STATE] = null;
      return undefined;
    }

    const headers = req.headers;
    const rawMethod = req.method ?? 'GET';
    const method = KNOWN_METHODS.has(rawMethod) ? rawMethod : '_OTHER';
    // When another instrumentation (e.g. @opentelemetry/sdk-node's HTTP one)
    // already started a span for this request, ours becomes its child rather
    // than its sibling. Otherwise a malformed traceparent is dropped by the
    // propagator and the request simply starts a new trace.
    const active = context.active();
    const parent = isServerSpan(trace.getSpan(active))
      ? active
      : propagation.extract(EMPTY_CONTEXT, headers, httpHeadersGetter);
    // Key by key, not as a literal with computed keys (`{ [ATTR_HTTP_REQUEST_METHOD]: method }`):
    // V8 can end up defining each computed key of a literal through its runtime and migrating
    // the object's map, on every request: 34k instructions per Fastify `GET /hello` for these
    // three keys (callgrind), where a keyed store of a constant key hits V8's caches.
    const attributes: Attributes = {};
    attributes[ATTR_HTTP_REQUEST_METHOD] = method;
    attributes[ATTR_URL_PATH] = path;
    if (q !== -1) attributes[ATTR_URL_QUERY] = redactedQuery(url.slice(q + 1));
    // Behind a proxy, the conventions ask for the original request's client, host and scheme,
    // as `Forwarded` or `X-Forwarded-*` report them, and the proxy's address as the peer.
    const forwarded = forwardedFacts(headers);
    attributes[ATTR_URL_SCHEME] =
      forwarded?.proto ?? ((req.socket as TLSSocket | undefined)?.encrypted ? 'https' : 'http');
    if (method === '_OTHER') attributes[ATTR_HTTP_REQUEST_METHOD_ORIGINAL] = rawMethod;
    const host = forwarded?.host ?? headers.host ?? headers[':authority'];
    if (typeof host === 'string' && host !== '') {
      const { address, port } = parseHost(host);
      if (address !== '') attributes[ATTR_SERVER_ADDRESS] = address;
      if (port !== undefined) attributes[ATTR_SERVER_PORT] = port;
    }
    const peer = req.socket?.remoteAddress;
    const client = forwarded?.client ?? peer;
    if (client !== undefined) attributes[ATTR_CLIENT_ADDRESS] = client;
    if (forwarded !== undefined && peer !== undefined) {
      attributes[ATTR_NETWORK_PEER_ADDRESS] = peer;
      const peerPort = req.socket?.remotePort;
      if (peerPort !== undefined) attributes[ATTR_NETWORK_PEER_PORT] = peerPort;
    }
    const agent = headers['user-agent'];
    if (agent !== undefined) attributes[ATTR_USER_AGENT_ORIGINAL] = agent;
    // The conventions' value for HTTP/2 is `2`, where Node says `2.0`.
    const version = req.httpVersion;
    attributes[ATTR_NETWORK_PROTOCOL_VERSION] = version === '2.0' ? '2' : version;
    for (const [name, key] of this.requestHeaders) {
      const value = headers[name];
      if (value !== undefined) attributes[key] = Array.isArray(value) ? value : [value];
    }

    const name = method === '_OTHER' ? 'HTTP' : method;
    const span = startSpanWith(name, SpanKind.SERVER, attributes, parent);
    const state: HttpRequestState = {
      span,
      context: withSpan(parent, span),
      request: req,
      route: undefined,
      exception: undefined,
      exceptionAfterHead: false,
      hookHeaders: this.traceResponse || this.responseHeaders.length > 0,
      traceResponse: this.traceResponse,
      headerObject: undefined,
      headerList: undefined,
      unrouted: false,
      name,
      responseHeaders: this.responseHeaders,
      ended: false,
    };
    req[HTTP_STATE] = state;
    res[HTTP_STATE] = state;
    // Node's ServerResponse (Express's and Fastify's responses inherit from it) is hooked once
    // per process; any other response object (HTTP/2 compatibility) gets a hook of its own.
    if (state.hookHeaders && res.writeHead !== hookedWriteHead) hookOwnWriteHead(res);
    // `on`, not `once`: onClose guards itself, and `once` allocates a wrapper per request.
    res.on('close', onClose);
    open++;
    return state;
  }
}

/** A SERVER span another instrumentation started for this very request. */
function isServerSpan(span: Span | undefined): boolean {
  return span !== undefined && (span as Span & { kind?: SpanKind }).kind === SpanKind.SERVER;
}

/** The path of a request target that is not a path: absolute form (`http://host/p`), or as it is. */
export function pathOfTarget(target: string): string {
  const scheme = target.indexOf('://');
  if (scheme === -1) return target; // `OPTIONS *`, `CONNECT host:port`
  const slash = target.indexOf('/', scheme + 3);
  return slash === -1 ? '/' : target.slice(slash);
}

/** Ends the span once the response is sent or the connection dropped; shared by all requests. */
function onClose(this: TracedResponse): void {
  const state = this[HTTP_STATE];
  if (state === undefined || state.ended) return;
  state.ended = true;
  open--;
  finish(state, this);
}

/** Responses whose span is still open, in this process. */
let open = 0;

/**
 * Lets the spans of responses the server has just cut off end before the SDK shuts down. Nest
 * resolves its HTTP server's close (and calls the shutdown hooks) as the last connection goes,
 * but a response's `'close'`, which ends its span, comes a turn or two later: a request in
 * flight when `forceCloseConnections` closed its socket, or whose client left while `close()`
 * waited for it (an open SSE stream), would be ended by a provider already shut down, and lost.
 * Waits a few turns of the event loop at most, and none when no response is open.
 */
export async function responsesClosed(maxTurns = 5): Promise<void> {
  for (let turn = 0; turn < maxTurns && open > 0; turn++) {
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

function finish(state: HttpRequestState, res: TracedResponse): void {
  const span = state.span;
  if (!span.isRecording()) {
    span.end();
    return;
  }
  const req = state.request as TracedRequest;
  const status = res.statusCode;
  // A request that failed before its route ran (a malformed body, a middleware that threw or
  // turned it away) still has the route it was for. One an app.use middleware answered (a static
  // file, a CORS preflight, a redirect) has none, nor has one that matches no route.
  const route = state.unrouted ? undefined : (state.route ?? expressRoute(req, status));
  if (route !== undefined) {
    span.setAttribute(ATTR_HTTP_ROUTE, route);
    span.updateName(spanName(state.name, route));
  }
  // end() not called before the connection closed. (A response that was ended
  // but not flushed, as with Fastify's inject(), is complete.)
  let aborted = !res.writableEnded;
  // Or ended on a connection the client had already closed: body-parser answers an upload the
  // client abandoned with a 400 nobody receives. Only error statuses are checked (that is where
  // it happens), which spares every other request the reads.
  if (!aborted && status >= 400 && !res.writableFinished && res.socket?.destroyed === true) {
    aborted = true;
  }
  if (!aborted || res.headersSent) span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status);
  for (const [name, key] of state.responseHeaders) {
    const value = res.getHeader(name) ?? headerGiven(state, name);
    if (value !== undefined) {
      span.setAttribute(key, Array.isArray(value) ? value.map(String) : [String(value)]);
    }
  }

  const exception = state.exception;
  if (status >= 500) {
    if (exception !== undefined) {
      addExceptionEvent(span, exception);
      const type = errorTypeOf(exception);
      span.setAttribute(ATTR_ERROR_TYPE, type === '_OTHER' ? String(status) : type);
      span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(exception) });
    } else {
      span.setAttribute(ATTR_ERROR_TYPE, String(status));
      span.setStatus({ code: SpanStatusCode.ERROR });
    }
  } else if (state.exceptionAfterHead) {
    // The handler failed after the head went out with its status (it wrote the head itself, or
    // an SSE stream broke): the client got a cut-short answer.
    addExceptionEvent(span, exception);
    span.setAttribute(ATTR_ERROR_TYPE, errorTypeOf(exception));
    span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(exception) });
  }
  if (aborted) {
    // The client went away before the whole response was written.
    span.setAttribute(ATTR_ERROR_TYPE, 'aborted');
    span.setStatus({
      code: SpanStatusCode.ERROR,
      message: 'The connection closed before the response was complete.',
    });
  }
  span.end();
}

/**
 * A response header given to `writeHead` rather than set on the response, by its lower-case
 * name: Node keeps such headers out of `getHeader()` unless one was set before. The object keeps
 * the names as the app spelled them (`Content-Type`, as Nest's SSE writes it).
 */
function headerGiven(state: HttpRequestState, name: string): OutgoingHttpHeader | undefined {
  const object = state.headerObject;
  if (object !== undefined) {
    const exact = object[name];
    if (exact !== undefined) return exact;
    for (const key in object) {
      if (key.length === name.length && key.toLowerCase() === name) return object[key];
    }
    return undefined;
  }
  const list = state.headerList;
  if (list === undefined) return undefined;
  const values: string[] = [];
  const add = (key: unknown, value: unknown) => {
    if (typeof key === 'string' && key.toLowerCase() === name) values.push(String(value));
  };
  if (Array.isArray(list[0])) {
    // [[name, value], ...]
    for (const pair of list) if (Array.isArray(pair)) add(pair[0], pair[1]);
  } else {
    // [name, value, name, value, ...]
    for (let i = 0; i + 1 < list.length; i += 2) add(list[i], list[i + 1]);
  }
  return values.length === 0 ? undefined : values.length === 1 ? values[0] : values;
}

// Route templates are few and fixed, so each `{METHOD} {route}` name is built once; past a
// bound (an adapter of some other kind handing over paths), names are no longer kept.
const spanNames = new Map<string, Map<string, string>>();
const MAX_NAMES_PER_METHOD = 2000;
function spanName(method: string, route: string): string {
  let byRoute = spanNames.get(method);
  if (byRoute === undefined) spanNames.set(method, (byRoute = new Map<string, string>()));
  let name = byRoute.get(route);
  if (name === undefined) {
    name = `${method} ${route}`;
    if (byRoute.size < MAX_NAMES_PER_METHOD) byRoute.set(route, name);
  }
  return name;
}

/**
 * The handlers Nest's Express adapter serves a request that matches no route with. Under a global
 * prefix it mounts one as a route (`*path` in a router at the prefix, and on the path of each
 * excluded route): a request that reaches it matched nothing of the app's, and has no route.
 */
const notFoundHandlers = new WeakSet<object>();
let notFoundRoutes = false;

/**
 * Nest middleware limited to a method is mounted as an Express route of its own (`app.get(path,
 * middleware)`), ahead of the controller's: its path is no route of the request's.
 */
const middlewareHandles = new WeakSet<object>();
let anyMiddleware = false;

/** Notes a Nest middleware as the installer mounts it. */
export function markMiddleware(handle: object): void {
  middlewareHandles.add(handle);
  anyMiddleware = true;
}

/** Notes a handler given to the adapter's `setNotFoundHandler`. */
export function markNotFoundHandler(handler: unknown): void {
  if (typeof handler !== 'function') return;
  notFoundHandlers.add(handler);
  notFoundRoutes = true;
}

type ExpressRoute = { path?: unknown; stack?: ArrayLike<{ handle?: unknown }> };

/**
 * Express keeps the matched route on the request; mounted routers add a base URL. A request that
 * ended in a Nest middleware mounted as a route has that middleware's path there, not its own
 * route, which is looked up; so is the route of one that failed before any route ran.
 */
function expressRoute(req: TracedRequest, status: number): string | undefined {
  const route = req.route as ExpressRoute | undefined;
  const path = route?.path;
  if (typeof path !== 'string') return status >= 400 ? routeBeforeRouting(req) : undefined;
  if (notFoundRoutes || anyMiddleware) {
    const handle = route!.stack?.[0]?.handle;
    if (typeof handle === 'function') {
      if (notFoundHandlers.has(handle)) return undefined;
      if (middlewareHandles.has(handle)) return routeBeforeRouting(req);
    }
  }
  if (req.baseUrl) return mountedRoute(req, route!, path);
  return path;
}

/**
 * The route of a request served under a base URL: Express gives the URL text the mount matched,
 * not its template (`/tenants/acme`, `/ADMIN`), which would make a route, and a span name, per
 * tenant or spelling. A route of the app's own router in an app mounted into another
 * (`outer.use('/api', nestApp)`) has the template in the app's `mountpath`; one of a router the
 * app mounted itself (`app.use('/tenants/:tid', router)`) has none to be found: no route. Nest
 * mounts no router for its routes, so only such requests pay for the search.
 */
function mountedRoute(req: TracedRequest, route: ExpressRoute, path: string): string | undefined {
  let prefix = mountPrefixes.get(route);
  if (prefix === undefined) {
    prefix = mountPrefixOf(req, route);
    mountPrefixes.set(route, prefix);
  }
  return prefix === null ? undefined : prefix + path;
}

/** Per route of an app mounted into another: its mount path, or null for none to be found. */
const mountPrefixes = new WeakMap<object, string | null>();

function mountPrefixOf(req: TracedRequest, route: ExpressRoute): string | null {
  const app = (
    req as { app?: { path?: unknown; mountpath?: unknown; router?: { stack?: unknown } } }
  ).app;
  const stack = app?.router?.stack;
  if (app === undefined || !Array.isArray(stack)) return null;
  if (!(stack as ExpressLayer[]).some((layer) => layer.route === route)) return null;
  // `app.path()`: the mount paths of the app and of the apps it is mounted in, as written.
  const full =
    typeof app.path === 'function' ? (app.path as () => unknown).call(app) : app.mountpath;
  if (typeof full !== 'string' || full === '' || full === '/') return null;
  return full.endsWith('/') ? full.slice(0, -1) : full;
}

type ExpressLayer = {
  route?: ExpressRoute & { methods?: Record<string, unknown> };
  matchers?: ArrayLike<(path: string) => unknown>;
};

/**
 * The route of the app's Express router that a request which never reached it was for: Express
 * sets `req.route` only once the route runs, so a request that a body parser or a middleware
 * answered first has none, where Fastify, which routes before parsing, names it. Looked up in the
 * router's own matchers (the first route for the method and path, as Express would have taken),
 * and only for such requests: a routed request pays nothing.
 */
function routeBeforeRouting(req: TracedRequest): string | undefined {
  try {
    const app = (req as { app?: { router?: { stack?: unknown } } }).app;
    const stack = app?.router?.stack;
    const url = req.originalUrl ?? req.url;
    const method = req.method;
    if (!Array.isArray(stack) || typeof url !== 'string' || typeof method !== 'string') {
      return undefined;
    }
    if (!url.startsWith('/')) return undefined;
    const query = url.indexOf('?');
    const path = query === -1 ? url : url.slice(0, query);
    const name = method.toLowerCase();
    for (const layer of stack as ExpressLayer[]) {
      const route = layer.route;
      if (route === undefined || typeof route.path !== 'string') continue;
      const handle = route.stack?.[0]?.handle;
      if (typeof handle === 'function' && middlewareHandles.has(handle)) continue;
      // The methods the route serves (a GET route serves HEAD too; `all` serves every one).
      const methods = route.methods;
      if (
        methods !== undefined &&
        methods._all !== true &&
        methods[name] !== true &&
        !(name === 'head' && methods.get === true)
      ) {
        continue;
      }
      const matchers = layer.matchers;
      if (matchers === undefined) continue;
      for (let i = 0; i < matchers.length; i++) {
        if (!matchers[i]!(path)) continue;
        return notFoundRoutes && isNotFoundRoute(route) ? undefined : route.path;
      }
    }
  } catch {
    // A path Express cannot decode (`%E0`) matches nothing.
  }
  return undefined;
}

function isNotFoundRoute(route: ExpressRoute): boolean {
  const handle = route.stack?.[0]?.handle;
  return typeof handle === 'function' && notFoundHandlers.has(handle);
}

/** Node's own `ServerResponse#writeHead`, before {@link hookServerResponse}. */
let nodeWriteHead: ServerResponse['writeHead'] | undefined;
const HOOKED = Symbol.for('nestjs-tracing.http.writeHead');
type HookableResponse = typeof ServerResponse.prototype & { [HOOKED]?: true };

/**
 * Hooks `http.ServerResponse.prototype.writeHead` once per process, so that a
 * traced response runs {@link beforeHeaders} when its headers go out without
 * a property of its own (a per-response own `writeHead` costs a shape change
 * per request). Responses that are not traced pass straight through.
 */
export function hookServerResponse(): void {
  const proto = ServerResponse.prototype as HookableResponse;
  if (proto[HOOKED]) return;
  nodeWriteHead = proto.writeHead;
  Object.defineProperty(proto, HOOKED, { value: true });
  proto.writeHead = hookedWriteHead as ServerResponse['writeHead'];
}

function hookedWriteHead(this: TracedResponse): ServerResponse {
  const state = this[HTTP_STATE];
  // eslint-disable-next-line prefer-rest-params -- no rest array per response
  if (state !== undefined && state.hookHeaders) beforeHeaders(this, state, arguments);
  // eslint-disable-next-line prefer-rest-params
  return (nodeWriteHead as (...a: unknown[]) => ServerResponse).apply(this, arguments as never);
}

/** For a response that does not inherit Node's writeHead: an own hook, put back on first use. */
function hookOwnWriteHead(res: TracedResponse): void {
  const original = res.writeHead;
  res.writeHead = function writeHead(this: TracedResponse, ...args: unknown[]) {
    // Put back by assignment, never by `delete` (which turns the object into a slow
    // dictionary-mode one).
    this.writeHead = original;
    const state = this[HTTP_STATE];
    if (state !== undefined && state.hookHeaders) beforeHeaders(this, state, args);
    return (original as (...a: unknown[]) => ServerResponse).apply(this, args);
  };
}

/**
 * Runs just before the headers go out: notes the header object a framework
 * passes (Fastify does), and adds `traceresponse` and
 * `Server-Timing: traceparent;desc=...`, appending to a Server-Timing the app
 * set in the meantime (with setHeader, or in that header object).
 */
function beforeHeaders(
  res: TracedResponse,
  state: HttpRequestState,
  args: { [index: number]: unknown; readonly length: number },
): void {
  state.hookHeaders = false;
  try {
    const at = typeof args[1] === 'string' ? 2 : 1;
    const candidate = args[at];
    if (Array.isArray(candidate)) {
      // A raw header list: Node drops every header it names before adding its values, so a
      // Server-Timing set on the response would go. Ours goes into a copy of the list instead.
      if (state.traceResponse) args[at] = withTraceHeadersInList(res, state.span, candidate);
      state.headerList = candidate;
      return;
    }
    const headerObject =
      candidate !== null && typeof candidate === 'object'
        ? (candidate as OutgoingHttpHeaders)
        : undefined;
    state.headerObject = headerObject;
    if (state.traceResponse) addTraceHeaders(res, state.span, headerObject);
  } catch {
    // Never let a tracing header break a response.
  }
}

/**
 * A raw header list writeHead was given (`[name, value, ...]` or `[[name, value], ...]`), with
 * the trace headers: when the list names `Server-Timing`, ours is appended to its last value in
 * a copy of the list (Node 20 keeps the last value of a repeated name, later Node all of them);
 * else they go on the response as usual.
 */
function withTraceHeadersInList(res: ServerResponse, span: Span, list: unknown[]): unknown[] {
  const nested = list.length > 0 && Array.isArray(list[0]);
  const step = nested ? 1 : 2;
  let last = -1;
  for (let i = 0; i < list.length; i += step) {
    const name = nested ? (list[i] as unknown[])[0] : list[i];
    if (typeof name === 'string' && name.toLowerCase() === 'server-timing') last = i;
  }
  if (last === -1) {
    addTraceHeaders(res, span, undefined);
    return list;
  }
  const traceparent = formatTraceparent(span.spanContext());
  if (traceparent === undefined) return list;
  res.setHeader('traceresponse', traceparent);
  const copy = [...list];
  if (nested) {
    const [name, value] = list[last] as [string, OutgoingHttpHeader];
    copy[last] = [name, appendServerTiming(value, traceparent)];
  } else {
    copy[last + 1] = appendServerTiming(list[last + 1] as OutgoingHttpHeader, traceparent);
  }
  return copy;
}

function addTraceHeaders(
  res: ServerResponse,
  span: Span,
  headerObject: OutgoingHttpHeaders | undefined,
): void {
  const traceparent = formatTraceparent(span.spanContext());
  if (traceparent === undefined) return;
  // Node checks each header value with a regular expression, and V8 runs it on a string built by
  // concatenation (as both values are) only after flattening it through its runtime: ~2k
  // instructions a value (callgrind). `trim()` returns the string flat, for less. (Whitespace
  // around a header value is not part of it: trimming a Server-Timing the app set is harmless.)
  const value = traceparent.trim();
  if (headerObject !== undefined) {
    // Written into the object writeHead was given (Fastify's reply headers), not with setHeader:
    // one header set on the response makes Node's writeHead merge every header of that object
    // through setHeader, validating each again. A Server-Timing the app set on the response
    // itself is kept: the object's value replaces it when the two merge.
    const key = serverTimingKey(headerObject);
    const existing = headerObject[key] ?? res.getHeader('server-timing');
    headerObject[key] = appendServerTiming(existing, value).trim();
    headerObject.traceresponse = value;
    return;
  }
  res.setHeader('server-timing', appendServerTiming(res.getHeader('server-timing'), value).trim());
  res.setHeader('traceresponse', value);
}

/** The Server-Timing key of a header object, in the case it is spelled (Fastify lower-cases). */
function serverTimingKey(headers: OutgoingHttpHeaders): string {
  if (headers['server-timing'] !== undefined) return 'server-timing';
  for (const key in headers) {
    if (key.length === 13 && key.toLowerCase() === 'server-timing') return key;
  }
  return 'server-timing';
}

/** Runs `next` with the request's SERVER span active (after async body parsing lost it). */
export function reenter(req: TracedRequest, next: () => void): void {
  const state = req[HTTP_STATE];
  if (state === null) {
    runUntraced(next);
    return;
  }
  // Usually the context survived: entering it again would cost a context switch per request.
  if (state === undefined || state.ended || inRequestContext(state)) {
    next();
    return;
  }
  context.with(state.context, next);
}

/**
 * Whether the active context is the request's, or one made from it on purpose (a middleware that
 * runs the rest of the request with baggage of its own, or inside a span of its own): the active
 * span is in the request's trace. A context that was lost (the root, or another request's) is not.
 */
export function inRequestContext(state: HttpRequestState): boolean {
  const active = context.active();
  if (active === state.context) return true;
  const span = trace.getSpan(active);
  return span !== undefined && span.spanContext().traceId === state.span.spanContext().traceId;
}

/**
 * Runs the rest of a request the package does not trace (an ignored route) with tracing
 * suppressed, as OpenTelemetry's HTTP instrumentation does for the requests it ignores: the
 * spans its middleware and handler would start (`@Trace`, outbound calls) would otherwise be
 * exported as roots of traces of their own, one per health check.
 */
export function runUntraced<T>(fn: () => T): T {
  const active = context.active();
  return isTracingSuppressed(active) ? fn() : context.with(suppressTracing(active), fn);
}

/** The tracing state of a request, if it is traced. */
export function httpStateOf(req: unknown): HttpRequestState | undefined {
  if (req === null || typeof req !== 'object') return undefined;
  const direct = (req as TracedRequest)[HTTP_STATE];
  if (direct !== undefined) return direct ?? undefined;
  // Fastify hands Nest its own request object; the Node one is `raw`.
  const raw = (req as { raw?: TracedRequest }).raw;
  return raw?.[HTTP_STATE] ?? undefined;
}
