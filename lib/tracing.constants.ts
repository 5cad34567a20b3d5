/** Name and version reported as the instrumentation scope of every span this package starts. */
export const TRACER_NAME = 'nestjs-tracing';
/** Kept equal to package.json's version by a unit test. */
export const TRACER_VERSION = '0.1.0';

/** Injection token of the span exporter(s) the module exports to. */
export const TRACING_SPAN_EXPORTER = Symbol.for('nestjs-tracing:span-exporter');
/** Injection token of the running SDK (provider, processors, resolved settings). */
export const TRACING_SDK = Symbol.for('nestjs-tracing:sdk');
