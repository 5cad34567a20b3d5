import { isSpanContextValid, type SpanContext, type TextMapGetter } from '@opentelemetry/api';
import parseForwarded from 'forwarded-parse';
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

/** What proxies in front of the server say of the original request. */
export interface ForwardedFacts {
  /** The original client's address (`Forwarded: for=`, else the first `X-Forwarded-For`). */
  client?: string;
  /** The host the client asked for (`Forwarded: host=`, else `X-Forwarded-Host`). */
  host?: string;
  /** The scheme the client used (`Forwarded: proto=`, else `X-Forwarded-Proto`). */
  proto?: string;
}

/**
 * The original request as proxies report it, from the first (the client's) element of
 * `Forwarded` (RFC 7239, parsed by `forwarded-parse`) or the `X-Forwarded-*` headers; undefined
 * when the request carries none of them (a request straight from its client). A malformed
 * `Forwarded` is passed over for the `X-Forwarded-*` headers. Addresses lose their port and
 * brackets; an obfuscated or `unknown` one (`for=_hidden`) is no address.
 */
export function forwardedFacts(headers: IncomingHttpHeaders): ForwardedFacts | undefined {
  const forwarded = headers.forwarded;
  const forwardedFor = headers['x-forwarded-for'];
  const forwardedHost = headers['x-forwarded-host'];
  const forwardedProto = headers['x-forwarded-proto'];
  if (
    forwarded === undefined &&
    forwardedFor === undefined &&
    forwardedHost === undefined &&
    forwardedProto === undefined
  ) {
    return undefined;
  }
  let first: Record<string, string> | undefined;
  if (forwarded !== undefined) {
    try {
      first = parseForwarded(forwarded)[0];
    } catch {
      first = undefined;
    }
  }
  const facts: ForwardedFacts = {};
  const client = clientAddress(first?.for ?? firstListed(forwardedFor));
  if (client !== undefined) facts.client = client;
  const host = nonBlank(first?.host ?? firstListed(forwardedHost));
  if (host !== undefined) facts.host = host;
  const proto = nonBlank(first?.proto ?? firstListed(forwardedProto))?.toLowerCase();
  if (proto === 'http' || proto === 'https') facts.proto = proto;
  return facts;
}

function firstListed(value: string | string[] | undefined): string | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined) return undefined;
  const comma = text.indexOf(',');
  return comma === -1 ? text : text.slice(0, comma);
}

function nonBlank(value: string | undefined): string | undefined {
  const trimmed = value?.trim();
  return trimmed === undefined || trimmed === '' ? undefined : trimmed;
}

/** `203.0.113.5`, `203.0.113.5:4711`, `[2001:db8::17]:4711`, `2001:db8::17` → the address. */
function clientAddress(value: string | undefined): string | undefined {
  const text = nonBlank(value);
  if (text === undefined || text === 'unknown' || text.startsWith('_')) return undefined;
  if (text.startsWith('[')) return parseHost(text).address;
  const colon = text.indexOf(':');
  // One colon: an IPv4 address (or name) with a port; more: a bare IPv6 address.
  return colon !== -1 && colon === text.lastIndexOf(':') ? text.slice(0, colon) : text;
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
