import { trace, type Tracer } from '@opentelemetry/api';
import { TRACER_NAME, TRACER_VERSION } from '../tracing.constants.js';

let provider: unknown;
let tracer: Tracer | undefined;

/**
 * The package's tracer, looked up at call time so that spans go to whatever
 * provider is registered now (ours, a user's `NodeSDK`, or none). The global
 * proxy provider only changes when the API is reset, so one identity check
 * keeps this cheap on hot paths.
 */
export function getTracer(): Tracer {
  const current = trace.getTracerProvider();
  if (current !== provider || tracer === undefined) {
    provider = current;
    tracer = current.getTracer(TRACER_NAME, TRACER_VERSION);
  }
  return tracer;
}
