import { ROOT_CONTEXT, trace, type SpanContext, type TextMapGetter } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import type { IncomingHttpHeaders } from 'node:http';

/**
 * Reads propagation headers from Node's parsed request headers. Node lower-cases
 * names and joins repeated headers; the propagators then validate the values.
 */
export const httpHeadersGetter: TextMapGetter<IncomingHttpHeaders> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => carrier[key],
};

const w3c = new W3CTraceContextPropagator();
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
  w3c.inject(trace.setSpanContext(ROOT_CONTEXT, spanContext), scratch, setter);
  return scratch.traceparent || undefined;
}
