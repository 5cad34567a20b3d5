import { ROOT_CONTEXT, trace, type SpanContext, type TextMapGetter } from '@opentelemetry/api';
import type { IncomingHttpHeaders, OutgoingHttpHeader } from 'node:http';
import { traceparentFormatter } from '../sdk/tracing-sdk.js';

/**
 * Reads propagation headers from Node's parsed request headers. Node lower-cases
 * names and joins repeated headers; the propagators then validate the values.
 */
export const httpHeadersGetter: TextMapGetter<IncomingHttpHeaders> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => carrier[key],
};

const scratch: Record<string, string> = {};
const setter = {
  set: (carrier: Record<string, string>, key: string, value: string) => {
    carrier[key] = value;
  },
};

/**
 * `00-<trace-id>-<span-id>-<flags>` for a span, formatted by OpenTelemetry's own
 * W3C propagator so the `traceresponse` and `Server-Timing` values always match
 * what `traceparent` would carry, whatever propagators the app configured.
 */
export function formatTraceparent(spanContext: SpanContext): string | undefined {
  scratch.traceparent = '';
  traceparentFormatter.inject(trace.setSpanContext(ROOT_CONTEXT, spanContext), scratch, setter);
  return scratch.traceparent || undefined;
}

/**
 * Splits a `Host` (or HTTP/2 `:authority`) value into address and port:
 * `[::1]:3000`, `example.com:8080`, `example.com`.
 */
export function parseHost(host: string): { address: string; port: number | undefined } {
  let address = host;
  let port: string | undefined;
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    address = host.slice(1, end === -1 ? undefined : end);
    if (end !== -1 && host[end + 1] === ':') port = host.slice(end + 2);
  } else {
    const colon = host.lastIndexOf(':');
    if (colon !== -1) {
      address = host.slice(0, colon);
      port = host.slice(colon + 1);
    }
  }
  const n = port === undefined ? NaN : Number(port);
  return { address, port: Number.isInteger(n) && n > 0 && n < 65536 ? n : undefined };
}

/** `Server-Timing` with the trace appended: `<existing>, traceparent;desc="<value>"`. */
export function appendServerTiming(
  existing: OutgoingHttpHeader | undefined,
  traceparent: string,
): string {
  const timing = `traceparent;desc="${traceparent}"`;
  if (existing === undefined || existing === '') return timing;
  return `${Array.isArray(existing) ? existing.join(', ') : String(existing)}, ${timing}`;
}
