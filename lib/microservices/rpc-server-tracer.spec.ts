import { Transport } from '@nestjs/microservices';
import { EventEmitter } from 'node:events';
import { propagation, ROOT_CONTEXT, SpanKind, trace, type SpanContext } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { useOtelHarness } from '../../test/support/otel-harness.js';
import { loadMicroservices, type MicroservicesPackage } from './microservices-package.js';
import { RpcServerTracer } from './rpc-server-tracer.js';

const { exporter } = useOtelHarness({ propagator: new W3CTraceContextPropagator() });

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_ID = '00f067aa0ba902b7';
const traceparent = `00-${TRACE_ID}-${PARENT_ID}-01`;

let pkg: MicroservicesPackage;
beforeAll(async () => {
  pkg = (await loadMicroservices())!;
});

/** Runs one message through the hooks the way a Nest server does: start, the handler, end. */
function processMessage(tracer: RpcServerTracer, ctx: object): SpanContext | undefined {
  const inside = tracer.start(Transport.TCP, ctx, () => trace.getActiveSpan()?.spanContext());
  tracer.end(ctx);
  return inside;
}

function onlySpan(): ReadableSpan {
  const spans = exporter.getFinishedSpans();
  expect(spans).toHaveLength(1);
  return spans[0]!;
}

describe('RpcServerTracer: a message from its start hook to its end hook', () => {
  it('starts and ends a CONSUMER span for an event, on the context Nest made for it', () => {
    const tracer = new RpcServerTracer(pkg);
    const ctx = new pkg.ms.TcpContext([undefined as never, 'orders.created', { traceparent }]);
    tracer.markEvent(ctx, 'orders.created');
    const inside = processMessage(tracer, ctx);

    const span = onlySpan();
    expect(span.name).toBe('process orders.created');
    expect(span.kind).toBe(SpanKind.CONSUMER);
    expect(span.spanContext().traceId).toBe(TRACE_ID);
    expect(span.parentSpanContext?.spanId).toBe(PARENT_ID);
    expect(inside?.spanId).toBe(span.spanContext().spanId);
    // What was kept is forgotten: the next message on the same context is a request, not an event.
    processMessage(tracer, ctx);
    expect(exporter.getFinishedSpans()[1]?.kind).toBe(SpanKind.SERVER);
  });

  it('traces a message whose context is frozen', () => {
    const tracer = new RpcServerTracer(pkg);
    const ctx = Object.freeze(
      new pkg.ms.TcpContext([undefined as never, 'orders.created', { traceparent }]),
    );
    tracer.markEvent(ctx, 'orders.created');
    processMessage(tracer, ctx);

    const span = onlySpan();
    expect(span.name).toBe('process orders.created');
    expect(span.kind).toBe(SpanKind.CONSUMER);
    expect(span.parentSpanContext?.spanId).toBe(PARENT_ID);
    expect(span.endTime[0]).toBeGreaterThan(0);
  });

  it("ends a gRPC call's span from its request object without writing to that object", () => {
    const tracer = new RpcServerTracer(pkg);
    const request = { id: 7 };
    const metadata = new (pkg.grpcMetadata()!)();
    metadata.set('traceparent', traceparent);
    const call = { path: '/shop.Orders/Get', metadata, request };
    const inside = tracer.start(Transport.GRPC, call, () => {
      // The application's data carries nothing of ours while its handler runs.
      expect(Reflect.ownKeys(request)).toEqual(['id']);
      return trace.getActiveSpan()?.spanContext();
    });
    tracer.end(request);

    const span = onlySpan();
    expect(span.name).toBe('shop.Orders/Get');
    expect(span.kind).toBe(SpanKind.SERVER);
    expect(span.parentSpanContext?.spanId).toBe(PARENT_ID);
    expect(inside?.spanId).toBe(span.spanContext().spanId);
    expect(Reflect.ownKeys(request)).toEqual(['id']);
  });

  it.each([
    ['SERVER', SpanKind.SERVER],
    ['CONSUMER', SpanKind.CONSUMER],
  ])(
    'becomes the child of a %s span another instrumentation started for the message',
    (_label, kind) => {
      const tracer = new RpcServerTracer(pkg);
      const metadata = new (pkg.grpcMetadata()!)();
      metadata.set('traceparent', traceparent);
      const call = { path: '/shop.Orders/Get', metadata, request: {} };
      // What OpenTelemetry's gRPC instrumentation does: its span, from the same metadata, active.
      const other = trace.getTracer('another-instrumentation');
      const parent = propagation.extract(ROOT_CONTEXT, { traceparent });
      other.startActiveSpan('grpc.shop.Orders/Get', { kind }, parent, (theirs) => {
        tracer.start(Transport.GRPC, call, () => undefined);
        tracer.end(call.request);
        theirs.end();
      });
      const [ours, theirs] = exporter.getFinishedSpans();
      expect(ours!.name).toBe('shop.Orders/Get');
      expect(ours!.spanContext().traceId).toBe(TRACE_ID);
      expect(ours!.parentSpanContext?.spanId).toBe(theirs!.spanContext().spanId);
      expect(theirs!.parentSpanContext?.spanId).toBe(PARENT_ID);
    },
  );

  it.each([
    ['has ended (active where the server connected)', 'ended'],
    ['is in another trace than the message', 'other-trace'],
  ])('continues the carrier, not an active SERVER span that %s', (_label, kind) => {
    const tracer = new RpcServerTracer(pkg);
    const ctx = new pkg.ms.TcpContext([undefined as never, 'sum', { traceparent }]);
    trace.getTracer('app').startActiveSpan('GET /start', { kind: SpanKind.SERVER }, (span) => {
      if (kind === 'ended') span.end();
      processMessage(tracer, ctx);
      if (kind !== 'ended') span.end();
    });
    const ours = exporter.getFinishedSpans().find((s) => s.name === 'process sum')!;
    expect(ours.spanContext().traceId).toBe(TRACE_ID);
    expect(ours.parentSpanContext?.spanId).toBe(PARENT_ID);
  });

  it.each([
    ['DEADLINE_EXCEEDED', 'its deadline is only moments away', 5],
    ['DEADLINE_EXCEEDED', 'its deadline has passed', -5],
    ['CANCELLED', 'its deadline is well ahead', 1000],
  ])('records %s for a gRPC call the client resets when %s', (code, _when, ahead) => {
    // A client's own timer resets the call at its deadline, which reaches the server a moment
    // before the deadline the server computed from the call's timeout (it got the call later).
    const tracer = new RpcServerTracer(pkg);
    const request = { id: 1 };
    const metadata = new (pkg.grpcMetadata()!)();
    const call = Object.assign(new EventEmitter(), { getDeadline: () => Date.now() + ahead });
    const handle = { call, passThrough: false, responseStream: false };
    tracer.start(
      Transport.GRPC,
      { path: '/shop.Orders/Get', metadata, request },
      () => {
        call.emit('cancelled', 'cancelled');
      },
      undefined,
      undefined,
      handle,
    );
    tracer.end(request);
    expect(onlySpan().attributes['rpc.status_code']).toBe(code);
  });

  it('continues the carrier, not an active span that is no inbound one', () => {
    const tracer = new RpcServerTracer(pkg);
    const ctx = new pkg.ms.TcpContext([undefined as never, 'sum', { traceparent }]);
    trace.getTracer('app').startActiveSpan('a client call', { kind: SpanKind.CLIENT }, (span) => {
      processMessage(tracer, ctx);
      span.end();
    });
    const ours = exporter.getFinishedSpans().find((s) => s.name === 'process sum')!;
    expect(ours.parentSpanContext?.spanId).toBe(PARENT_ID);
  });

  it('ends a span once when the end hook runs twice', () => {
    const tracer = new RpcServerTracer(pkg);
    const ctx = new pkg.ms.TcpContext([undefined as never, 'sum', { traceparent }]);
    processMessage(tracer, ctx);
    tracer.end(ctx);
    expect(onlySpan().kind).toBe(SpanKind.SERVER);
  });
});
