import type { TextMapGetter, TextMapSetter } from '@opentelemetry/api';

/**
 * A header value as a propagator can read it. Brokers hand values over untouched by any HTTP
 * parser: AMQP and Kafka values may be Buffers, AMQP ones numbers, and any of them padded with
 * whitespace, so each is decoded and trimmed. Anything else (objects, tables) is no header value.
 */
export function headerValue(value: unknown): string | string[] | undefined {
  if (typeof value === 'string') return value.trim();
  if (value instanceof Uint8Array) return Buffer.from(value).toString('utf8').trim();
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

/** A plain object of header values, as TCP/Redis metadata, AMQP headers and Kafka headers are. */
export type HeaderRecord = Record<string, unknown>;

/**
 * Reads a plain header object. Names are matched exactly first and then regardless of case,
 * since producers in other languages do not all lower-case them.
 */
export const recordGetter: TextMapGetter<HeaderRecord | undefined> = {
  keys: (carrier) => (carrier === undefined ? [] : Object.keys(carrier)),
  get: (carrier, key) => {
    if (carrier === undefined || carrier === null || typeof carrier !== 'object') return undefined;
    if (Object.prototype.hasOwnProperty.call(carrier, key)) return headerValue(carrier[key]);
    for (const name of Object.keys(carrier)) {
      // Lengths first: a message carries `traceparent` and is asked for `tracestate` and
      // `baggage` too, which no other length can match.
      if (name.length === key.length && name.toLowerCase() === key) {
        return headerValue(carrier[name]);
      }
    }
    return undefined;
  },
};

/** Writes into a plain header object. */
export const recordSetter: TextMapSetter<HeaderRecord> = {
  set: (carrier, key, value) => {
    carrier[key] = value;
  },
};
