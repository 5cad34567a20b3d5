import { propagation, type Baggage, type Context } from '@opentelemetry/api';

/** A lone surrogate: no well-formed Unicode, which `encodeURIComponent` refuses. */
const LONE_SURROGATE = /\p{Cs}/u;

/** What an HTTP field name may be made of (RFC 9110, 5.1: a token). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * What a baggage member's properties may hold as they go out: visible ASCII, no comma (W3C
 * Baggage, 3.3.1). OpenTelemetry's W3C propagator writes an entry's metadata as it is.
 */
const SENDABLE_PROPERTIES = /^[\x20-\x2b\x2d-\x7e]*$/;

/** How a propagator writes baggage: W3C's one header, or Jaeger's header per key. */
export type BaggageFormat = 'w3c' | 'header-per-key';

/**
 * `ctx` with its baggage reduced to what a propagator can write. Baggage comes from the
 * application (`TraceService.withBaggage`, the OpenTelemetry API) and from inbound messages,
 * whose bytes no HTTP parser has checked:
 * - a key or value with a lone surrogate (JSON metadata can carry one) makes
 *   `encodeURIComponent` throw, and the composite propagator then drops all the baggage with a
 *   warning: that entry is left out;
 * - properties (`;` metadata) with a line break or a character beyond ASCII went out as they
 *   were, and Node's HTTP clients refuse the header (`fetch` throws from a diagnostics-channel
 *   subscriber, which ends the process): that entry goes without them;
 * - with a header per key, a key that is no token would be refused as a header name: left out.
 * The same context when nothing needs to change, as for all baggage the package itself reads.
 */
export function withSendableBaggage(ctx: Context, format: BaggageFormat): Context {
  const baggage = propagation.getBaggage(ctx);
  if (baggage === undefined) return ctx;
  let sendable: Baggage | undefined;
  for (const [key, entry] of baggage.getAllEntries()) {
    const writable =
      !LONE_SURROGATE.test(key) &&
      !LONE_SURROGATE.test(entry.value) &&
      (format === 'w3c' || TOKEN.test(key));
    if (writable) {
      // Jaeger's propagator writes no properties.
      if (format !== 'w3c' || entry.metadata === undefined) continue;
      if (SENDABLE_PROPERTIES.test(entry.metadata.toString())) continue;
      sendable = (sendable ?? baggage).setEntry(key, { value: entry.value });
    } else {
      sendable = (sendable ?? baggage).removeEntry(key);
    }
  }
  return sendable === undefined ? ctx : propagation.setBaggage(ctx, sendable);
}
