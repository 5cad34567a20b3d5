// `node --import ./bench/common/otel-register.mjs app.mjs`: the usual way to
// run OpenTelemetry's NodeSDK with an ESM app. It registers the
// import-in-the-middle loader hook first, so that the instrumentations can
// patch `http`, `express` and `fastify` as the app imports them, then starts
// the SDK before the app's first import.
//
// Same export as nestjs-tracing's default: OTLP http/protobuf to
// OTEL_EXPORTER_OTLP_ENDPOINT, BatchSpanProcessor with its defaults. Metrics and
// logs are left off: the bench compares tracing.
import { register } from 'node:module';

register('@opentelemetry/instrumentation/hook.mjs', import.meta.url);

const { NodeSDK } = await import('@opentelemetry/sdk-node');
const { OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-proto');
const { HttpInstrumentation } = await import('@opentelemetry/instrumentation-http');

process.env.OTEL_LOGS_EXPORTER ??= 'none';

const instrumentations = [new HttpInstrumentation()];
if (process.env.BENCH_PLATFORM === 'fastify') {
  const { FastifyOtelInstrumentation } = await import('@fastify/otel');
  // Registers its plugin on every Fastify instance as it is created (Nest creates it).
  instrumentations.push(new FastifyOtelInstrumentation({ registerOnInitialization: true }));
} else {
  const { ExpressInstrumentation } = await import('@opentelemetry/instrumentation-express');
  instrumentations.push(new ExpressInstrumentation());
}

const sdk = new NodeSDK({
  serviceName: process.env.BENCH_SERVICE_NAME ?? 'bench-otel-sdk',
  traceExporter: new OTLPTraceExporter(),
  metricReaders: [],
  instrumentations,
});
sdk.start();

// Export what is left on SIGTERM, as the SDK's documentation shows.
process.once('SIGTERM', () => {
  sdk.shutdown().finally(() => process.exit(0));
});
