import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { nameMatches } from './test-spans.js';

/** Thrown by the span assertions; test runners print its message. */
export class SpanAssertionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SpanAssertionError';
  }
}

/**
 * Checks that an assertion was handed a span: a lookup that found nothing
 * (`spans.byName('x')[0]`) gives `undefined`, which would otherwise fail as a bare TypeError.
 */
function requireSpan(
  value: unknown,
  assertion: string,
  what: string,
): asserts value is ReadableSpan {
  if (
    value === null ||
    typeof value !== 'object' ||
    typeof (value as { spanContext?: unknown }).spanContext !== 'function'
  ) {
    throw new SpanAssertionError(
      `${assertion}: ${what} is ${value === null || typeof value !== 'object' ? String(value) : 'an object'}, not a span (did a lookup find none?)`,
    );
  }
}

/** A kind by its name (`SERVER`), as `printTree` shows it. */
function kindName(kind: SpanKind): string {
  return SpanKind[kind] ?? String(kind);
}

function label(span: ReadableSpan): string {
  const ctx = span.spanContext();
  return `'${span.name}' (trace ${ctx.traceId}, span ${ctx.spanId})`;
}

/** Asserts that `child`'s parent is `parent` (same trace, parent span id). */
export function expectChildOf(child: ReadableSpan, parent: ReadableSpan): void {
  requireSpan(child, 'expectChildOf', 'the child');
  requireSpan(parent, 'expectChildOf', 'the parent');
  const p = parent.spanContext();
  const actual = child.parentSpanContext;
  if (actual?.spanId !== p.spanId || child.spanContext().traceId !== p.traceId) {
    throw new SpanAssertionError(
      `Expected ${label(child)} to be a child of ${label(parent)}, but its parent is ` +
        (actual ? `span ${actual.spanId} of trace ${actual.traceId}` : 'none (it is a root)'),
    );
  }
}

/** Asserts that a span has a parent span id equal to `spanId` (e.g. a caller's remote span). */
export function expectParentId(span: ReadableSpan, spanId: string): void {
  requireSpan(span, 'expectParentId', 'the span');
  const actual = span.parentSpanContext?.spanId;
  if (actual !== spanId) {
    throw new SpanAssertionError(
      `Expected ${label(span)} to have parent ${spanId}, got ${actual ?? 'none'}`,
    );
  }
}

/** Asserts that every span belongs to one trace; returns its id. */
export function expectSameTrace(spans: ReadableSpan[]): string {
  if (!Array.isArray(spans)) {
    throw new SpanAssertionError(
      `expectSameTrace: expected an array of spans, got ${String(spans)}`,
    );
  }
  if (spans.length === 0) throw new SpanAssertionError('Expected spans of one trace, got no spans');
  spans.forEach((span, i) => requireSpan(span, 'expectSameTrace', `spans[${i}]`));
  const ids = new Set(spans.map((s) => s.spanContext().traceId));
  if (ids.size !== 1) {
    throw new SpanAssertionError(
      `Expected one trace, found ${ids.size}: ${spans.map((s) => `${s.name}=${s.spanContext().traceId}`).join(', ')}`,
    );
  }
  return [...ids][0] as string;
}

/** Asserts that a span has no parent. */
export function expectRoot(span: ReadableSpan): void {
  requireSpan(span, 'expectRoot', 'the span');
  if (span.parentSpanContext !== undefined) {
    throw new SpanAssertionError(
      `Expected ${label(span)} to be a root span, but its parent is ${span.parentSpanContext.spanId}`,
    );
  }
}

/** Asserts the span's kind. */
export function expectKind(span: ReadableSpan, kind: SpanKind): void {
  requireSpan(span, 'expectKind', 'the span');
  if (span.kind !== kind) {
    throw new SpanAssertionError(
      `Expected ${label(span)} to be of kind ${kindName(kind)}, got ${kindName(span.kind)}`,
    );
  }
}

/** Asserts that the span ended with status ERROR (and, if given, that message). */
export function expectError(span: ReadableSpan, message?: string | RegExp): void {
  requireSpan(span, 'expectError', 'the span');
  if (span.status.code !== SpanStatusCode.ERROR) {
    throw new SpanAssertionError(
      `Expected ${label(span)} to have status ERROR, got ${SpanStatusCode[span.status.code]}`,
    );
  }
  if (message !== undefined) {
    const actual = span.status.message ?? '';
    const ok = nameMatches(actual, message);
    if (!ok)
      throw new SpanAssertionError(
        `Expected ${label(span)} status message ${String(message)}, got '${actual}'`,
      );
  }
}
