import { gzipSync } from 'node:zlib';
import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type HrTime,
  type Span,
} from '@opentelemetry/api';
import { JsonTraceSerializer, ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
  type ReadableSpan,
} from '@opentelemetry/sdk-trace-base';

/**
 * Real OpenTelemetry exports for the viewer's specs: each service is a tracer provider of its
 * own with its own `service.name`, as in separate processes, and its spans reach the viewer
 * through OpenTelemetry's own OTLP serializers.
 */

/** Whole seconds since the epoch of every fixture time: nanoseconds past 2^53, as in real life. */
export const BASE_SECONDS = 1_700_000_000;

/** `ms` after the base time plus `ns` nanoseconds, so that times do not end in zeros. */
export function at(ms: number, ns = 0): HrTime {
  return [BASE_SECONDS + Math.floor(ms / 1000), (ms % 1000) * 1_000_000 + ns];
}

/** What OTLP sends for an HrTime, worked out exactly. */
export function nanos([seconds, nanoseconds]: HrTime): string {
  return String(BigInt(seconds) * 1_000_000_000n + BigInt(nanoseconds));
}

export class FakeService {
  readonly exporter = new InMemorySpanExporter();
  readonly provider: BasicTracerProvider;
  private readonly tracer;

  constructor(readonly name: string) {
    this.provider = new BasicTracerProvider({
      resource: resourceFromAttributes({ 'service.name': name }),
      spanProcessors: [new SimpleSpanProcessor(this.exporter)],
    });
    this.tracer = this.provider.getTracer(`${name}-scope`, '1.0.0');
  }

  /** A span, child of `parent` (possibly another service's span: a propagated context). */
  start(name: string, kind: SpanKind, startTime: HrTime, parent?: Span, attributes?: Attributes) {
    const ctx = parent === undefined ? ROOT_CONTEXT : trace.setSpan(ROOT_CONTEXT, parent);
    return this.tracer.startSpan(name, { kind, startTime, attributes }, ctx);
  }

  /** The spans it has ended: what one export of its batch would carry. */
  spans(): ReadableSpan[] {
    return this.exporter.getFinishedSpans();
  }

  shutdown(): Promise<void> {
    return this.provider.shutdown();
  }
}

export type Encoding = 'protobuf' | 'json';

export function encode(spans: ReadableSpan[], encoding: Encoding): Uint8Array {
  const body =
    encoding === 'json'
      ? JsonTraceSerializer.serializeRequest(spans)
      : ProtobufTraceSerializer.serializeRequest(spans);
  if (body === undefined) throw new Error('the serializer returned nothing');
  return body;
}

/** POSTs an export the way OTLP/HTTP exporters do. */
export function postExport(
  url: string,
  spans: ReadableSpan[],
  { encoding = 'protobuf', gzip = false }: { encoding?: Encoding; gzip?: boolean } = {},
): Promise<Response> {
  const body = encode(spans, encoding);
  return postRaw(url, gzip ? gzipSync(body) : body, {
    'content-type': encoding === 'json' ? 'application/json' : 'application/x-protobuf',
    ...(gzip ? { 'content-encoding': 'gzip' } : {}),
  });
}

export function postRaw(
  url: string,
  body: Uint8Array | string,
  headers: Record<string, string>,
): Promise<Response> {
  return fetch(`${url}/v1/traces`, { method: 'POST', body, headers });
}

/**
 * Two traces over four services.
 *
 * checkout: gateway `POST /orders` → gRPC → orders → RabbitMQ → billing, which fails.
 * stock:    gateway `GET /stock/:sku` → NATS → inventory, which fails; then → gRPC → orders.
 */
export function buildShop() {
  const gateway = new FakeService('gateway');
  const orders = new FakeService('orders');
  const billing = new FakeService('billing');
  const inventory = new FakeService('inventory');

  const times = {
    checkoutStart: at(0, 7),
    checkoutEnd: at(40, 9),
    eventTime: at(15, 321),
    stockStart: at(100, 11),
  };
  const rootAttributes = {
    'http.request.method': 'POST',
    'url.path': '/orders',
    'http.response.status_code': 201,
    // Past 32 bits: decoded through int64, not int32.
    'app.big': 2 ** 40 + 1,
    'app.negative': -42,
    'app.ratio': 0.25,
    'app.flag': false,
    'app.tags': ['a', 'b'],
    'app.codes': [200, 404],
    'app.checks': [true, false],
    'app.weights': [0.5, 1.5],
  };
  const checkout = gateway.start(
    'POST /orders',
    SpanKind.SERVER,
    times.checkoutStart,
    undefined,
    rootAttributes,
  );
  const createCall = gateway.start('orders.Orders/Create', SpanKind.CLIENT, at(2, 1), checkout, {
    'rpc.system.name': 'grpc',
  });
  const create = orders.start('orders.Orders/Create', SpanKind.SERVER, at(3, 2), createCall, {
    'rpc.system.name': 'grpc',
    'rpc.method': 'orders.Orders/Create',
  });
  const insert = orders.start('insert order', SpanKind.INTERNAL, at(4, 3), create);
  insert.end(at(6));
  const publish = orders.start('order.created publish', SpanKind.PRODUCER, at(7, 4), create, {
    'messaging.system': 'rabbitmq',
    'messaging.destination.name': 'order.created',
  });
  publish.end(at(8));
  const charge = billing.start('order.created process', SpanKind.CONSUMER, at(10, 5), publish, {
    'messaging.system': 'rabbitmq',
    'messaging.operation.type': 'process',
  });
  const declined = new TypeError('card declined');
  charge.recordException(declined, times.eventTime);
  charge.setStatus({ code: SpanStatusCode.ERROR, message: 'card declined' });
  charge.end(at(20, 6));
  create.end(at(29));
  createCall.end(at(30));
  checkout.end(times.checkoutEnd);

  const stock = gateway.start('GET /stock/:sku', SpanKind.SERVER, times.stockStart, undefined, {
    'http.request.method': 'GET',
  });
  const checkCall = gateway.start('stock.check', SpanKind.CLIENT, at(101), stock, {
    'messaging.system': 'nats',
  });
  const check = inventory.start('stock.check', SpanKind.SERVER, at(102), checkCall, {
    'messaging.system': 'nats',
  });
  check.setStatus({ code: SpanStatusCode.ERROR, message: 'out of stock' });
  check.end(at(119));
  checkCall.end(at(120));
  const getCall = gateway.start('orders.Orders/Get', SpanKind.CLIENT, at(121), stock, {
    'rpc.system.name': 'grpc',
  });
  const get = orders.start('orders.Orders/Get', SpanKind.SERVER, at(122), getCall, {
    'rpc.system.name': 'grpc',
  });
  get.end(at(128));
  getCall.end(at(129));
  stock.end(at(130));

  const id = (span: Span) => span.spanContext().spanId;
  return {
    services: { gateway, orders, billing, inventory },
    times,
    rootAttributes,
    declined,
    checkoutTraceId: checkout.spanContext().traceId,
    stockTraceId: stock.spanContext().traceId,
    ids: {
      checkout: id(checkout),
      createCall: id(createCall),
      create: id(create),
      insert: id(insert),
      publish: id(publish),
      charge: id(charge),
      stock: id(stock),
      checkCall: id(checkCall),
      check: id(check),
      getCall: id(getCall),
      get: id(get),
    },
    async shutdown() {
      await Promise.all([gateway, orders, billing, inventory].map((s) => s.shutdown()));
    },
  };
}

export type Shop = ReturnType<typeof buildShop>;

/** Every service's spans in one export each, in four different ways. */
export async function exportShop(url: string, shop: Shop): Promise<Response[]> {
  const { gateway, orders, billing, inventory } = shop.services;
  return Promise.all([
    postExport(url, gateway.spans(), { encoding: 'protobuf' }),
    postExport(url, orders.spans(), { encoding: 'json' }),
    postExport(url, billing.spans(), { encoding: 'protobuf', gzip: true }),
    postExport(url, inventory.spans(), { encoding: 'json', gzip: true }),
  ]);
}
