import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { TRACING_SDK, TRACING_SPAN_EXPORTER } from '../tracing.constants.js';

/** Whether a span name matches; resets `lastIndex` so a global-flag RegExp works every time. */
export function nameMatches(name: string, pattern: string | RegExp): boolean {
  if (typeof pattern === 'string') return name === pattern;
  pattern.lastIndex = 0;
  return pattern.test(name);
}

/** Whether the app's TracingModule was started with tracing turned off. */
function tracingIsOff(app: ProviderLookup): boolean {
  try {
    return (
      (app.get(TRACING_SDK, { strict: false }) as { enabled?: unknown } | undefined)?.enabled ===
      false
    );
  } catch {
    return false; // no TracingModule at all
  }
}

/** A span with its children, as `TestSpans#tree()` builds them. */
export interface SpanNode {
  span: ReadableSpan;
  children: SpanNode[];
}

/** Anything `TestSpans.from()` can read the exporter from: an app or a testing module. */
export interface ProviderLookup {
  get(token: unknown, options?: { strict?: boolean }): unknown;
}

/**
 * The finished spans of a test, read from the in-memory exporter that
 * `TracingTestingModule` (or `exporter: 'memory'`) installs, with the lookups
 * tracing tests need: by name, by trace, as a tree.
 *
 * @example
 * ```ts
 * const spans = moduleRef.get(TestSpans);
 * await request(app.getHttpServer()).get('/orders/1');
 * const server = await spans.waitForOne('GET /orders/:id');
 * expectChildOf(spans.one('OrdersService.find'), server);
 * ```
 */
export class TestSpans {
  constructor(readonly exporter: InMemorySpanExporter) {}

  /** Finds the in-memory exporter of a Nest app or testing module. */
  static from(app: ProviderLookup): TestSpans {
    let exporters: unknown;
    try {
      exporters = app.get(TRACING_SPAN_EXPORTER, { strict: false });
    } catch (error) {
      // Nest's UnknownElementException; anything else (a closed app, say) is said as it is.
      if (
        (error as { constructor?: { name?: unknown } })?.constructor?.name !==
        'UnknownElementException'
      ) {
        throw error;
      }
      throw new Error(
        "nestjs-tracing: this application has no TracingModule. Import TracingTestingModule.forRoot(), or TracingModule.forRoot() with exporter: 'memory' and spanProcessor: 'simple'.",
      );
    }
    const memory = (Array.isArray(exporters) ? exporters : [exporters]).find(
      (e): e is InMemorySpanExporter => e instanceof InMemorySpanExporter,
    );
    if (memory === undefined) {
      if (tracingIsOff(app)) {
        throw new Error(
          "nestjs-tracing: tracing is off in this application (enabled: false, or OTEL_SDK_DISABLED=true and no enabled option), so it records no spans. Set enabled: true beside exporter: 'memory' in the options you test with (the option wins over the variable), or import TracingTestingModule.forRoot().",
        );
      }
      throw new Error(
        "nestjs-tracing: this application exports no spans to memory. Import TracingTestingModule.forRoot(), or set exporter: 'memory' with spanProcessor: 'simple'.",
      );
    }
    return new TestSpans(memory);
  }

  /** Every finished span, in the order they ended. */
  all(): ReadableSpan[] {
    return this.exporter.getFinishedSpans();
  }

  /** Finished spans with this name (or whose name matches the RegExp). */
  byName(name: string | RegExp): ReadableSpan[] {
    return this.all().filter((s) => nameMatches(s.name, name));
  }

  /** The one finished span with this name; throws if there are none or several. */
  one(name: string | RegExp): ReadableSpan {
    const found = this.byName(name);
    if (found.length !== 1) {
      throw new Error(
        `Expected exactly one span named ${String(name)}, found ${found.length}. Finished spans: ${this.names().join(', ') || '(none)'}`,
      );
    }
    return found[0] as ReadableSpan;
  }

  /** Finished spans of one kind. */
  byKind(kind: SpanKind): ReadableSpan[] {
    return this.all().filter((s) => s.kind === kind);
  }

  /** Names of all finished spans, for messages. */
  names(): string[] {
    return this.all().map((s) => s.name);
  }

  /** The finished spans of one trace. */
  trace(traceId: string): ReadableSpan[] {
    return this.all().filter((s) => s.spanContext().traceId === traceId);
  }

  /** Distinct trace ids among the finished spans. */
  traceIds(): string[] {
    return [...new Set(this.all().map((s) => s.spanContext().traceId))];
  }

  /**
   * The spans of a trace as trees: roots are spans whose parent is not among the
   * finished spans (a remote parent, or none). Children are ordered by start time.
   */
  tree(traceId?: string): SpanNode[] {
    const spans = traceId === undefined ? this.all() : this.trace(traceId);
    const nodes = new Map<string, SpanNode>();
    for (const span of spans) nodes.set(span.spanContext().spanId, { span, children: [] });
    const roots: SpanNode[] = [];
    for (const node of nodes.values()) {
      const parentId = node.span.parentSpanContext?.spanId;
      const parent = parentId === undefined ? undefined : nodes.get(parentId);
      if (parent !== undefined) parent.children.push(node);
      else roots.push(node);
    }
    const byStart = (a: SpanNode, b: SpanNode) => compareTime(a.span.startTime, b.span.startTime);
    const sort = (list: SpanNode[]) => {
      list.sort(byStart);
      list.forEach((n) => sort(n.children));
    };
    sort(roots);
    return roots;
  }

  /** The tree as indented text (`name [KIND]`), handy in snapshots and failure messages. */
  printTree(traceId?: string): string {
    const lines: string[] = [];
    const walk = (node: SpanNode, depth: number) => {
      const s = node.span;
      const error = s.status.code === SpanStatusCode.ERROR ? ' !error' : '';
      lines.push(`${'  '.repeat(depth)}${s.name} [${SpanKind[s.kind]}]${error}`);
      node.children.forEach((c) => walk(c, depth + 1));
    };
    this.tree(traceId).forEach((root) => walk(root, 0));
    return lines.join('\n');
  }

  /** Forgets every finished span: call it in `beforeEach`. */
  reset(): void {
    this.exporter.reset();
  }

  /**
   * Waits until `predicate` holds for the finished spans (HTTP server spans end
   * when the response has been flushed, which can be just after the client has
   * read it). Rejects with the span names after `timeoutMs`.
   */
  async waitFor(
    predicate: (spans: ReadableSpan[]) => boolean,
    timeoutMs = 2000,
  ): Promise<ReadableSpan[]> {
    return this.waitUntil(predicate, timeoutMs, 'spans');
  }

  private async waitUntil(
    predicate: (spans: ReadableSpan[]) => boolean,
    timeoutMs: number,
    what: string,
  ): Promise<ReadableSpan[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const spans = this.all();
      if (predicate(spans)) return spans;
      if (Date.now() > deadline) {
        throw new Error(
          `Timed out after ${timeoutMs} ms waiting for ${what}. Finished spans: ${this.names().join(', ') || '(none)'}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  /** Waits for the one span with this name and returns it. */
  async waitForOne(name: string | RegExp, timeoutMs = 2000): Promise<ReadableSpan> {
    await this.waitUntil(
      (spans) => spans.some((s) => nameMatches(s.name, name)),
      timeoutMs,
      `a span named ${typeof name === 'string' ? `'${name}'` : String(name)}`,
    );
    return this.one(name);
  }
}

function compareTime(a: [number, number], b: [number, number]): number {
  return a[0] - b[0] || a[1] - b[1];
}
