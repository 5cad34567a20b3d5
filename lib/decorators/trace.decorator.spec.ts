import 'reflect-metadata';
import { Controller, Get, Injectable, RequestMethod, SetMetadata } from '@nestjs/common';
import { METHOD_METADATA, PATH_METADATA } from '@nestjs/common/constants.js';
import { Test } from '@nestjs/testing';
import { EventEmitter2, EventEmitterModule, OnEvent } from '@nestjs/event-emitter';
import { EVENT_LISTENER_METADATA } from '@nestjs/event-emitter';
import { MessagePattern } from '@nestjs/microservices';
import { PATTERN_METADATA } from '@nestjs/microservices/constants.js';
import { context, SpanKind, SpanStatusCode, trace, type Span } from '@opentelemetry/api';
import { hrTimeToMilliseconds } from '@opentelemetry/core';
import {
  AlwaysOffSampler,
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
  type ReadableSpan,
} from '@opentelemetry/sdk-trace-base';
import { Readable } from 'node:stream';
import {
  firstValueFrom,
  lastValueFrom,
  Observable,
  of,
  Subject,
  take,
  tap,
  toArray,
  type Subscriber,
} from 'rxjs';
import { isTracedMethod, Trace } from './trace.decorator.js';
import {
  expectUnrunLazyQuery,
  LazyQuery as BaseLazyQuery,
  useOtelHarness,
} from '../../test/support/otel-harness.js';

const { exporter, openSpans, provider } = useOtelHarness();

const spans = (): ReadableSpan[] => exporter.getFinishedSpans();
const named = (name: string): ReadableSpan[] => spans().filter((s) => s.name === name);
const only = (name: string): ReadableSpan => {
  const found = named(name);
  expect(found).toHaveLength(1);
  return found[0]!;
};
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const parentSpan = (): Span | undefined => trace.getActiveSpan();
const tracer = () => trace.getTracer('spec');

/** Runs `fn` inside a span named `name` that is ended afterwards; returns both. */
async function underParent<T>(
  name: string,
  fn: () => T,
): Promise<{ parent: Span; result: Awaited<T> }> {
  return tracer().startActiveSpan(name, async (parent) => {
    try {
      return { parent, result: await fn() };
    } finally {
      parent.end();
    }
  });
}

function expectError(span: ReadableSpan, message: string): void {
  expect(span.status).toEqual({ code: SpanStatusCode.ERROR, message });
  const event = span.events.find((e) => e.name === 'exception');
  expect(event?.attributes?.['exception.message']).toBe(message);
  // error.type is the exception's type, as on the package's HTTP and RPC spans (`_OTHER` for a
  // thrown value with no type of its own).
  expect(span.attributes['error.type']).toBe(event?.attributes?.['exception.type'] ?? '_OTHER');
}

/** The shared `LazyQuery`, whose every execution also starts (and ends) a span of its own. */
class LazyQuery<T> extends BaseLazyQuery<T> {
  protected override onExecute(): void {
    tracer().startSpan('query.inside').end();
  }
}

/** A lazy thenable like a Prisma `PrismaPromise`: a plain object with an own, enumerable `then`. */
function prismaLike<T>(value: T): PromiseLike<T> & { executions: number } {
  const query = {
    executions: 0,
    then<R1 = T, R2 = never>(
      onFulfilled?: ((value: T) => R1 | PromiseLike<R1>) | null,
      onRejected?: ((reason: unknown) => R2 | PromiseLike<R2>) | null,
    ): Promise<R1 | R2> {
      query.executions++;
      return Promise.resolve(value).then(onFulfilled, onRejected);
    },
    [Symbol.toStringTag]: 'PrismaPromise',
  };
  return query;
}

const sym = Symbol('symbolic');

class Shapes {
  factor = 2;
  static staticFactor = 3;

  @Trace()
  syncValue(n: number): number {
    return n * this.factor;
  }

  @Trace()
  syncThrow(err: unknown): never {
    throw err;
  }

  @Trace()
  async resolves(n: number): Promise<number> {
    await tick();
    return n + this.factor;
  }

  @Trace()
  async rejects(err: unknown): Promise<never> {
    await tick();
    throw err;
  }

  @Trace()
  passThrough<T>(value: T): T {
    return value;
  }

  @Trace()
  async *generate(n: number, done?: { finalized: boolean }): AsyncGenerator<number> {
    try {
      for (let i = 0; i < n; i++) {
        await tick();
        tracer().startSpan('generate.step').end();
        yield i;
      }
    } finally {
      if (done) done.finalized = true;
    }
  }

  @Trace()
  async *generateThenThrow(err: unknown): AsyncGenerator<number> {
    yield 1;
    throw err;
  }

  @Trace()
  static staticMethod(): number {
    return this.staticFactor;
  }

  @Trace()
  [sym](): string {
    return 'sym';
  }
}

describe('@Trace() return shapes', () => {
  const shapes = new Shapes();

  it('ends the span at once for a sync value', () => {
    expect(shapes.syncValue(21)).toBe(42);
    const span = only('Shapes.syncValue');
    expect(span.kind).toBe(SpanKind.INTERNAL);
    expect(span.status.code).toBe(SpanStatusCode.UNSET);
    expect(span.instrumentationScope.name).toBe('nestjs-tracing');
  });

  it('records a sync throw and rethrows the same error', () => {
    const err = new Error('sync boom');
    let caught: unknown;
    try {
      shapes.syncThrow(err);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBe(err);
    expectError(only('Shapes.syncThrow'), 'sync boom');
  });

  it('records a thrown non-Error value', () => {
    expect(() => shapes.syncThrow('plain string')).toThrow('plain string');
    expectError(only('Shapes.syncThrow'), 'plain string');
    exporter.reset();
    const odd = { reason: 'no message' };
    expect(() => shapes.syncThrow(odd)).toThrow();
    expectError(only('Shapes.syncThrow'), '[object Object]');
  });

  it('ends the span when a Promise resolves', async () => {
    let resolve!: (n: number) => void;
    const pending = shapes.passThrough(new Promise<number>((r) => (resolve = r)));
    await tick();
    expect(spans()).toHaveLength(0);
    resolve(7);
    await expect(pending).resolves.toBe(7);
    expect(only('Shapes.passThrough').status.code).toBe(SpanStatusCode.UNSET);
    await expect(shapes.resolves(1)).resolves.toBe(3);
    only('Shapes.resolves');
  });

  it('records a rejection and rejects with the same error', async () => {
    const err = new TypeError('async boom');
    await expect(shapes.rejects(err)).rejects.toBe(err);
    expectError(only('Shapes.rejects'), 'async boom');
  });

  it('ends the span when a custom thenable settles, calling then() inside the span', async () => {
    let activeInThen: Span | undefined;
    const thenable: PromiseLike<number> = {
      then(onFulfilled) {
        activeInThen = trace.getActiveSpan();
        setTimeout(() => void onFulfilled?.(42), 1);
        return this as never;
      },
    };
    const result = shapes.passThrough(thenable);
    expect(result).toBe(thenable);
    expect(spans()).toHaveLength(0);
    // `await` calls then() once (jest's `resolves` would await what this then() returns, again).
    expect(await result).toBe(42);
    const span = only('Shapes.passThrough');
    expect(activeInThen?.spanContext().spanId).toBe(span.spanContext().spanId);
  });

  it('records a rejecting thenable, and ends once a thenable that calls back twice', async () => {
    const err = new Error('thenable boom');
    const rejecting = {
      then(_: unknown, onRejected: (e: unknown) => void) {
        onRejected(err);
      },
    };
    await expect(shapes.passThrough(rejecting)).rejects.toBe(err);
    expectError(only('Shapes.passThrough'), 'thenable boom');

    exporter.reset();
    const twice = {
      then(onFulfilled: (v: number) => void, onRejected: (e: unknown) => void) {
        onFulfilled(1);
        onFulfilled(2);
        onRejected(new Error('late'));
      },
    };
    // The thenable's callbacks are the caller's: `await` is what ignores the extra calls.
    await expect(Promise.resolve(shapes.passThrough(twice))).resolves.toBe(1);
    expect(only('Shapes.passThrough').status.code).toBe(SpanStatusCode.UNSET);

    exporter.reset();
    const throwing = {
      then() {
        throw err;
      },
    };
    await expect(Promise.resolve(shapes.passThrough(throwing))).rejects.toBe(err);
    expectError(only('Shapes.passThrough'), 'thenable boom');
  });

  describe('a Promise subclass', () => {
    /** A promise with an API of its own (as got's, or a cancellable one). */
    class CancellablePromise<T> extends Promise<T> {
      cancelled = false;
      cancel(): void {
        this.cancelled = true;
      }
    }

    it('is returned as it is, its API intact, and ends the span when awaited', async () => {
      let resolve!: (n: number) => void;
      const promise = new CancellablePromise<number>((r) => (resolve = r));
      const result = shapes.passThrough(promise);
      expect(result).toBe(promise);
      result.cancel();
      expect(promise.cancelled).toBe(true);
      resolve(5);
      await expect(result).resolves.toBe(5);
      expect(only('Shapes.passThrough').status.code).toBe(SpanStatusCode.UNSET);
    });

    it('is never chained on by the wrapper (a constructor that takes no executor)', async () => {
      let settle!: (n: number) => void;
      class Deferred extends Promise<number> {
        static override get [Symbol.species]() {
          return Promise;
        }
        constructor() {
          let r!: (n: number) => void;
          super((resolve) => (r = resolve));
          settle = r;
        }
      }
      const deferred = new Deferred();
      const result = shapes.passThrough(deferred);
      expect(result).toBe(deferred);
      settle(9);
      await expect(result).resolves.toBe(9);
      only('Shapes.passThrough');
    });
  });

  describe('lazy thenable (not a native Promise)', () => {
    it('returns the same object, unrun, and ends the span once when it is awaited', async () => {
      const query = new LazyQuery({ value: 'rows' }, 20);
      const { parent, result } = await underParent('parent', async () => {
        const returned = shapes.passThrough(query);
        await expectUnrunLazyQuery(returned, query, LazyQuery.prototype);
        expect(named('Shapes.passThrough')).toHaveLength(0);

        const rows = await returned;
        // The caller's context is back after the await.
        expect(trace.getActiveSpan()).toBe(parentSpan());
        return rows;
      });
      expect(result).toBe('rows');
      expect(query.executions).toBe(1);
      const span = only('Shapes.passThrough');
      expect(span.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
      expect(span.status.code).toBe(SpanStatusCode.UNSET);
      expect(hrTimeToMilliseconds(span.duration)).toBeGreaterThanOrEqual(20);
      // The query ran inside the span: what it starts is the span's child.
      expect(query.activeAtExecution?.spanContext().spanId).toBe(span.spanContext().spanId);
      expect(only('query.inside').parentSpanContext?.spanId).toBe(span.spanContext().spanId);

      // Restored: the hook is gone, and awaiting again runs the query again without a new span.
      expect(Object.hasOwn(query, 'then')).toBe(false);
      await expect(query).resolves.toBe('rows');
      expect(query.executions).toBe(2);
      expect(named('Shapes.passThrough')).toHaveLength(1);
    });

    it('runs then() callbacks in the caller context, and passes a missing callback on', async () => {
      const { parent, result } = await underParent('parent', () =>
        shapes
          .passThrough(new LazyQuery({ value: 1 }))
          .then(undefined, () => 0)
          .then((n) => [n, trace.getActiveSpan()] as const),
      );
      expect(result).toEqual([1, parent]);
      only('Shapes.passThrough');
    });

    it('records a rejection and rejects with the same error', async () => {
      const err = new Error('query boom');
      const query = new LazyQuery<string>({ error: err }, 5);
      const returned = shapes.passThrough(query);
      expect(returned).toBe(query);
      expect(query.executions).toBe(0);
      await expect(returned).rejects.toBe(err);
      expect(query.executions).toBe(1);
      const span = only('Shapes.passThrough');
      expectError(span, 'query boom');
      expect(span.events.filter((e) => e.name === 'exception')).toHaveLength(1);

      exporter.reset();
      const plain = new LazyQuery<string>({ error: 'not an Error' });
      await expect(shapes.passThrough(plain)).rejects.toBe('not an Error');
      expectError(only('Shapes.passThrough'), 'not an Error');
    });

    it('never runs, nor exports a span for, a thenable nobody awaits', async () => {
      const query = new LazyQuery({ value: 'rows' });
      shapes.passThrough(query);
      await tick();
      await tick();
      expect(query.executions).toBe(0);
      expect(named('Shapes.passThrough')).toHaveLength(0);
      // Its span stays open (and is dropped with the object): the one span this test leaves open.
      const open = [...openSpans.open] as ReadableSpan[];
      expect(open.map((s) => s.name)).toEqual(['Shapes.passThrough']);
      openSpans.open.clear();
    });

    it('hooks an own then() (a PrismaPromise) and puts it back as it was', async () => {
      const query = prismaLike('row');
      const then = query.then;
      const keys = Object.keys(query);
      const returned = shapes.passThrough(query);
      expect(returned).toBe(query);
      expect(Object.keys(returned)).toEqual(keys);
      expect(Object.prototype.toString.call(returned)).toBe('[object PrismaPromise]');
      expect(query.executions).toBe(0);
      await expect(returned).resolves.toBe('row');
      expect(query.executions).toBe(1);
      expect(query.then).toBe(then);
      expect(Object.getOwnPropertyDescriptor(query, 'then')).toEqual({
        value: then,
        writable: true,
        enumerable: true,
        configurable: true,
      });
      only('Shapes.passThrough');
    });

    it('ends the span at return when then() cannot be hooked', async () => {
      const frozen = Object.freeze(new LazyQuery({ value: 'rows' }));
      expect(shapes.passThrough(frozen)).toBe(frozen);
      expect(frozen.executions).toBe(0);
      only('Shapes.passThrough');
      await expect(frozen).resolves.toBe('rows');
      expect(frozen.executions).toBe(1);
      expect(named('Shapes.passThrough')).toHaveLength(1);

      exporter.reset();
      const fixed = prismaLike('row');
      Object.defineProperty(fixed, 'then', { configurable: false });
      expect(shapes.passThrough(fixed)).toBe(fixed);
      expect(fixed.executions).toBe(0);
      only('Shapes.passThrough');
    });
  });

  describe('Observable', () => {
    it('lets the first subscription continue the call span, a child of the caller', async () => {
      let activeAtSubscribe: Span | undefined;
      const source = new Observable<number>((subscriber) => {
        activeAtSubscribe = trace.getActiveSpan();
        tracer().startSpan('inside.subscribe').end();
        subscriber.next(1);
        subscriber.next(2);
        subscriber.complete();
      });
      const { parent, result } = await underParent('parent', () => shapes.passThrough(source));
      expect(result).not.toBe(source);
      // Nothing has subscribed yet: the span is still open.
      expect(named('Shapes.passThrough')).toHaveLength(0);

      // Subscribed after the parent ended and outside its context: still its child.
      await expect(lastValueFrom(result.pipe(toArray()))).resolves.toEqual([1, 2]);
      const span = only('Shapes.passThrough');
      expect(span.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
      expect(span.spanContext().traceId).toBe(parent.spanContext().traceId);
      expect(activeAtSubscribe?.spanContext().spanId).toBe(span.spanContext().spanId);
      expect(only('inside.subscribe').parentSpanContext?.spanId).toBe(span.spanContext().spanId);
      expect(span.status.code).toBe(SpanStatusCode.UNSET);
    });

    it("hands values, errors and completion on in the subscriber's context, not the span's", async () => {
      const seen: Record<string, string | undefined> = {};
      const activeId = () => trace.getActiveSpan()?.spanContext().spanId;
      const later = (emit: (s: Subscriber<number>) => void) =>
        new Observable<number>((s) => {
          const timer = setTimeout(() => emit(s), 1);
          return () => clearTimeout(timer);
        });
      const downstream = tracer().startSpan('downstream');
      await context.with(trace.setSpan(context.active(), downstream), async () => {
        await lastValueFrom(
          shapes
            .passThrough(
              later((s) => {
                s.next(1);
                s.complete();
              }),
            )
            .pipe(
              tap({
                next: () => (seen.next = activeId()),
                complete: () => (seen.complete = activeId()),
              }),
            ),
        );
        await expect(
          lastValueFrom(
            shapes
              .passThrough(later((s) => s.error(new Error('later boom'))))
              .pipe(tap({ error: () => (seen.error = activeId()) })),
          ),
        ).rejects.toThrow('later boom');
        // Synchronous emissions too.
        await lastValueFrom(shapes.passThrough(of(1)).pipe(tap(() => (seen.sync = activeId()))));
      });
      downstream.end();
      const id = downstream.spanContext().spanId;
      expect(seen).toEqual({ next: id, complete: id, error: id, sync: id });
      expect(named('Shapes.passThrough')).toHaveLength(3);
    });

    it('records an error on the subscription span and delivers the same error', async () => {
      const err = new Error('stream boom');
      const result = shapes.passThrough(new Observable<never>((s) => s.error(err)));
      await expect(firstValueFrom(result)).rejects.toBe(err);
      expectError(only('Shapes.passThrough'), 'stream boom');
    });

    it('ends the subscription span on unsubscribe, without error', () => {
      let tornDown = false;
      const result = shapes.passThrough(
        new Observable<number>(() => () => {
          tornDown = true;
        }),
      );
      const subscription = result.subscribe();
      expect(named('Shapes.passThrough')).toHaveLength(0);
      subscription.unsubscribe();
      expect(tornDown).toBe(true);
      const span = only('Shapes.passThrough');
      expect(span.status.code).toBe(SpanStatusCode.UNSET);
      expect(span.events).toEqual([]);
    });

    it('gives two subscriptions two spans, both children of the caller', async () => {
      const { parent, result } = await underParent('parent', () => shapes.passThrough(of('a')));
      await firstValueFrom(result);
      await firstValueFrom(result);
      const spans = named('Shapes.passThrough');
      expect(spans).toHaveLength(2);
      for (const span of spans) {
        expect(span.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
      }
    });

    it('never exports the span of an Observable nobody subscribes to', () => {
      shapes.passThrough(of('a'));
      expect(named('Shapes.passThrough')).toHaveLength(0);
      const open = [...openSpans.open] as ReadableSpan[];
      expect(open.map((s) => s.name)).toEqual(['Shapes.passThrough']);
      // Left open on purpose: let the harness's no-open-span check see the other tests.
      openSpans.open.clear();
    });

    it('stops an endless synchronous source when the subscriber unsubscribes early', async () => {
      const endless = new Observable<number>((subscriber) => {
        for (let i = 0; !subscriber.closed; i++) subscriber.next(i);
      });
      await expect(
        lastValueFrom(shapes.passThrough(endless).pipe(take(3), toArray())),
      ).resolves.toEqual([0, 1, 2]);
      expect(named('Shapes.passThrough')).toHaveLength(1);
    });

    it('returns a Subject untouched and ends the span at return', () => {
      const subject = new Subject<number>();
      expect(shapes.passThrough(subject)).toBe(subject);
      only('Shapes.passThrough');
    });
  });

  describe('async iterables', () => {
    it('keeps the span open until iteration is done, each step inside it', async () => {
      const iterator = shapes.generate(3);
      await expect(iterator.next()).resolves.toEqual({ done: false, value: 0 });
      expect(named('Shapes.generate')).toHaveLength(0);
      const rest: number[] = [];
      for await (const value of iterator) rest.push(value);
      expect(rest).toEqual([1, 2]);
      const span = only('Shapes.generate');
      const steps = named('generate.step');
      expect(steps).toHaveLength(3);
      for (const step of steps) {
        expect(step.parentSpanContext?.spanId).toBe(span.spanContext().spanId);
      }
    });

    it('ends the span when the loop breaks early, and the generator finalizes', async () => {
      const done = { finalized: false };
      for await (const value of shapes.generate(10, done)) {
        if (value === 1) break;
      }
      expect(done.finalized).toBe(true);
      const span = only('Shapes.generate');
      expect(span.status.code).toBe(SpanStatusCode.UNSET);
      expect(named('generate.step')).toHaveLength(2);
    });

    it('records an error thrown by the generator and rethrows the same error', async () => {
      const err = new RangeError('generator boom');
      const seen: number[] = [];
      await expect(
        (async () => {
          for await (const value of shapes.generateThenThrow(err)) seen.push(value);
        })(),
      ).rejects.toBe(err);
      expect(seen).toEqual([1]);
      expectError(only('Shapes.generateThenThrow'), 'generator boom');
    });

    it('records an error the consumer throws into the generator', async () => {
      const err = new Error('consumer boom');
      const iterator = shapes.generate(5);
      await iterator.next();
      await expect(iterator.throw(err)).rejects.toBe(err);
      expectError(only('Shapes.generate'), 'consumer boom');
    });

    it('ends once when return() is called before any next()', async () => {
      const done = { finalized: false };
      const iterator = shapes.generate(5, done);
      await expect(iterator.return(undefined)).resolves.toEqual({ done: true, value: undefined });
      await expect(iterator.next()).resolves.toEqual({ done: true, value: undefined });
      only('Shapes.generate');
    });

    it('wraps a plain async iterable object', async () => {
      const iterable = {
        async *[Symbol.asyncIterator]() {
          yield 'x';
          yield 'y';
        },
      };
      const result = shapes.passThrough(iterable);
      expect(result).not.toBe(iterable);
      expect(spans()).toHaveLength(0);
      const values: string[] = [];
      for await (const value of result) values.push(value);
      expect(values).toEqual(['x', 'y']);
      only('Shapes.passThrough');
    });

    it('returns an async iterable object with an API of its own as it is', async () => {
      const page = {
        total: 2,
        async *[Symbol.asyncIterator]() {
          yield 'x';
          yield 'y';
        },
      };
      const result = shapes.passThrough(page);
      expect(result).toBe(page);
      expect(result.total).toBe(2);
      only('Shapes.passThrough');
      const values: string[] = [];
      for await (const value of result) values.push(value);
      expect(values).toEqual(['x', 'y']);
    });

    it('returns other async iterables (streams) as they are, ending the span at return', async () => {
      const stream = Readable.from(['a']);
      expect(shapes.passThrough(stream)).toBe(stream);
      only('Shapes.passThrough');
      for await (const chunk of stream) expect(chunk).toBe('a');
    });

    it('wraps a traced generator returned by another traced method', async () => {
      class Outer {
        constructor(private readonly inner: Shapes) {}
        @Trace()
        values(): AsyncGenerator<number> {
          return this.inner.generate(2);
        }
      }
      const values: number[] = [];
      for await (const value of new Outer(shapes).values()) values.push(value);
      expect(values).toEqual([0, 1]);
      const outer = only('Outer.values');
      expect(only('Shapes.generate').parentSpanContext?.spanId).toBe(outer.spanContext().spanId);
    });
  });
});

describe('@Trace() names and options', () => {
  class Named {
    @Trace('custom.name')
    custom(): void {}

    @Trace({ name: 'from.options', kind: SpanKind.CLIENT })
    fromOptions(): void {}

    @Trace('with.options', { kind: SpanKind.PRODUCER, attributes: { 'static.attr': 'yes', n: 1 } })
    withOptions(): void {}

    @Trace({
      attributesFrom: ([id, flag]) => ({ 'user.id': id as string, 'user.flag': flag as boolean }),
    })
    fromArgs(id: string, flag: boolean): string {
      return `${id}:${String(flag)}`;
    }

    @Trace({
      attributesFrom: () => {
        throw new Error('attribute bug');
      },
    })
    brokenAttributes(): string {
      return 'still runs';
    }
  }
  const named_ = new Named();

  it('defaults to ClassName.methodName, for static and symbol methods too', () => {
    expect(Shapes.staticMethod()).toBe(3);
    only('Shapes.staticMethod');
    expect(new Shapes()[sym]()).toBe('sym');
    only('Shapes.[symbolic]');
  });

  it('takes a name as first argument or inside the options', () => {
    named_.custom();
    named_.fromOptions();
    only('custom.name');
    expect(only('from.options').kind).toBe(SpanKind.CLIENT);
  });

  it('sets kind and static attributes', () => {
    named_.withOptions();
    const span = only('with.options');
    expect(span.kind).toBe(SpanKind.PRODUCER);
    expect(span.attributes).toEqual({ 'static.attr': 'yes', n: 1 });
  });

  it('evaluates attributesFrom on every call', () => {
    expect(named_.fromArgs('u1', true)).toBe('u1:true');
    named_.fromArgs('u2', false);
    expect(named('Named.fromArgs').map((s) => s.attributes)).toEqual([
      { 'user.id': 'u1', 'user.flag': true },
      { 'user.id': 'u2', 'user.flag': false },
    ]);
  });

  it('runs the call when attributesFrom throws, and records nothing of it', () => {
    expect(named_.brokenAttributes()).toBe('still runs');
    const span = only('Named.brokenAttributes');
    expect(span.events).toEqual([]);
    expect(span.status.code).toBe(SpanStatusCode.UNSET);
  });

  it('keeps name and length of the original, and this', () => {
    expect(Shapes.prototype.syncValue.name).toBe('syncValue');
    expect(Shapes.prototype.syncValue.length).toBe(1);
    expect(Shapes.prototype.generate.length).toBe(2);
    expect(Named.prototype.fromArgs.name).toBe('fromArgs');
    expect(Named.prototype.fromArgs.length).toBe(2);
    expect(Shapes.staticMethod.name).toBe('staticMethod');
    expect(isTracedMethod(Shapes.prototype.syncValue)).toBe(true);
  });

  it('refuses accessors with a clear error', () => {
    class WithGetter {
      get value(): number {
        return 1;
      }
    }
    const descriptor = Object.getOwnPropertyDescriptor(WithGetter.prototype, 'value')!;
    expect(() => Trace()(WithGetter.prototype, 'value', descriptor)).toThrow(
      /can only decorate methods, and WithGetter.value is not one/,
    );
  });
});

describe('@Trace() context', () => {
  class Calls {
    @Trace()
    async outer(): Promise<number> {
      await tick();
      return this.inner();
    }

    @Trace()
    async inner(): Promise<number> {
      await tick();
      return 1;
    }

    @Trace({ root: true })
    async detached(): Promise<string> {
      await tick();
      return 'detached';
    }
  }
  const calls = new Calls();

  it('makes a traced method called by another a child of it', async () => {
    const { parent } = await underParent('request', () => calls.outer());
    const outer = only('Calls.outer');
    const inner = only('Calls.inner');
    expect(outer.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
    expect(inner.parentSpanContext?.spanId).toBe(outer.spanContext().spanId);
    expect(inner.spanContext().traceId).toBe(parent.spanContext().traceId);
  });

  it('starts a new trace with root: true', async () => {
    const { parent } = await underParent('request', () => calls.detached());
    const span = only('Calls.detached');
    expect(span.parentSpanContext).toBeUndefined();
    expect(span.spanContext().traceId).not.toBe(parent.spanContext().traceId);
  });

  it('gets the tracer at call time, not at decoration time', async () => {
    const other = new InMemorySpanExporter();
    const otherProvider = new BasicTracerProvider({
      spanProcessors: [new SimpleSpanProcessor(other)],
    });
    trace.disable();
    trace.setGlobalTracerProvider(otherProvider);
    try {
      await calls.inner();
      expect(other.getFinishedSpans().map((s) => s.name)).toEqual(['Calls.inner']);
      expect(spans()).toHaveLength(0);
    } finally {
      trace.disable();
      trace.setGlobalTracerProvider(provider());
    }
    await calls.inner();
    only('Calls.inner');
  });

  it('does no span work when the span is not recording, and returns results untouched', async () => {
    let evaluated = 0;
    const attributesFrom = () => ({ a: ++evaluated });
    class Sampled {
      @Trace({ attributesFrom })
      run<T>(value: T): T {
        return value;
      }
    }
    const offProvider = new BasicTracerProvider({
      sampler: new AlwaysOffSampler(),
      spanProcessors: [new SimpleSpanProcessor(exporter)],
    });
    trace.disable();
    trace.setGlobalTracerProvider(offProvider);
    try {
      const promise = Promise.resolve(1);
      const source = of(1);
      expect(new Sampled().run(promise)).toBe(promise);
      expect(new Sampled().run(source)).toBe(source);
      await promise;
      expect(evaluated).toBe(0);
      expect(spans()).toHaveLength(0);
    } finally {
      trace.disable();
      trace.setGlobalTracerProvider(provider());
    }
  });

  it('keeps 1,000 interleaved async calls in their own traces', async () => {
    const wait = async (): Promise<void> => {
      const hops = Math.floor(Math.random() * 4);
      for (let i = 0; i < hops; i++) await Promise.resolve();
      if (Math.random() < 0.5) await new Promise((r) => setTimeout(r, Math.random() * 3));
    };
    class Worker {
      @Trace({ attributesFrom: ([i]) => ({ i: i as number }) })
      async work(i: number): Promise<number> {
        await wait();
        await this.step(i);
        await wait();
        return i;
      }

      @Trace({ attributesFrom: ([i]) => ({ i: i as number }) })
      async step(i: number): Promise<number> {
        await wait();
        return i;
      }
    }
    const worker = new Worker();
    const count = 1000;
    const parents = new Map<number, Span>();
    const results = await Promise.all(
      Array.from({ length: count }, (_, i) =>
        tracer().startActiveSpan(`parent-${i}`, async (parent) => {
          parents.set(i, parent);
          await wait();
          try {
            return await worker.work(i);
          } finally {
            parent.end();
          }
        }),
      ),
    );
    expect(results).toEqual(Array.from({ length: count }, (_, i) => i));
    expect(spans()).toHaveLength(count * 3);
    const works = named('Worker.work');
    const steps = new Map(named('Worker.step').map((s) => [s.attributes['i'], s]));
    expect(works).toHaveLength(count);
    expect(steps.size).toBe(count);
    for (const work of works) {
      const i = work.attributes['i'] as number;
      const parent = parents.get(i)!.spanContext();
      expect(work.parentSpanContext?.spanId).toBe(parent.spanId);
      expect(work.spanContext().traceId).toBe(parent.traceId);
      const step = steps.get(i)!;
      expect(step.parentSpanContext?.spanId).toBe(work.spanContext().spanId);
      expect(step.spanContext().traceId).toBe(parent.traceId);
    }
  });
});

/** Built the way @nestjs/swagger's method decorators are: metadata on descriptor.value. */
function ApiOperation(options: { summary: string }): MethodDecorator {
  return (_target, _key, descriptor) => {
    Reflect.defineMetadata('swagger/apiOperation', options, descriptor.value as object);
    return descriptor;
  };
}

describe('@Trace() with other decorators', () => {
  class Stacked {
    @Trace()
    @ApiOperation({ summary: 'above' })
    docAbove(): void {}

    @ApiOperation({ summary: 'below' })
    @Trace()
    docBelow(): void {}

    @Trace()
    @Get('above')
    getAbove(): string {
      return 'above';
    }

    @Get('below')
    @Trace()
    getBelow(): string {
      return 'below';
    }

    @Trace()
    @SetMetadata('role', 'admin')
    setAbove(): void {}

    @SetMetadata('role', 'admin')
    @Trace()
    setBelow(): void {}

    @Trace()
    @MessagePattern('p.above')
    patternAbove(): void {}

    @MessagePattern('p.below')
    @Trace()
    patternBelow(): void {}

    @Trace()
    @OnEvent('e.above')
    eventAbove(): void {}

    @OnEvent('e.below')
    @Trace()
    eventBelow(): void {}
  }
  const proto = Stacked.prototype;

  it.each([
    ['above', proto.getAbove],
    ['below', proto.getBelow],
  ])('keeps @Get metadata with @Trace %s it', (path, method) => {
    expect(isTracedMethod(method)).toBe(true);
    expect(Reflect.getMetadata(PATH_METADATA, method)).toBe(path);
    expect(Reflect.getMetadata(METHOD_METADATA, method)).toBe(RequestMethod.GET);
  });

  it.each([
    ['above', proto.docAbove],
    ['below', proto.docBelow],
  ])('keeps Swagger-style @ApiOperation metadata with @Trace %s it', (summary, method) => {
    expect(isTracedMethod(method)).toBe(true);
    expect(Reflect.getMetadata('swagger/apiOperation', method)).toEqual({ summary });
  });

  it.each([
    ['above', proto.setAbove],
    ['below', proto.setBelow],
  ])('keeps @SetMetadata metadata with @Trace %s it', (_, method) => {
    expect(isTracedMethod(method)).toBe(true);
    expect(Reflect.getMetadata('role', method)).toBe('admin');
  });

  it.each([
    ['above', proto.patternAbove],
    ['below', proto.patternBelow],
  ])('keeps @MessagePattern metadata with @Trace %s it', (where, method) => {
    expect(isTracedMethod(method)).toBe(true);
    expect(Reflect.getMetadata(PATTERN_METADATA, method)).toEqual([`p.${where}`]);
  });

  it.each([
    ['above', proto.eventAbove],
    ['below', proto.eventBelow],
  ])('keeps @OnEvent metadata with @Trace %s it', (where, method) => {
    expect(isTracedMethod(method)).toBe(true);
    expect(Reflect.getMetadataKeys(method)).toContain(EVENT_LISTENER_METADATA);
    expect(Reflect.getMetadata(EVENT_LISTENER_METADATA, method)).toEqual([
      expect.objectContaining({ event: `e.${where}` }),
    ]);
  });

  it('is traced whichever order it is stacked in', () => {
    const stacked = new Stacked();
    expect(stacked.getAbove()).toBe('above');
    expect(stacked.getBelow()).toBe('below');
    only('Stacked.getAbove');
    only('Stacked.getBelow');
  });

  it('is found by Nest: event listeners and HTTP routes, both orders', async () => {
    @Injectable()
    class Listener {
      readonly received: string[] = [];

      @Trace()
      @OnEvent('order.created')
      created(payload: string): void {
        this.received.push(`created:${payload}`);
      }

      @OnEvent('order.paid')
      @Trace()
      paid(payload: string): void {
        this.received.push(`paid:${payload}`);
      }
    }

    @Controller('orders')
    class OrdersController {
      @Trace()
      @Get('above')
      above(): string {
        return 'above';
      }

      @Get('below')
      @Trace()
      below(): string {
        return 'below';
      }
    }

    const moduleRef = await Test.createTestingModule({
      imports: [EventEmitterModule.forRoot()],
      controllers: [OrdersController],
      providers: [Listener],
    }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    await app.listen(0, '127.0.0.1');
    try {
      const emitter = app.get(EventEmitter2);
      emitter.emit('order.created', 'o1');
      emitter.emit('order.paid', 'o1');
      expect(app.get(Listener).received).toEqual(['created:o1', 'paid:o1']);
      only('Listener.created');
      only('Listener.paid');

      const url = await app.getUrl();
      for (const path of ['above', 'below']) {
        const response = await fetch(`${url}/orders/${path}`);
        expect(response.status).toBe(200);
        await expect(response.text()).resolves.toBe(path);
      }
      only('OrdersController.above');
      only('OrdersController.below');
    } finally {
      await app.close();
    }
  });
});

describe('@Trace() idempotence', () => {
  it('never wraps a method twice', () => {
    class Twice {
      @Trace()
      @Trace('first.applied')
      run(): number {
        return 1;
      }
    }
    const wrapped = Twice.prototype.run;
    const descriptor = Object.getOwnPropertyDescriptor(Twice.prototype, 'run')!;
    Trace('again')(Twice.prototype, 'run', descriptor);
    expect(descriptor.value).toBe(wrapped);

    expect(new Twice().run()).toBe(1);
    expect(spans().map((s) => s.name)).toEqual(['first.applied']);
  });
});
