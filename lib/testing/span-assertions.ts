import { SpanStatusCode, type SpanKind } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { nameMatches } from './test-spans.js';

/** Thrown by the span assertions; test runners print its message. */
export class SpanAssertionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SpanAssertionError';
  }
}

function label(span: ReadableSpan): string {
  const ctx = span.spanContext();
  return `'${span.name}' (trace ${ctx.traceId}, span ${ctx.spanId})`;
}

/** Asserts that `child`'s parent is `parent` (same trace, parent span id). */
export function expectChildOf(child: ReadableSpan, parent: ReadableSpan): void {
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
  const actual = span.parentSpanContext?.spanId;
  if (actual !== spanId) {
    throw new SpanAssertionError(
      `Expected ${label(span)} to have parent ${spanId}, got ${actual ?? 'none'}`,
    );
  }
}

/** Asserts that every span belongs to one trace; returns its id. */
export function expectSameTrace(spans: ReadableSpan[]): string {
  if (spans.length === 0) throw new SpanAssertionError('Expected spans of one trace, got no spans');
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
  if (span.parentSpanContext !== undefined) {
    throw new SpanAssertionError(
      `Expected ${label(span)} to be a root span, but its parent is ${span.parentSpanContext.spanId}`,
    );
  }
}

/** Asserts the span's kind. */
export function expectKind(span: ReadableSpan, kind: SpanKind): void {
  if (span.kind !== kind) {
    throw new SpanAssertionError(`Expected ${label(span)} to be of kind ${kind}, got ${span.kind}`);
  }
}

/** Asserts that the span ended with status ERROR (and, if given, that message). */
export function expectError(span: ReadableSpan, message?: string | RegExp): void {
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
