import {
  trace,
  type Attributes,
  type Context,
  type Span,
  type SpanKind,
  type Tracer,
} from '@opentelemetry/api';
import { TRACER_NAME, TRACER_VERSION } from '../tracing.constants.js';
import type { PackageTracer } from './span.js';

/**
 * Where the provider this package registered globally is kept, with its {@link PackageTracer}: on
 * globalThis under Symbol.for, so that two copies of the package agree.
 */
export const SHARED_SDK = Symbol.for('nestjs-tracing:shared-sdk');

interface SharedTracer {
  provider: unknown;
  tracer?: PackageTracer;
}
type WithShared = typeof globalThis & { [SHARED_SDK]?: SharedTracer };

let delegate: unknown;
let tracer: Tracer | undefined;
let ownTracer: PackageTracer | undefined;

/** The provider behind the global one (the API's proxy), or the global one itself. */
export function globalDelegate(): unknown {
  const global = trace.getTracerProvider() as ReturnType<typeof trace.getTracerProvider> & {
    getDelegate?: () => unknown;
  };
  return typeof global.getDelegate === 'function' ? global.getDelegate() : global;
}

/**
 * The package's tracer, looked up at call time so that spans go to whatever
 * provider is registered now (ours, a user's `NodeSDK`, or none): the package's
 * own {@link PackageTracer} when its provider is the registered one, otherwise that
 * provider's tracer. One identity check keeps this cheap on hot paths.
 */
export function getTracer(): Tracer {
  const current = globalDelegate();
  if (current !== delegate || tracer === undefined) {
    delegate = current;
    const shared = (globalThis as WithShared)[SHARED_SDK];
    ownTracer = shared !== undefined && shared.provider === current ? shared.tracer : undefined;
    tracer = ownTracer ?? trace.getTracer(TRACER_NAME, TRACER_VERSION);
  }
  return tracer;
}

/**
 * Starts a span with attributes the caller built for it alone (fresh, valid values, not touched
 * afterwards): the package's tracer keeps the object instead of copying it; any other tracer gets
 * it as `SpanOptions.attributes`.
 */
export function startSpanWith(
  name: string,
  kind: SpanKind,
  attributes: Attributes,
  parent: Context,
): Span {
  const current = getTracer();
  return ownTracer !== undefined
    ? ownTracer.startOwned(name, kind, attributes, parent)
    : current.startSpan(name, { kind, attributes }, parent);
}
