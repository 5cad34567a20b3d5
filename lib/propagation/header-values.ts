import type { TextMapGetter, TextMapSetter } from '@opentelemetry/api';

/** Control characters other than tab, which no HTTP field value holds (RFC 9110, 5.5). */
// eslint-disable-next-line no-control-regex -- what no header value may hold
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;

/**
 * A value read off a broker as a header value, trimmed; none when it holds a line break or
 * another control character. Brokers hand values over untouched by any HTTP parser, and such a
 * value is no trace header: carried on (a `baggage` property goes out as it came), it would be
 * refused by the next hop's HTTP client, or inject a header of its own there.
 */
export function fieldValue(text: string): string | undefined {
  const trimmed = text.trim();
  return CONTROL.test(trimmed) ? undefined : trimmed;
}

/**
 * A header value as a propagator can read it. Brokers hand values over untouched by any HTTP
 * parser: AMQP and Kafka values may be Buffers, AMQP ones numbers, and any of them padded with
 * whitespace, so each is decoded and trimmed ({@link fieldValue}). Anything else (objects,
 * tables) is no header value.
 */
export function headerValue(value: unknown): string | string[] | undefined {
  if (typeof value === 'string') return fieldValue(value);
  if (value instanceof Uint8Array) {
    // Decoded where it lies: `Buffer.from(value)` would copy the bytes first.
    const bytes = Buffer.isBuffer(value)
      ? value
      : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    return fieldValue(bytes.toString('utf8'));
  }
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') {
    return String(value);
  }
  if (Array.isArray(value)) {
    const values: string[] = [];
    for (const item of value as unknown[]) {
      const decoded = headerValue(item);
      if (typeof decoded === 'string') values.push(decoded);
    }
    return values.length > 0 ? values : undefined;
  }
  return undefined;
}

/**
 * What a propagator is handed for a name a carrier holds more than once (a repeated header, an
 * AMQP or JSON array, names that differ only in case): one string, the values joined with `,` in
 * the carrier's order, as HTTP joins a repeated header field. Repeated `tracestate` and `baggage`
 * members combine that way, and a repeated `traceparent` no longer parses, so the message starts
 * a new trace, as W3C Trace Context asks, where a list would have had the propagator continue
 * the first value.
 */
export function joinedHeaderValue(value: unknown): string | undefined {
  const decoded = headerValue(value);
  return Array.isArray(decoded) ? decoded.join(',') : decoded;
}

/** A plain object of header values, as TCP/Redis metadata, AMQP headers and Kafka headers are. */
export type HeaderRecord = Record<string, unknown>;

/**
 * A carrier's names as a propagator that lists them sees them: in lower case, once each, as
 * Node hands HTTP headers over. Jaeger's propagator finds its baggage by listing the names that
 * start with `uberctx-`, and asks for each as listed: `Uberctx-Tenant`, as a Go producer writes
 * it, was missed. The getters look every name up regardless of case.
 */
export function lowerCaseNames(names: readonly string[]): string[] {
  return [...new Set(names.map((name) => name.toLowerCase()))];
}

/**
 * Reads a plain header object. Names are matched regardless of case, since producers in other
 * languages do not all lower-case them, and every name that matches counts
 * ({@link joinedHeaderValue}).
 */
export const recordGetter: TextMapGetter<HeaderRecord | undefined> = {
  keys: (carrier) =>
    carrier === undefined || carrier === null || typeof carrier !== 'object'
      ? []
      : lowerCaseNames(Object.keys(carrier)),
  get: (carrier, key) => {
    if (carrier === undefined || carrier === null || typeof carrier !== 'object') return undefined;
    let found: string | undefined;
    // `for...in` allocates no key list; inherited names are no headers.
    for (const name in carrier) {
      // Lengths first: a message carries `traceparent` and is asked for `tracestate` and
      // `baggage` too, which no other length can match.
      if (name.length !== key.length || (name !== key && name.toLowerCase() !== key)) continue;
      if (!Object.prototype.hasOwnProperty.call(carrier, name)) continue;
      const value = joinedHeaderValue(carrier[name]);
      if (value !== undefined) found = found === undefined ? value : `${found},${value}`;
    }
    return found;
  },
};

const TRACEPARENT = 'traceparent';
const TRACESTATE = 'tracestate';

/**
 * Writes into a plain header object (always the package's own copy of the message's headers).
 * The same name in another case goes first: a record forwarded with the headers it was consumed
 * with (a retry, a dead-letter republish) would otherwise carry two `traceparent`s, which the
 * next consumer reads as none. A new `traceparent` also takes out the `tracestate` that came
 * with the old one: it belongs to that trace, and the propagator writes the span's own (if it
 * has one) just after.
 */
export const recordSetter: TextMapSetter<HeaderRecord> = {
  set: (carrier, key, value) => {
    const lower = key.toLowerCase();
    const replacesState = lower === TRACEPARENT;
    for (const name in carrier) {
      if (name.length === key.length) {
        if (name !== key && name.toLowerCase() === lower) delete carrier[name];
      } else if (replacesState && name.length === TRACESTATE.length) {
        if (name.toLowerCase() === TRACESTATE) delete carrier[name];
      }
    }
    carrier[key] = value;
  },
};
