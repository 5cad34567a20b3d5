// The measuring process of bench/export: ns per span to encode an OTLP/protobuf
// export request of 512 spans (the BatchSpanProcessor's batch), with
// OpenTelemetry's ProtobufTraceSerializer and with the package's writer (from
// dist/), for the span shapes the package produces. Both must write the same bytes.
import { SpanKind, SpanStatusCode, context, trace } from '@opentelemetry/api';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { serializeSpans } from '../../dist/sdk/otlp-span-serializer.js';

const BATCH = 512;

function spansOf(make) {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({
    resource: defaultResource().merge(
      resourceFromAttributes({ 'service.name': 'bench-export', 'process.pid': process.pid }),
    ),
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  const tracer = provider.getTracer('nestjs-tracing', '0.1.0');
  for (let i = 0; i < BATCH; i++) make(tracer, i);
  return exporter.getFinishedSpans();
}

const remote = trace.setSpanContext(context.active(), {
  traceId: '0af7651916cd43dd8448eb211c80319c',
  spanId: 'b7ad6b7169203331',
  traceFlags: 1,
  isRemote: true,
});

const SHAPES = {
  // What the HTTP middleware records for GET /hello from a load generator.
  'HTTP SERVER span (10 attributes)': (tracer) => {
    const span = tracer.startSpan(
      'GET /hello',
      {
        kind: SpanKind.SERVER,
        attributes: {
          'http.request.method': 'GET',
          'url.path': '/hello',
          'url.scheme': 'http',
          'server.address': '127.0.0.1',
          'server.port': 3000,
          'client.address': '127.0.0.1',
          'user_agent.original': 'autocannon/9.0.0',
          'network.protocol.version': '1.1',
        },
      },
      remote,
    );
    span.setAttribute('http.route', '/hello');
    span.setAttribute('http.response.status_code', 200);
    span.end();
  },
  // A message processed by a Nest microservice.
  'RPC SERVER span (4 attributes)': (tracer, i) => {
    tracer
      .startSpan(
        'process math.sum',
        {
          kind: SpanKind.SERVER,
          attributes: {
            'messaging.system': 'nats',
            'messaging.operation.name': 'process',
            'messaging.operation.type': 'process',
            'messaging.destination.name': `math.sum.${i % 4}`,
          },
        },
        remote,
      )
      .end();
  },
  // A @Trace() method that threw.
  'INTERNAL span with an exception event': (tracer) => {
    const span = tracer.startSpan('UsersService.find', {
      attributes: { 'code.function.name': 'UsersService.find' },
    });
    const error = new Error('user 42 not found');
    span.recordException(error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
    span.end();
  },
};

function timePerSpan(encode, spans, iterations) {
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) encode(spans);
  return Number(process.hrtime.bigint() - start) / iterations / spans.length;
}

process.on('message', (message) => {
  if (message?.type !== 'run') return;
  const cases = [];
  for (const [name, make] of Object.entries(SHAPES)) {
    const spans = spansOf(make);
    const theirs = Buffer.from(ProtobufTraceSerializer.serializeRequest(spans));
    const ours = Buffer.from(serializeSpans(spans));
    const entry = {
      name,
      bytesPerSpan: ours.length / spans.length,
      identical: theirs.equals(ours),
    };
    entry.otel = [];
    entry.ours = [];
    const otel = (s) => ProtobufTraceSerializer.serializeRequest(s);
    for (let i = 0; i < message.warmup; i++) {
      otel(spans);
      serializeSpans(spans);
    }
    for (let round = 0; round < message.rounds; round++) {
      entry.otel.push(timePerSpan(otel, spans, message.iterations));
      entry.ours.push(timePerSpan(serializeSpans, spans, message.iterations));
    }
    cases.push(entry);
  }
  process.send({ type: 'result', cases, batch: BATCH });
});
process.on('disconnect', () => process.exit(0));
process.send({ type: 'ready' });
