import {
  context,
  propagation,
  trace,
  type Attributes,
  type Span,
  type TracerProvider,
} from '@opentelemetry/api';
import {
  ATTR_ERROR_TYPE,
  ATTR_URL_FULL,
  ATTR_URL_QUERY,
} from '@opentelemetry/semantic-conventions';
import { channel } from 'node:diagnostics_channel';
import http, { type OutgoingHttpHeaders, type RequestOptions } from 'node:http';
import { createRequire } from 'node:module';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { redactedQuery, redactedUrl } from '../http/query-redaction.js';

/**
 * Outbound HTTP: `fetch` (undici) and Node's `http`/`https` clients (what `@nestjs/axios` and most
 * SDKs use) get a CLIENT span and carry the context, through OpenTelemetry's own
 * instrumentations: undici's reads Node's diagnostics channels, http's wraps `request`/`get` on
 * the core modules. Both stay out when another instrumentation already covers that client (an
 * application running the OpenTelemetry auto-instrumentations), so no request is traced twice.
 * A call made outside any span (start-up code, a timer with no `@Trace`) gets no span of its own
 * and carries no context, as nothing would connect it to a trace. Shared by every module of the
 * process, and turned off by the last one to stop.
 */
interface Instrumentation {
  enable(): void;
  disable(): void;
  setTracerProvider(provider: TracerProvider): void;
}

interface SharedHttpClientTracing {
  users: number;
  instrumentations: Instrumentation[];
}

const SHARED = Symbol.for('nestjs-tracing:http-client');
/**
 * The instrumentations, once made: kept when the last module stops and enabled again by the
 * next one. A second `HttpInstrumentation` would never patch `http`: OpenTelemetry's shared
 * require hook has the core module cached already, and only the instance that patched it can
 * patch it again.
 */
const MADE = Symbol.for('nestjs-tracing:http-client-instrumentations');
type Made = { http?: Instrumentation; undici?: Instrumentation };
type WithShared = typeof globalThis & { [SHARED]?: SharedHttpClientTracing; [MADE]?: Made };

const requireHere = createRequire(import.meta.url);

function isWrapped(fn: unknown): boolean {
  return typeof fn === 'function' && (fn as { __wrapped?: unknown }).__wrapped === true;
}

/** Starts outbound HTTP tracing for one module; returns the function that stops it (once). */
export async function startHttpClientTracing(): Promise<() => void> {
  const global = globalThis as WithShared;
  let shared = global[SHARED];
  if (shared === undefined) {
    shared = { users: 0, instrumentations: [] };
    global[SHARED] = shared;
    const made = (global[MADE] ??= {});
    // First: requiring a core module once any require hook exists caches it unpatched.
    if (!isWrapped(http.request)) {
      shared.instrumentations.push(await turnOn(made, 'http', makeHttpInstrumentation));
    }
    // Someone else instruments undici when its request channel already has a subscriber.
    if (!channel('undici:request:create').hasSubscribers) {
      shared.instrumentations.push(await turnOn(made, 'undici', makeUndiciInstrumentation));
    }
  }
  shared.users++;
  let stopped = false;
  return () => {
    if (stopped) return;
    stopped = true;
    const current = global[SHARED];
    if (current === undefined) return;
    current.users--;
    if (current.users === 0) {
      delete global[SHARED];
      for (const instrumentation of current.instrumentations) instrumentation.disable();
    }
  };
}

/**
 * The kept instrumentation, turned on again with the tracer provider registered now (the one it
 * had is the last module's, shut down with it: the API hands out a new proxy once a provider is
 * unregistered), or the one `make` makes the first time.
 */
async function turnOn(
  made: Made,
  key: keyof Made,
  make: () => Promise<Instrumentation>,
): Promise<Instrumentation> {
  const kept = made[key];
  if (kept === undefined) return (made[key] = await make());
  kept.setTracerProvider(trace.getTracerProvider());
  kept.enable();
  return kept;
}

/** Node's `http`/`https` clients, with the inbound half off (inbound requests are the module's). */
async function makeHttpInstrumentation(): Promise<Instrumentation> {
  const { HttpInstrumentation } = await import('@opentelemetry/instrumentation-http');
  const instrumentation = new HttpInstrumentation({
    disableIncomingRequestInstrumentation: true,
    requireParentforOutgoingSpans: true,
    // Called first, with the instrumentation's own copy of the options: never ignores a call.
    ignoreOutgoingRequestHook: headersAsObject,
    requestHook: (span, request) => {
      dropStaleTraceState(span, request);
      redactUrl(span);
    },
    applyCustomAttributesOnSpan: (span, _request, response) => {
      // A 4xx or 5xx answer is the client's error: its type is the status code.
      const status = (response as { statusCode?: number } | undefined)?.statusCode;
      if (status !== undefined && status >= 400) span.setAttribute(ATTR_ERROR_TYPE, String(status));
    },
  });
  // The instrumentation enables itself, and patches a core module when it is next required:
  // require them now, for code (ESM included) that calls them through the module object.
  requireHere('http');
  requireHere('https');
  return instrumentation;
}

/** `fetch` and undici's own API, through Node's diagnostics channels. */
async function makeUndiciInstrumentation(): Promise<Instrumentation> {
  const { UndiciInstrumentation } = await import('@opentelemetry/instrumentation-undici');
  return new UndiciInstrumentation({
    requireParentforSpans: true,
    startSpanHook: redactedUrlAttributes,
    requestHook: dropCarriedHeaders,
  });
}

/**
 * Node's `http.request` takes its headers as a list too (`['Name', 'value', ...]`, or pairs), to
 * send exactly those. The instrumentation copies the headers with `Object.assign` to write the
 * call's into them, which turns a list into headers named `0`, `1`, ... (the request's own
 * headers are lost, traced or not). So the instrumentation's copy of the options gets them as an
 * object: each name as first spelt, a repeated name (in any case) with its values in a list, and,
 * as Node does for a list, no `Host` added when the list had none and no `Authorization` made from
 * `auth` (so `url.full` names no credentials either). A list Node would refuse (odd length, a
 * name that is no string, a missing value) is left to Node, untraced, to throw as it would.
 */
export function headersAsObject(options: RequestOptions): boolean {
  const list: unknown = options.headers;
  if (!Array.isArray(list)) return false;
  const entries: Array<[unknown, unknown]> = [];
  if (list.length > 0 && Array.isArray(list[0])) {
    for (const pair of list as unknown[]) {
      if (!Array.isArray(pair)) return true;
      entries.push([pair[0], pair[1]]);
    }
  } else {
    if (list.length % 2 !== 0) return true;
    for (let i = 0; i < list.length; i += 2) entries.push([list[i], list[i + 1]]);
  }
  const headers: OutgoingHttpHeaders = {};
  const spelt = new Map<string, string>();
  for (const [name, value] of entries) {
    if (typeof name !== 'string' || value === undefined) return true;
    const lower = name.toLowerCase();
    const key = spelt.get(lower);
    if (key === undefined) {
      spelt.set(lower, name);
      headers[name] = value as OutgoingHttpHeaders[string];
    } else {
      headers[key] = ([] as unknown[]).concat(headers[key], value) as string[];
    }
  }
  options.headers = headers;
  if (!spelt.has('host')) options.setHost = false;
  delete options.auth;
  return false;
}

/**
 * `url.full` of undici's span with the values of credentials in its query redacted, as for
 * inbound requests (the instrumentation redacts none), and `url.query` without its `?` (none when
 * the URL has no query), as the conventions write it.
 */
function redactedUrlAttributes(request: { origin?: unknown; path?: unknown }): Attributes {
  const attributes: Attributes = {};
  if (typeof request.path === 'string' && !request.path.includes('?')) {
    attributes[ATTR_URL_QUERY] = undefined;
    return attributes;
  }
  let url: URL;
  try {
    url = new URL(String(request.path), String(request.origin));
  } catch {
    return attributes;
  }
  const query = url.search.slice(1);
  attributes[ATTR_URL_QUERY] = query === '' ? undefined : redactedQuery(query);
  attributes[ATTR_URL_FULL] = redactedUrl(url.href);
  return attributes;
}

/**
 * Node's `http` client: the instrumentation redacts only the query keys the conventions name, and
 * those in one spelling; the span's `url.full` gets the inbound requests' redaction too (read back
 * from the package's own span, which the instrumentation was given).
 */
function redactUrl(span: Span): void {
  const full = (span as Partial<ReadableSpan>).attributes?.[ATTR_URL_FULL];
  if (typeof full !== 'string' || !full.includes('?')) return;
  const redacted = redactedUrl(full);
  if (redacted !== full) span.setAttribute(ATTR_URL_FULL, redacted);
}

/**
 * The header names the propagators write for `span`, in lower case. With `traceparent` comes
 * `tracestate` whether written or not: a caller's `tracestate` (forwarded from another request)
 * describes another trace than the call's (W3C Trace Context keeps the two together).
 */
function namesWritten(span: Span): Set<string> {
  const names = new Set(Object.keys(headersWritten(span)).map((name) => name.toLowerCase()));
  if (names.has('traceparent') && propagation.fields().includes('tracestate')) {
    names.add('tracestate');
  }
  return names;
}

/**
 * Node's `http` client: the instrumentation sets the call's trace headers over the caller's, but
 * leaves a `tracestate` of the caller's beside its own `traceparent` when the call's trace has
 * none. Taken out before the request's headers go.
 */
function dropStaleTraceState(span: Span, request: unknown): void {
  const req = request as {
    getHeader?: (name: string) => unknown;
    removeHeader?: (name: string) => void;
    headersSent?: boolean;
  };
  if (typeof req.getHeader !== 'function' || req.headersSent === true) return;
  if (req.getHeader('tracestate') === undefined) return;
  if (!trace.isSpanContextValid(span.spanContext())) return;
  const written = headersWritten(span);
  if ('traceparent' in written && !('tracestate' in written)) req.removeHeader?.('tracestate');
}

/** The headers the propagators write for `span`. */
function headersWritten(span: Span): Record<string, string> {
  const written: Record<string, string> = {};
  propagation.inject(trace.setSpan(context.active(), span), written);
  return written;
}

/**
 * Takes out of an undici request the headers the propagators are about to write (`traceparent`,
 * `tracestate`, `baggage`, ...), which undici's instrumentation appends: a caller that set its own
 * (a gateway forwarding the headers it received) would otherwise send two `traceparent` values,
 * which the next service cannot read, and its trace would break there. Node's `http` client, whose
 * headers are set rather than appended, sends one. Only when a span's context is to be written:
 * a call outside any span keeps the caller's headers as they are.
 */
function dropCarriedHeaders(span: Span, request: unknown): void {
  if (!trace.isSpanContextValid(span.spanContext())) return;
  const names = namesWritten(span);
  if (names.size === 0) return;
  const req = request as { headers?: unknown };
  const headers = req.headers;
  if (Array.isArray(headers)) {
    // Name, value, name, value...
    for (let i = headers.length - 2; i >= 0; i -= 2) {
      const name: unknown = headers[i];
      const text = typeof name === 'string' ? name : Buffer.isBuffer(name) ? name.toString() : '';
      if (names.has(text.toLowerCase())) headers.splice(i, 2);
    }
  } else if (typeof headers === 'string') {
    // Older undici: `name: value\r\n` lines.
    req.headers = headers
      .split('\r\n')
      .filter(
        (line) =>
          !names.has(
            line
              .slice(0, Math.max(0, line.indexOf(':')))
              .trim()
              .toLowerCase(),
          ),
      )
      .join('\r\n');
  }
}
