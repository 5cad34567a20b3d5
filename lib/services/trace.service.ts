import { Injectable } from '@nestjs/common';
import {
  context,
  propagation,
  trace,
  type Attributes,
  type AttributeValue,
  type Span,
  type SpanKind,
} from '@opentelemetry/api';
import { endWhenSettled, isThenable, recordError } from '../decorators/trace.decorator.js';
import { withSpan } from '../sdk/chain-context.js';
import { getTracer } from '../sdk/tracer.js';

/** Options of `TraceService#startActiveSpan`. */
export interface StartActiveSpanOptions {
  /** Span kind; defaults to INTERNAL. */
  kind?: SpanKind | undefined;
  /** Attributes set when the span starts. */
  attributes?: Attributes | undefined;
}

/**
 * The active span and baggage, for code that cannot use `@Trace()`: add attributes and events to
 * the span a request runs in, read ids for logs, or trace a block of code. Every method reads the
 * context active at the moment of the call, so one instance serves all requests; without an active
 * span, the methods that act on it do nothing and the getters return `undefined`.
 *
 * @example
 * ```ts
 * constructor(private readonly tracing: TraceService) {}
 *
 * async pay(order: Order) {
 *   this.tracing.setAttribute('order.id', order.id);
 *   this.logger.log({ traceId: this.tracing.traceId() }, 'paying');
 * }
 * ```
 */
@Injectable()
export class TraceService {
  /** The span active in the current context, if any. */
  activeSpan(): Span | undefined {
    return trace.getActiveSpan();
  }

  /** Same as `activeSpan()`, under the name the design's public API uses. */
  currentSpan(): Span | undefined {
    return trace.getActiveSpan();
  }

  /**
   * Trace id of the active span, as 32 hex digits, for logs and error reports; `undefined` without
   * a valid active span.
   */
  traceId(): string | undefined {
    const spanContext = trace.getActiveSpan()?.spanContext();
    return spanContext !== undefined && trace.isSpanContextValid(spanContext)
      ? spanContext.traceId
      : undefined;
  }

  /** Span id of the active span, as 16 hex digits; `undefined` without a valid active span. */
  spanId(): string | undefined {
    const spanContext = trace.getActiveSpan()?.spanContext();
    return spanContext !== undefined && trace.isSpanContextValid(spanContext)
      ? spanContext.spanId
      : undefined;
  }

  /**
   * Runs `fn` inside a new span, a child of the active one (or the root of a new trace), and ends
   * the span when `fn` returns or, if it returns a Promise, when that settles. A thenable that is
   * not a native Promise (a Prisma `PrismaPromise`, a Mongoose `Query`, a Knex builder) is returned
   * as it is, not run: its span ends when it settles after being awaited (its first `then()` runs
   * inside the span), and is never exported if nobody awaits it; one whose `then` cannot be hooked
   * (a frozen object) has its span ended at return. An error is recorded, sets the status to
   * ERROR, and is rethrown as the very same object.
   *
   * @example
   * ```ts
   * const rows = await this.tracing.startActiveSpan('db.import', async (span) => {
   *   span.setAttribute('import.file', file);
   *   return this.importer.run(file);
   * });
   * ```
   */
  startActiveSpan<T>(name: string, fn: (span: Span) => T, options: StartActiveSpanOptions = {}): T {
    const parent = context.active();
    const span = getTracer().startSpan(name, options, parent);
    const active = withSpan(parent, span);
    let result: T;
    try {
      result = context.with(active, fn, undefined, span);
    } catch (err) {
      recordError(span, err);
      span.end();
      throw err;
    }
    if (isThenable(result)) return endWhenSettled(result, span, active);
    span.end();
    return result;
  }

  /** Sets attributes on the active span. */
  setAttributes(attributes: Attributes): void {
    trace.getActiveSpan()?.setAttributes(attributes);
  }

  /** Sets one attribute on the active span. */
  setAttribute(key: string, value: AttributeValue): void {
    trace.getActiveSpan()?.setAttribute(key, value);
  }

  /** Adds a timestamped event to the active span, such as `cache.miss` or `retry`. */
  addEvent(name: string, attributes?: Attributes): void {
    trace.getActiveSpan()?.addEvent(name, attributes);
  }

  /**
   * Records `err` as an exception event on the active span and, unless `setError` is false, sets
   * the span's status to ERROR. Pass `{ setError: false }` for an error the code recovers from.
   */
  recordException(err: unknown, options: { setError?: boolean | undefined } = {}): void {
    const span = trace.getActiveSpan();
    if (span !== undefined) recordError(span, err, options.setError !== false);
  }

  /**
   * Baggage of the current context (W3C Baggage, propagated to downstream services): the value of
   * `key`, or every entry as a plain record when no key is given; `undefined` without baggage.
   */
  getBaggage(key: string): string | undefined;
  getBaggage(): Record<string, string> | undefined;
  getBaggage(key?: string): string | Record<string, string> | undefined {
    const baggage = propagation.getActiveBaggage();
    if (baggage === undefined) return undefined;
    if (key !== undefined) return baggage.getEntry(key)?.value;
    const entries: Record<string, string> = {};
    for (const [name, entry] of baggage.getAllEntries()) entries[name] = entry.value;
    return entries;
  }

  /**
   * Runs `fn` in a context whose baggage has `entries` added to (or replacing) the current
   * entries, so that spans and calls made inside carry them to downstream services.
   *
   * @example
   * ```ts
   * return this.tracing.withBaggage({ 'tenant.id': tenant }, () => this.orders.list());
   * ```
   */
  withBaggage<T>(entries: Record<string, string>, fn: () => T): T {
    let baggage = propagation.getActiveBaggage() ?? propagation.createBaggage();
    for (const [key, value] of Object.entries(entries)) baggage = baggage.setEntry(key, { value });
    return context.with(propagation.setBaggage(context.active(), baggage), fn);
  }
}
