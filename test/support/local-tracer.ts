import { afterAll } from '@jest/globals';
import {
  ROOT_CONTEXT,
  TraceFlags,
  context,
  propagation,
  trace,
  type Context,
} from '@opentelemetry/api';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';

/**
 * A tracer of a spec's own, never registered globally, exporting synchronously to memory: spans
 * are parented through explicit contexts, so the OpenTelemetry globals stay free for the code
 * under test. After the suite it shuts the provider down and resets the globals the code under
 * test may have registered.
 */
export function localTracer(name: string): {
  exporter: InMemorySpanExporter;
  provider: BasicTracerProvider;
  tracer: ReturnType<BasicTracerProvider['getTracer']>;
} {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  afterAll(async () => {
    await provider.shutdown();
    trace.disable();
    context.disable();
    propagation.disable();
  });
  return { exporter, provider, tracer: provider.getTracer(name) };
}

/** A context whose parent is a sampled span of another process. */
export function remoteContext(traceId: string, spanId: string): Context {
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId,
    spanId,
    traceFlags: TraceFlags.SAMPLED,
    isRemote: true,
  });
}
