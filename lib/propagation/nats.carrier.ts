import type { TextMapGetter, TextMapSetter } from '@opentelemetry/api';
import { fieldValue, lowerCaseNames } from './header-values.js';

/**
 * NATS: the context travels in the message headers (NATS 2.2+), a `MsgHdrs` object on both
 * sides. Its `get()` answers `''` for a missing name and matches names exactly, so the getter
 * asks for every value regardless of case, and hands a repeated name over joined with `,`
 * (see `joinedHeaderValue`: a repeated `traceparent` starts a new trace).
 */
export interface NatsHeadersLike {
  keys(): string[];
  values(key: string, match?: never): string[];
  set(key: string, value: string, match?: never): void;
  delete?(key: string, match?: never): void;
}

/** How MsgHdrs spells "match the name regardless of case" (`Match.IgnoreCase`). */
const IGNORE_CASE = 'insensitive' as never;

export const natsGetter: TextMapGetter<NatsHeadersLike | undefined> = {
  keys: (carrier) => (carrier === undefined ? [] : lowerCaseNames(carrier.keys())),
  get: (carrier, key) => {
    if (carrier === undefined || typeof carrier.values !== 'function') return undefined;
    const values = carrier.values(key, IGNORE_CASE);
    if (values.length === 0) return undefined;
    if (values.length === 1) return fieldValue(values[0]!);
    const fields = values.map(fieldValue).filter((v) => v !== undefined);
    return fields.length === 0 ? undefined : fields.join(',');
  },
};

export const natsSetter: TextMapSetter<NatsHeadersLike> = {
  // Regardless of case: the same name in another case goes, and a new `traceparent` takes out
  // the old one's `tracestate` (see `recordSetter`).
  set: (carrier, key, value) => {
    if (key.toLowerCase() === 'traceparent') carrier.delete?.('tracestate', IGNORE_CASE);
    carrier.set(key, value, IGNORE_CASE);
  },
};

export const NATS_SYSTEM = 'nats';
