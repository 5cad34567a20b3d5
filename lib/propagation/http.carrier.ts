import { isSpanContextValid, type SpanContext, type TextMapGetter } from '@opentelemetry/api';
import type { IncomingHttpHeaders, OutgoingHttpHeader } from 'node:http';
import { isOwnSpanContext } from '../sdk/span.js';

/**
 * Reads propagation headers from Node's parsed request headers. Node lower-cases
 * names and joins repeated headers; the propagators then validate the values.
 */
export const httpHeadersGetter: TextMapGetter<IncomingHttpHeaders> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => carrier[key],
};

/** The two hex digits of each trace-flags byte. */
const FLAGS_HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/**
 * `00-<trace-id>-<span-id>-<flags>` for a span, the version-00 `traceparent`
 * of W3C Trace Context (what OpenTelemetry's W3C propagator writes for the
 * same span context), or undefined for an invalid span context. Formatted
 * here rather than by running the propagator: that would build a context and
 * a span wrapper per response. The package's own spans skip the validity check (their ids are
 * valid by construction); any other span context is checked.
 */
export function formatTraceparent(spanContext: SpanContext): string | undefined {
  if (!isOwnSpanContext(spanContext) && !isSpanContextValid(spanContext)) return undefined;
  return `00-${spanContext.traceId}-${spanContext.spanId}-${FLAGS_HEX[spanContext.traceFlags & 0xff]}`;
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
