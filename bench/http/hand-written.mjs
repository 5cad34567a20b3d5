// The hand-rolled tracers of bench/http (variants `hand-written` and
// `untraced+context`): what a team writes when it traces by hand with the
// OpenTelemetry SDK, in front of Nest's router. They are reference floors, not
// products: no route names, no error status, no response headers.
import { context, propagation, ROOT_CONTEXT, SpanKind, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';

const MARK = Symbol('bench.hand-written');

/** Installs the floor on a created (not yet listening) Nest app. */
export function install(app, platform, { spans, serviceName }) {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': serviceName }),
    spanProcessors: spans ? [new BatchSpanProcessor(new OTLPTraceExporter())] : [],
  });
  trace.setGlobalTracerProvider(provider);
  const tracer = trace.getTracer('bench-hand-written');
  process.once('SIGTERM', () => {
    provider.shutdown().finally(() => process.exit(0));
  });

  // Runs `next` in the request's context; `res` is Node's ServerResponse.
  const enter = spans
    ? (req, res, next) => {
        const parent = propagation.extract(ROOT_CONTEXT, req.headers);
        const span = tracer.startSpan(
          req.method,
          {
            kind: SpanKind.SERVER,
            attributes: { 'http.request.method': req.method, 'url.path': req.url },
          },
          parent,
        );
        res.on('finish', () => {
          span.setAttribute('http.response.status_code', res.statusCode);
          span.end();
        });
        context.with(trace.setSpan(parent, span), next);
      }
    : (_req, _res, next) => context.with(ROOT_CONTEXT.setValue(MARK, true), next);

  if (platform === 'fastify') {
    app
      .getHttpAdapter()
      .getInstance()
      .addHook('onRequest', (request, reply, done) => enter(request.raw, reply.raw, done));
  } else {
    app.use(enter);
  }
}
