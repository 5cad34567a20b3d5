import { afterAll, afterEach, beforeAll, beforeEach, expect } from '@jest/globals';
import {
  context,
  diag,
  DiagLogLevel,
  propagation,
  trace,
  type Span,
  type TextMapPropagator,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
  type ReadableSpan,
  type Sampler,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { performance } from 'node:perf_hooks';

/** Spans started but not yet ended: every test must leave none behind. */
export class OpenSpans implements SpanProcessor {
  readonly open = new Set<object>();
  onStart(span: object): void {
    this.open.add(span);
  }
  onEnd(span: ReadableSpan): void {
    this.open.delete(span);
  }
  forceFlush(): Promise<void> {
    return Promise.resolve();
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

export interface OtelHarnessOptions {
  /** Installed as the global propagator for the file (none by default). */
  propagator?: TextMapPropagator;
  /** The provider's sampler (the SDK default when left out). */
  sampler?: Sampler;
}

export interface OtelHarness {
  /** Every ended span; reset before each test. */
  readonly exporter: InMemorySpanExporter;
  /** Spans started and not yet ended; must be empty after each test. */
  readonly openSpans: OpenSpans;
  /** Warnings and errors reported through diag; must be empty after each test. */
  readonly diagnostics: string[];
  /** The global tracer provider the harness installed (available from `beforeAll` on). */
  provider(): BasicTracerProvider;
}

/**
 * Installs a global OpenTelemetry SDK for the spec file that calls it (at top level): an
 * in-memory exporter, a tracker of open spans, the AsyncLocalStorage context manager and a diag
 * logger that keeps warnings. Registers the jest hooks itself: after every test, no span may be
 * left open, no diag warning may have been reported (the SDK reports a second `end()` of a span
 * that way) and no two exported spans may share an id.
 */
export function useOtelHarness(options: OtelHarnessOptions = {}): OtelHarness {
  const exporter = new InMemorySpanExporter();
  const openSpans = new OpenSpans();
  // The SDK reports a second end() of a span through diag, so any diag warning fails the test.
  const diagnostics: string[] = [];
  let provider: BasicTracerProvider | undefined;

  beforeAll(() => {
    provider = new BasicTracerProvider({
      ...(options.sampler ? { sampler: options.sampler } : {}),
      spanProcessors: [new SimpleSpanProcessor(exporter), openSpans],
    });
    const cm = new AsyncLocalStorageContextManager().enable();
    context.setGlobalContextManager(cm);
    trace.setGlobalTracerProvider(provider);
    if (options.propagator) propagation.setGlobalPropagator(options.propagator);
    const keep = (message: string): void => void diagnostics.push(message);
    diag.setLogger(
      { error: keep, warn: keep, info: () => {}, debug: () => {}, verbose: () => {} },
      DiagLogLevel.WARN,
    );
  });

  afterAll(() => {
    trace.disable();
    context.disable();
    propagation.disable();
    diag.disable();
  });

  beforeEach(() => {
    exporter.reset();
    diagnostics.length = 0;
  });

  afterEach(() => {
    expect(openSpans.open.size).toBe(0);
    expect(diagnostics).toEqual([]);
    const ids = exporter.getFinishedSpans().map((s) => s.spanContext().spanId);
    expect(new Set(ids).size).toBe(ids.length);
  });

  return {
    exporter,
    openSpans,
    diagnostics,
    provider: () => {
      if (!provider) throw new Error('useOtelHarness: the provider exists only from beforeAll on');
      return provider;
    },
  };
}

/**
 * A lazy thenable, as a Prisma `PrismaPromise`, a Mongoose `Query` or a Knex builder is (`then` on
 * the prototype): nothing runs until `then` is called, and every `then` runs the query again.
 */
export class LazyQuery<T> implements PromiseLike<T> {
  readonly [Symbol.toStringTag] = 'PrismaPromise';
  // Private fields, so that a frozen query still counts.
  #executions = 0;
  #activeAtExecution: Span | undefined;
  #isLean = false;

  constructor(
    private readonly outcome: { value?: T; error?: unknown },
    private readonly delayMs = 0,
  ) {}

  get executions(): number {
    return this.#executions;
  }

  get activeAtExecution(): Span | undefined {
    return this.#activeAtExecution;
  }

  get isLean(): boolean {
    return this.#isLean;
  }

  lean(): this {
    this.#isLean = true;
    return this;
  }

  then<R1 = T, R2 = never>(
    onFulfilled?: ((value: T) => R1 | PromiseLike<R1>) | null,
    onRejected?: ((reason: unknown) => R2 | PromiseLike<R2>) | null,
  ): Promise<R1 | R2> {
    this.#executions++;
    this.#activeAtExecution = trace.getActiveSpan();
    this.onExecute();
    const start = performance.now();
    return new Promise<T>((resolve, reject) => {
      // Timers may fire a little early on the loop clock: wait for the full delay by this one.
      const settle = (): void => {
        if (performance.now() - start < this.delayMs) return void setTimeout(settle, 1);
        // A query may reject with anything; the tests check it comes back unchanged.
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
        if ('error' in this.outcome) reject(this.outcome.error);
        else resolve(this.outcome.value as T);
      };
      setTimeout(settle, this.delayMs);
    }).then(onFulfilled, onRejected);
  }

  /** Runs at every execution, inside the caller's context; a subclass may do work there. */
  protected onExecute(): void {}
}

/**
 * Checks that a traced call handed back `query` itself, untouched (its prototype, tag and methods
 * as they were), and that it has not run, not even after a turn of the event loop.
 */
export async function expectUnrunLazyQuery<T>(
  returned: LazyQuery<T>,
  query: LazyQuery<T>,
  prototype: object,
): Promise<void> {
  expect(returned).toBe(query);
  expect(Object.getPrototypeOf(returned)).toBe(prototype);
  expect(Object.prototype.toString.call(returned)).toBe('[object PrismaPromise]');
  expect(returned.lean()).toBe(query);
  expect(query.isLean).toBe(true);
  await new Promise((resolve) => setImmediate(resolve));
  expect(query.executions).toBe(0);
}
