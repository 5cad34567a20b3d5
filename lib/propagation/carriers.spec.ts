import { propagation, ROOT_CONTEXT, trace, type TextMapGetter } from '@opentelemetry/api';
import { JaegerPropagator } from '@opentelemetry/propagator-jaeger';
import { TraceState, W3CTraceContextPropagator } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  NoopSpanProcessor,
  RandomIdGenerator,
} from '@opentelemetry/sdk-trace-base';
import * as incubating from '@opentelemetry/semantic-conventions/incubating';
import {
  grpcGetter,
  grpcMethodOf,
  grpcSetter,
  grpcStatusOfError,
  grpcStatusSent,
  grpcTargetOf,
} from './grpc.carrier.js';
import { headerValue, joinedHeaderValue, recordGetter, recordSetter } from './header-values.js';
import { formatTraceparent, forwardedFacts } from './http.carrier.js';
import { kafkaMessageAttributes } from './kafka.carrier.js';
import { mqttSetter, mqttUserProperties } from './mqtt.carrier.js';
import { natsGetter, natsSetter, type NatsHeadersLike } from './nats.carrier.js';
import { rmqHeaders, rmqMessageAttributes } from './rmq.carrier.js';
import * as semconv from './semconv.js';
import { isOwnSpanContext, PackageTracer, SPAN_LIMITS } from '../sdk/span.js';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN_ID = '00f067aa0ba902b7';
const TRACEPARENT = `00-${TRACE_ID}-${SPAN_ID}-01`;
const OTHER_TRACEPARENT = `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`;
const w3c = new W3CTraceContextPropagator();

/** The span context a W3C propagator reads from a carrier through a getter. */
function extracted<C>(carrier: C, getter: TextMapGetter<C>) {
  return trace.getSpanContext(w3c.extract(ROOT_CONTEXT, carrier, getter));
}

describe('formatTraceparent (traceresponse, Server-Timing)', () => {
  /** What OpenTelemetry's W3C propagator writes as `traceparent` for the same span context. */
  function injected(spanContext: Parameters<typeof formatTraceparent>[0]) {
    const carrier: Record<string, string> = {};
    w3c.inject(trace.setSpanContext(ROOT_CONTEXT, spanContext), carrier, recordSetter);
    return carrier.traceparent;
  }

  it.each([
    ['sampled', 1],
    ['not sampled', 0],
    ['with the random-trace-id flag of Trace Context level 2', 3],
  ])('writes what the W3C propagator writes, %s', (_label, traceFlags) => {
    const spanContext = { traceId: TRACE_ID, spanId: SPAN_ID, traceFlags };
    expect(formatTraceparent(spanContext)).toBe(`00-${TRACE_ID}-${SPAN_ID}-0${traceFlags}`);
    expect(formatTraceparent(spanContext)).toBe(injected(spanContext));
  });

  it('writes two hex digits for any flags byte', () => {
    expect(formatTraceparent({ traceId: TRACE_ID, spanId: SPAN_ID, traceFlags: 0xab })).toBe(
      `00-${TRACE_ID}-${SPAN_ID}-ab`,
    );
  });

  it.each([
    ['sampled', new AlwaysOnSampler()],
    ['not sampled', new AlwaysOffSampler()],
  ])(
    "writes what the W3C propagator writes for the package tracer's own span, %s",
    (_l, sampler) => {
      const tracer = new PackageTracer(
        { name: 'carriers-spec' },
        {
          resource: resourceFromAttributes({ 'service.name': 'carriers-spec' }),
          sampler,
          idGenerator: new RandomIdGenerator(),
          spanLimits: SPAN_LIMITS,
          processor: new NoopSpanProcessor(),
        },
      );
      const spanContext = tracer.startSpan('own').spanContext();
      // The fast path (no regular expressions) is the one taken, and it writes the same value.
      expect(isOwnSpanContext(spanContext)).toBe(true);
      expect(formatTraceparent(spanContext)).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
      expect(formatTraceparent(spanContext)).toBe(injected(spanContext));
    },
  );

  it("checks a span context that is not the package tracer's own", () => {
    const foreign = { traceId: 'g'.repeat(32), spanId: SPAN_ID, traceFlags: 1 };
    expect(isOwnSpanContext(foreign)).toBe(false);
    expect(formatTraceparent(foreign)).toBeUndefined();
  });

  it.each([
    ['an all-zero trace id', { traceId: '0'.repeat(32), spanId: SPAN_ID, traceFlags: 1 }],
    ['an all-zero span id', { traceId: TRACE_ID, spanId: '0'.repeat(16), traceFlags: 1 }],
    ['a short trace id', { traceId: 'abc', spanId: SPAN_ID, traceFlags: 1 }],
  ])('has no value for %s', (_label, spanContext) => {
    expect(formatTraceparent(spanContext)).toBeUndefined();
    expect(injected(spanContext)).toBeUndefined();
  });
});

describe('headerValue', () => {
  it.each([
    ['a string, trimmed', `  ${TRACEPARENT}\t`, TRACEPARENT],
    ['a Buffer (AMQP byte array, Kafka header)', Buffer.from(` ${TRACEPARENT} `), TRACEPARENT],
    ['a Uint8Array', new TextEncoder().encode(TRACEPARENT), TRACEPARENT],
    ['a number', 42, '42'],
    ['a bigint', 7n, '7'],
    ['a boolean', true, 'true'],
  ])('decodes %s', (_label, value, expected) => {
    expect(headerValue(value)).toBe(expected);
  });

  it('decodes every readable item of an array and drops the rest', () => {
    expect(headerValue([' a ', Buffer.from('b'), { x: 1 }, null])).toEqual(['a', 'b']);
    expect(headerValue([{}])).toBeUndefined();
  });

  it('joins the items of an array for a propagator', () => {
    expect(joinedHeaderValue([' a ', Buffer.from('b'), { x: 1 }])).toBe('a,b');
    expect(joinedHeaderValue(' a ')).toBe('a');
    expect(joinedHeaderValue([{}])).toBeUndefined();
  });

  it.each([
    ['a line break', 'k=v;p\r\nX-Injected: 1'],
    ['a NUL', Buffer.from('k=v\u0000')],
    ['a DEL', 'k=v\u007f'],
  ])('has no value for one holding %s, which no header value may', (_label, value) => {
    expect(headerValue(value)).toBeUndefined();
    expect(headerValue([value, 'k=w'])).toEqual(['k=w']);
  });

  it.each([[undefined], [null], [{ nested: true }], [() => 'x']])(
    'has no value for %p',
    (value) => {
      expect(headerValue(value)).toBeUndefined();
    },
  );
});

describe('recordGetter / recordSetter (TCP, Redis, AMQP, Kafka, MQTT)', () => {
  it('reads a context whatever the case of the name, Buffers and padding included', () => {
    for (const carrier of [
      { traceparent: TRACEPARENT },
      { Traceparent: ` ${TRACEPARENT}` },
      { TRACEPARENT: Buffer.from(TRACEPARENT) },
    ]) {
      expect(extracted(carrier, recordGetter)).toMatchObject({
        traceId: TRACE_ID,
        spanId: SPAN_ID,
        isRemote: true,
      });
    }
  });

  it('lists the names in lower case, once each, as Node lists HTTP headers', () => {
    expect(recordGetter.keys({ Traceparent: 'a', traceparent: 'b', 'Uberctx-A': 'c' })).toEqual([
      'traceparent',
      'uberctx-a',
    ]);
    expect(recordGetter.keys(undefined)).toEqual([]);
  });

  it("gives Jaeger's propagator its baggage whatever the case of the names", () => {
    const carrier = {
      'Uber-Trace-Id': `${TRACE_ID}:${SPAN_ID}:0:1`,
      'Uberctx-Tenant': 'acme',
      'uberctx-lower': 'ok',
    };
    const ctx = new JaegerPropagator().extract(ROOT_CONTEXT, carrier, recordGetter);
    expect(trace.getSpanContext(ctx)).toMatchObject({ traceId: TRACE_ID, spanId: SPAN_ID });
    expect(propagation.getBaggage(ctx)?.getAllEntries()).toEqual([
      ['tenant', { value: 'acme' }],
      ['lower', { value: 'ok' }],
    ]);
  });

  it.each([
    ['repeated (an AMQP or JSON array)', { traceparent: [TRACEPARENT, OTHER_TRACEPARENT] }],
    ['the same twice', { traceparent: [TRACEPARENT, TRACEPARENT] }],
    ['under two cases of its name', { traceparent: TRACEPARENT, TRACEPARENT: OTHER_TRACEPARENT }],
    ['once valid and once not, in two cases', { Traceparent: 'bad', traceparent: TRACEPARENT }],
  ])('continues no trace from a traceparent %s (W3C: a new trace)', (_label, carrier) => {
    expect(extracted(carrier as Record<string, unknown>, recordGetter)).toBeUndefined();
  });

  it('hands every value of a name over joined, in the order the carrier holds them', () => {
    const carrier = { tracestate: ['a=1', Buffer.from(' b=2 ')], TraceState: 'c=3', x: 'y' };
    expect(recordGetter.get(carrier, 'tracestate')).toBe('a=1,b=2,c=3');
    // A single-item list is that item.
    expect(extracted({ traceparent: [TRACEPARENT] }, recordGetter)).toMatchObject({
      traceId: TRACE_ID,
    });
    // Members of repeated tracestate values combine, as W3C allows.
    const ctx = w3c.extract(
      ROOT_CONTEXT,
      { traceparent: TRACEPARENT, tracestate: ['a=1', 'b=2'], TRACESTATE: 'c=3' },
      recordGetter,
    );
    expect(trace.getSpanContext(ctx)?.traceState?.serialize()).toBe('a=1,b=2,c=3');
  });

  it('reads nothing from a missing or odd carrier, and never throws', () => {
    expect(recordGetter.get(undefined, 'traceparent')).toBeUndefined();
    expect(recordGetter.keys(undefined)).toEqual([]);
    expect(recordGetter.get('oops' as never, 'traceparent')).toBeUndefined();
    expect(extracted({ traceparent: { not: 'a string' } }, recordGetter)).toBeUndefined();
  });

  it('replaces the same name in another case, as a forwarded record would carry it', () => {
    const carrier: Record<string, unknown> = { Traceparent: OTHER_TRACEPARENT, 'x-tenant': 'acme' };
    w3c.inject(
      trace.setSpanContext(ROOT_CONTEXT, { traceId: TRACE_ID, spanId: SPAN_ID, traceFlags: 1 }),
      carrier,
      recordSetter,
    );
    expect(carrier).toEqual({ 'x-tenant': 'acme', traceparent: TRACEPARENT });
    expect(extracted(carrier, recordGetter)).toMatchObject({ traceId: TRACE_ID });
  });

  it("takes out the tracestate of the traceparent it replaces, and writes the span's own", () => {
    const carrier: Record<string, unknown> = {
      traceparent: OTHER_TRACEPARENT,
      TraceState: 'other=of-that-trace',
      'x-tenant': 'acme',
    };
    const spanContext = { traceId: TRACE_ID, spanId: SPAN_ID, traceFlags: 1 };
    w3c.inject(trace.setSpanContext(ROOT_CONTEXT, spanContext), carrier, recordSetter);
    expect(carrier).toEqual({ 'x-tenant': 'acme', traceparent: TRACEPARENT });

    const withState: Record<string, unknown> = { tracestate: 'other=of-that-trace' };
    const traceState = new TraceState('ours=1');
    w3c.inject(
      trace.setSpanContext(ROOT_CONTEXT, { ...spanContext, traceState }),
      withState,
      recordSetter,
    );
    expect(withState).toEqual({ traceparent: TRACEPARENT, tracestate: 'ours=1' });
  });

  it('writes what a propagator injects', () => {
    const carrier: Record<string, unknown> = { 'x-tenant': 'acme' };
    const ctx = trace.setSpanContext(ROOT_CONTEXT, {
      traceId: TRACE_ID,
      spanId: SPAN_ID,
      traceFlags: 1,
    });
    w3c.inject(ctx, carrier, recordSetter);
    expect(carrier).toEqual({ 'x-tenant': 'acme', traceparent: TRACEPARENT });
  });
});

describe('natsGetter', () => {
  /** MsgHdrs as @nats-io/transport-node implements them: exact names unless told otherwise. */
  const headers = (entries: Record<string, string[]>): NatsHeadersLike => ({
    keys: () => Object.keys(entries),
    values: (key: string, match?: unknown) =>
      Object.entries(entries)
        .filter(([k]) =>
          match === 'insensitive' ? k.toLowerCase() === key.toLowerCase() : k === key,
        )
        .flatMap(([, v]) => v),
    set: (key: string, value: string) => {
      entries[key] = [value];
    },
  });

  it("lists the names in lower case, for Jaeger's propagator", () => {
    const carrier = headers({ 'Uberctx-Tenant': ['acme'], 'uberctx-lower': ['ok'] });
    expect(natsGetter.keys(carrier)).toEqual(['uberctx-tenant', 'uberctx-lower']);
    const ctx = new JaegerPropagator().extract(ROOT_CONTEXT, carrier, natsGetter);
    expect(propagation.getBaggage(ctx)?.getEntry('tenant')?.value).toBe('acme');
  });

  it('drops a value with a control character other than tab', () => {
    expect(natsGetter.get(headers({ baggage: ['k=v;p\u0001'] }), 'baggage')).toBeUndefined();
    expect(natsGetter.get(headers({ baggage: ['a=1\u0000', 'b=2'] }), 'baggage')).toBe('b=2');
  });

  it('reads the context regardless of case and padding', () => {
    expect(extracted(headers({ Traceparent: [` ${TRACEPARENT} `] }), natsGetter)).toMatchObject({
      traceId: TRACE_ID,
    });
  });

  it('has no value for a missing name, rather than an empty string', () => {
    expect(natsGetter.get(headers({}), 'traceparent')).toBeUndefined();
    expect(natsGetter.get(undefined, 'traceparent')).toBeUndefined();
  });

  it('hands repeated values over joined, so that a repeated traceparent starts a new trace', () => {
    expect(natsGetter.get(headers({ baggage: ['a=1', ' b=2'] }), 'baggage')).toBe('a=1,b=2');
    expect(
      extracted(headers({ traceparent: [TRACEPARENT, OTHER_TRACEPARENT] }), natsGetter),
    ).toBeUndefined();
    expect(
      extracted(headers({ traceparent: [TRACEPARENT], TRACEPARENT: [TRACEPARENT] }), natsGetter),
    ).toBeUndefined();
  });
});

describe('mqttSetter', () => {
  it('writes tabs as spaces and leaves out a value with another control character', () => {
    const props: Record<string, unknown> = {};
    mqttSetter.set(props, 'baggage', 'k=v;\tp');
    mqttSetter.set(props, 'tracestate', 'a=1\u0085');
    mqttSetter.set(props, 'traceparent', TRACEPARENT);
    expect(props).toEqual({ baggage: 'k=v; p', traceparent: TRACEPARENT });
  });
});

describe("natsSetter, on the NATS client library's own headers", () => {
  it("replaces the same name in another case, and the old traceparent's tracestate", async () => {
    const { headers } = await import('@nats-io/transport-node');
    const carrier = headers();
    carrier.set('Traceparent', OTHER_TRACEPARENT);
    carrier.set('Tracestate', 'other=of-that-trace');
    carrier.set('x-tenant', 'acme');
    w3c.inject(
      trace.setSpanContext(ROOT_CONTEXT, { traceId: TRACE_ID, spanId: SPAN_ID, traceFlags: 1 }),
      carrier,
      natsSetter,
    );
    expect(carrier.keys()).toEqual(['x-tenant', 'traceparent']);
    expect(carrier.get('traceparent')).toBe(TRACEPARENT);
    expect(extracted(carrier as unknown as NatsHeadersLike, natsGetter)).toMatchObject({
      traceId: TRACE_ID,
    });
  });
});

describe('the gRPC carrier', () => {
  /** grpc-js Metadata: lower-cased names, every value of a name. */
  const metadata = (entries: Record<string, Array<string | Buffer>>) => ({
    get: (key: string) => entries[key.toLowerCase()] ?? [],
    getMap: () => Object.fromEntries(Object.entries(entries).map(([k, v]) => [k, v[0]])),
    set: (key: string, value: string) => {
      entries[key.toLowerCase()] = [value];
    },
  });

  it('reads and writes the context in the metadata', () => {
    expect(extracted(metadata({ traceparent: [TRACEPARENT] }), grpcGetter)).toMatchObject({
      traceId: TRACE_ID,
    });
    expect(
      extracted(metadata({ traceparent: [Buffer.from(TRACEPARENT)] }), grpcGetter),
    ).toMatchObject({ traceId: TRACE_ID });
    const carrier = metadata({});
    w3c.inject(
      trace.setSpanContext(ROOT_CONTEXT, { traceId: TRACE_ID, spanId: SPAN_ID, traceFlags: 1 }),
      carrier,
      grpcSetter,
    );
    expect(carrier.get('traceparent')).toEqual([TRACEPARENT]);
    expect(grpcGetter.keys(carrier)).toEqual(['traceparent']);
    expect(grpcGetter.get(metadata({}), 'traceparent')).toBeUndefined();
  });

  it('continues no trace from a repeated traceparent', () => {
    expect(
      extracted(metadata({ traceparent: [TRACEPARENT, OTHER_TRACEPARENT] }), grpcGetter),
    ).toBeUndefined();
    expect(grpcGetter.get(metadata({ baggage: ['a=1', Buffer.from('b=2')] }), 'baggage')).toBe(
      'a=1,b=2',
    );
  });

  it.each([
    ['/shop.orders.Orders/Create', 'shop.orders.Orders/Create'],
    ['Orders/Create', 'Orders/Create'],
    ['/', undefined],
    [undefined, undefined],
  ])('names %p as rpc.method %p', (path, method) => {
    expect(grpcMethodOf(path)).toBe(method);
  });

  it.each([
    ['localhost:5000', { address: 'localhost', port: 5000 }],
    ['dns:///orders:50051', { address: 'orders', port: 50051 }],
    ['dns://8.8.8.8/orders:50051', { address: 'orders', port: 50051 }],
    ['ipv4:10.0.0.1:50051', { address: '10.0.0.1', port: 50051 }],
    ['[::1]:50051', { address: '::1', port: 50051 }],
    ['orders', { address: 'orders', port: undefined }],
    ['unix:/run/orders.sock', undefined],
    ['', undefined],
  ])('reads the target %p', (url, target) => {
    expect(grpcTargetOf(url)).toEqual(target);
  });

  it.each([
    ['a grpc-js error', Object.assign(new Error('x'), { code: 5 }), 5],
    ["Nest's RpcException({ code })", { getError: () => ({ code: 7, message: 'no' }) }, 7],
    ['a plain error', new Error('boom'), 2],
    ['a string code', { code: 'ECONNREFUSED' }, 2],
    ['nothing at all', undefined, 2],
  ])('reads the status of %s', (_label, error, code) => {
    expect(grpcStatusOfError(error)).toBe(code);
  });

  it.each([
    ['the code a filter answered with', { code: 5, message: 'x' }, true, new Error('x'), 5],
    ["Nest's answer to a plain error", { status: 'error' }, true, new Error('x'), 2],
    ['a code out of range', { code: 99 }, true, undefined, 2],
    ["an RpcException's code, unanswered", undefined, false, { getError: () => ({ code: 7 }) }, 7],
    [
      "not a plain error's own code",
      undefined,
      false,
      Object.assign(new Error('x'), { code: 5 }),
      2,
    ],
  ])("names a server's answer by %s", (_label, sent, seen, exception, code) => {
    expect(grpcStatusSent(sent, seen, exception)).toBe(code);
  });
});

describe('message attributes', () => {
  it('RabbitMQ: message id, correlation id, routing key; headers only when an object', () => {
    const attributes = {};
    const message = {
      fields: { routingKey: 'orders', exchange: '' },
      properties: { headers: { traceparent: TRACEPARENT }, messageId: 'm-1', correlationId: 'c-1' },
    };
    rmqMessageAttributes(message, attributes);
    expect(attributes).toEqual({
      'messaging.message.id': 'm-1',
      'messaging.message.conversation_id': 'c-1',
      'rabbitmq.destination.routing_key': 'orders',
    });
    expect(rmqHeaders(message)).toEqual({ traceparent: TRACEPARENT });
    expect(rmqHeaders({ properties: { headers: 'x' } })).toBeUndefined();
    expect(rmqHeaders(undefined)).toBeUndefined();
  });

  it('Kafka: partition, offset and key', () => {
    const attributes = {};
    kafkaMessageAttributes({ offset: '42', key: Buffer.from('order-1') }, 3, attributes);
    expect(attributes).toEqual({
      'messaging.destination.partition.id': '3',
      'kafka.offset': 42,
      'kafka.message.key': 'order-1',
    });
  });

  it.each([
    ['a schema-registry key (magic byte, then a schema id)', Buffer.from([0, 0, 0, 0, 7, 65])],
    ['bytes that are no UTF-8', Buffer.from([0xc3, 0x28])],
    ['a string with control characters', '\u0000\u0000\u0007id'],
  ])('Kafka: leaves out %s, which has no canonical string form', (_label, key) => {
    const attributes = {};
    kafkaMessageAttributes({ offset: '1', key }, 0, attributes);
    expect(attributes).toEqual({
      'messaging.destination.partition.id': '0',
      'kafka.offset': 1,
    });
  });

  it('MQTT: user properties only when an object', () => {
    expect(
      mqttUserProperties({ properties: { userProperties: { traceparent: TRACEPARENT } } }),
    ).toEqual({
      traceparent: TRACEPARENT,
    });
    expect(mqttUserProperties({})).toBeUndefined();
  });
});

describe('copied semantic-convention names', () => {
  it.each(Object.entries(semconv))(
    '%s matches @opentelemetry/semantic-conventions/incubating',
    (name, value) => {
      expect((incubating as Record<string, unknown>)[name]).toBe(value);
    },
  );
});

describe('forwardedFacts: the original request behind proxies', () => {
  it('is undefined for a request straight from its client', () => {
    expect(forwardedFacts({ host: 'shop.example.com' })).toBeUndefined();
  });

  it("reads the client's element of Forwarded (RFC 7239)", () => {
    expect(
      forwardedFacts({
        forwarded:
          'for="[2001:db8:cafe::17]:4711";proto=HTTPS;host=shop.example.com, for=198.51.100.17',
      }),
    ).toEqual({ client: '2001:db8:cafe::17', host: 'shop.example.com', proto: 'https' });
    expect(forwardedFacts({ forwarded: 'for="203.0.113.5:8080"' })).toEqual({
      client: '203.0.113.5',
    });
  });

  it('falls back to X-Forwarded-*, the first address being the client', () => {
    expect(
      forwardedFacts({
        'x-forwarded-for': '2001:db8::1, 10.0.0.2',
        'x-forwarded-host': 'shop.example.com:8443',
        'x-forwarded-proto': 'https',
      }),
    ).toEqual({ client: '2001:db8::1', host: 'shop.example.com:8443', proto: 'https' });
  });

  it('passes a malformed Forwarded over, and never takes an obfuscated or odd value', () => {
    expect(
      forwardedFacts({ forwarded: 'for="unterminated', 'x-forwarded-for': '203.0.113.9' }),
    ).toEqual({ client: '203.0.113.9' });
    expect(forwardedFacts({ forwarded: 'for=_hidden;proto=gopher' })).toEqual({});
    expect(forwardedFacts({ 'x-forwarded-for': 'unknown' })).toEqual({});
  });
});
