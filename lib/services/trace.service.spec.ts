import 'reflect-metadata';
import { Test } from '@nestjs/testing';
import {
  context,
  INVALID_SPAN_CONTEXT,
  propagation,
  SpanKind,
  SpanStatusCode,
  trace,
  type Span,
} from '@opentelemetry/api';
import { hrTimeToMilliseconds, W3CBaggagePropagator } from '@opentelemetry/core';
import { type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { TraceService } from './trace.service.js';
import {
  expectUnrunLazyQuery,
  LazyQuery,
  useOtelHarness,
} from '../../test/support/otel-harness.js';

const { exporter, openSpans } = useOtelHarness({ propagator: new W3CBaggagePropagator() });

const spans = (): ReadableSpan[] => exporter.getFinishedSpans();
const only = (): ReadableSpan => {
  expect(spans()).toHaveLength(1);
  return spans()[0]!;
};
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const named = (name: string): ReadableSpan[] => spans().filter((s) => s.name === name);

describe('TraceService', () => {
  const service = new TraceService();

  it('is a Nest provider', async () => {
    const moduleRef = await Test.createTestingModule({ providers: [TraceService] }).compile();
    expect(moduleRef.get(TraceService)).toBeInstanceOf(TraceService);
    await moduleRef.close();
  });

  describe('without an active span', () => {
    it('returns undefined and does nothing', () => {
      expect(service.activeSpan()).toBeUndefined();
      expect(service.currentSpan()).toBeUndefined();
      expect(service.traceId()).toBeUndefined();
      expect(service.spanId()).toBeUndefined();
      service.setAttributes({ a: 1 });
      service.setAttribute('a', 1);
      service.addEvent('event');
      service.recordException(new Error('nowhere'));
      expect(spans()).toEqual([]);
    });

    it('returns undefined ids for an invalid span context', () => {
      const invalid = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);
      context.with(trace.setSpan(context.active(), invalid), () => {
        expect(service.activeSpan()).toBe(invalid);
        expect(service.traceId()).toBeUndefined();
        expect(service.spanId()).toBeUndefined();
      });
    });
  });

  describe('startActiveSpan', () => {
    it('runs a sync function in a new active span and ends it', () => {
      let inside: Span | undefined;
      const result = service.startActiveSpan(
        'sync.work',
        (span) => {
          inside = span;
          expect(service.activeSpan()).toBe(span);
          expect(service.currentSpan()).toBe(span);
          expect(service.traceId()).toBe(span.spanContext().traceId);
          expect(service.spanId()).toBe(span.spanContext().spanId);
          expect(service.traceId()).toMatch(/^[0-9a-f]{32}$/);
          expect(service.spanId()).toMatch(/^[0-9a-f]{16}$/);
          return 42;
        },
        { kind: SpanKind.CLIENT, attributes: { 'work.size': 3 } },
      );
      expect(result).toBe(42);
      const span = only();
      expect(span.name).toBe('sync.work');
      expect(span.kind).toBe(SpanKind.CLIENT);
      expect(span.attributes).toEqual({ 'work.size': 3 });
      expect(span.spanContext().spanId).toBe(inside?.spanContext().spanId);
      expect(service.activeSpan()).toBeUndefined();
    });

    it('nests spans', () => {
      service.startActiveSpan('outer', () => service.startActiveSpan('inner', () => undefined));
      const [inner, outer] = spans();
      expect(inner!.parentSpanContext?.spanId).toBe(outer!.spanContext().spanId);
      expect(inner!.spanContext().traceId).toBe(outer!.spanContext().traceId);
    });

    it('records a sync throw and rethrows the same error', () => {
      const err = new Error('sync boom');
      expect(() =>
        service.startActiveSpan('sync.fail', () => {
          throw err;
        }),
      ).toThrow(err);
      const span = only();
      expect(span.status).toEqual({ code: SpanStatusCode.ERROR, message: 'sync boom' });
      expect(span.events.map((e) => e.name)).toEqual(['exception']);
    });

    it('ends the span when a Promise resolves', async () => {
      const pending = service.startActiveSpan('async.work', async (span) => {
        await tick();
        expect(service.activeSpan()).toBe(span);
        return 'done';
      });
      expect(spans()).toHaveLength(0);
      await expect(pending).resolves.toBe('done');
      expect(only().status.code).toBe(SpanStatusCode.UNSET);
    });

    it('records a rejection and rejects with the same error', async () => {
      const err = new Error('async boom');
      await expect(
        service.startActiveSpan('async.fail', async () => {
          await tick();
          throw err;
        }),
      ).rejects.toBe(err);
      expect(only().status).toEqual({ code: SpanStatusCode.ERROR, message: 'async boom' });
    });

    it('ends the span when a thenable settles', async () => {
      const thenable = {
        then(onFulfilled: (v: string) => void) {
          setTimeout(() => onFulfilled('later'), 1);
        },
      };
      const result = service.startActiveSpan('thenable.work', () => thenable);
      expect(result).toBe(thenable);
      expect(spans()).toHaveLength(0);
      expect(await result).toBe('later');
      only();
    });

    it('returns a Promise subclass as it is, with its own API, and ends the span when awaited', async () => {
      class Cancellable extends Promise<string> {
        cancel(): string {
          return 'cancelled';
        }
      }
      const promise = new Cancellable((resolve) => setTimeout(() => resolve('sub'), 1));
      const result = service.startActiveSpan('subclass.work', () => promise);
      expect(result).toBe(promise);
      expect(result.cancel()).toBe('cancelled');
      expect(await result).toBe('sub');
      only();
    });

    describe('returning a lazy thenable (not a native Promise)', () => {
      it('returns the same object, unrun, and ends the span once when awaited', async () => {
        const query = new LazyQuery({ value: 'rows' }, 20);
        const result = await service.startActiveSpan('parent', async (parent) => {
          const returned = service.startActiveSpan('db.query', () => query);
          await expectUnrunLazyQuery(returned, query, LazyQuery.prototype);
          expect(named('db.query')).toHaveLength(0);
          const rows = await returned;
          expect(service.activeSpan()).toBe(parent);
          return { parent, rows };
        });
        expect(result.rows).toBe('rows');
        expect(query.executions).toBe(1);
        const span = named('db.query')[0]!;
        expect(named('db.query')).toHaveLength(1);
        expect(span.parentSpanContext?.spanId).toBe(result.parent.spanContext().spanId);
        expect(span.status.code).toBe(SpanStatusCode.UNSET);
        expect(hrTimeToMilliseconds(span.duration)).toBeGreaterThanOrEqual(20);
        expect(query.activeAtExecution?.spanContext().spanId).toBe(span.spanContext().spanId);

        expect(Object.hasOwn(query, 'then')).toBe(false);
        await expect(query).resolves.toBe('rows');
        expect(query.executions).toBe(2);
        expect(named('db.query')).toHaveLength(1);
      });

      it('records a rejection and rejects with the same error', async () => {
        const err = new Error('query boom');
        const query = new LazyQuery<string>({ error: err }, 5);
        const returned = service.startActiveSpan('db.query', () => query);
        expect(returned).toBe(query);
        expect(query.executions).toBe(0);
        await expect(returned).rejects.toBe(err);
        expect(query.executions).toBe(1);
        const span = only();
        expect(span.status).toEqual({ code: SpanStatusCode.ERROR, message: 'query boom' });
        expect(span.events.map((e) => e.name)).toEqual(['exception']);
      });

      it('never runs, nor exports a span for, a thenable nobody awaits', async () => {
        const query = new LazyQuery({ value: 'rows' });
        service.startActiveSpan('db.query', () => query);
        await tick();
        await tick();
        expect(query.executions).toBe(0);
        expect(spans()).toHaveLength(0);
        // Its span stays open (and is dropped with the object): the one span this test leaves.
        const open = [...openSpans.open] as ReadableSpan[];
        expect(open.map((s) => s.name)).toEqual(['db.query']);
        openSpans.open.clear();
      });

      it('ends the span at return when then() cannot be hooked (frozen)', async () => {
        const frozen = Object.freeze(new LazyQuery({ value: 'rows' }));
        expect(service.startActiveSpan('db.query', () => frozen)).toBe(frozen);
        expect(frozen.executions).toBe(0);
        only();
        await expect(frozen).resolves.toBe('rows');
        expect(frozen.executions).toBe(1);
        expect(spans()).toHaveLength(1);
      });
    });
  });

  describe('with an active span', () => {
    it('sets attributes and adds events', () => {
      service.startActiveSpan('annotated', () => {
        service.setAttributes({ a: 1, b: 'two' });
        service.setAttribute('c', true);
        service.addEvent('cache.miss', { key: 'k' });
      });
      const span = only();
      expect(span.attributes).toEqual({ a: 1, b: 'two', c: true });
      expect(span.events.map((e) => [e.name, e.attributes])).toEqual([
        ['cache.miss', { key: 'k' }],
      ]);
    });

    it('records an exception and sets ERROR by default', () => {
      class PaymentDeclinedError extends Error {}
      service.startActiveSpan('failing', () =>
        service.recordException(new PaymentDeclinedError('bad')),
      );
      const span = only();
      expect(span.status).toEqual({ code: SpanStatusCode.ERROR, message: 'bad' });
      expect(span.events[0]!.attributes?.['exception.message']).toBe('bad');
      expect(span.attributes['error.type']).toBe('PaymentDeclinedError');
    });

    it('records an exception without ERROR when setError is false', () => {
      service.startActiveSpan('recovered', () =>
        service.recordException(new Error('retried'), { setError: false }),
      );
      const span = only();
      expect(span.status.code).toBe(SpanStatusCode.UNSET);
      expect(span.events[0]!.attributes?.['exception.message']).toBe('retried');
      expect(span.attributes['error.type']).toBeUndefined();
    });
  });

  describe('baggage', () => {
    it('returns undefined without baggage', () => {
      expect(service.getBaggage()).toBeUndefined();
      expect(service.getBaggage('tenant')).toBeUndefined();
    });

    it('adds entries for the duration of fn, across awaits, and merges nested calls', async () => {
      const result = await service.withBaggage({ tenant: 't1', region: 'eu' }, async () => {
        await tick();
        expect(service.getBaggage('tenant')).toBe('t1');
        expect(service.getBaggage('missing')).toBeUndefined();
        return service.withBaggage({ region: 'us', user: 'u1' }, () => service.getBaggage());
      });
      expect(result).toEqual({ tenant: 't1', region: 'us', user: 'u1' });
      expect(service.getBaggage()).toBeUndefined();
    });

    it('carries the entries to outgoing calls', () => {
      const carrier: Record<string, string> = {};
      service.withBaggage({ tenant: 't1' }, () => propagation.inject(context.active(), carrier));
      expect(carrier['baggage']).toBe('tenant=t1');
    });
  });
});
