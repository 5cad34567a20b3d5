import {
  context,
  diag,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  TraceFlags,
  type Attributes,
  type Context,
  type Span,
  type SpanOptions,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { suppressTracing, TraceState } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BasicTracerProvider,
  InMemorySpanExporter,
  SamplingDecision,
  SimpleSpanProcessor,
  type IdGenerator,
  type ReadableSpan,
  type Sampler,
  type SpanLimits,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { PackageTracer, SPAN_LIMITS, type PackageSpan } from './span.js';

/** Ids from a counter: two generators made alike give two tracers the same ids. */
class CountingIds implements IdGenerator {
  private n = 0;
  generateTraceId(): string {
    return (++this.n).toString(16).padStart(32, '0');
  }
  generateSpanId(): string {
    return (++this.n).toString(16).padStart(16, '0');
  }
}

const resource = resourceFromAttributes({ 'service.name': 'span-spec' });
const scope = { name: 'span-spec', version: '1.0.0' };

/**
 * OpenTelemetry's SDK tracer and the package's, on the same settings, each with a span recorder:
 * the SDK's spans are the reference for every behaviour the package's span copies.
 */
function pair(options: { limits?: SpanLimits; sampler?: () => Sampler } = {}) {
  const limits = { ...SPAN_LIMITS, ...options.limits };
  const sampler = options.sampler ?? (() => new AlwaysOnSampler());
  const sdkSpans = new InMemorySpanExporter();
  const sdk = new BasicTracerProvider({
    resource,
    sampler: sampler(),
    idGenerator: new CountingIds(),
    spanLimits: limits,
    spanProcessors: [new SimpleSpanProcessor(sdkSpans)],
  }).getTracer(scope.name, scope.version);
  const ourSpans = new InMemorySpanExporter();
  const ours = new PackageTracer(scope, {
    resource,
    sampler: sampler(),
    idGenerator: new CountingIds(),
    spanLimits: limits,
    processor: new SimpleSpanProcessor(ourSpans),
  });
  return {
    sdk,
    ours,
    /** Runs `act` with each tracer; returns what each exported, described comparably. */
    run(act: (tracer: PackageTracer | typeof sdk) => void): [unknown[], unknown[]] {
      act(sdk);
      act(ours);
      return [
        sdkSpans.getFinishedSpans().map((span) => plain(span)),
        ourSpans.getFinishedSpans().map((span) => plain(span)),
      ];
    },
  };
}

/** A finished span as plain data (times included only where the test set them). */
function plain(span: ReadableSpan, withTimes = false) {
  return {
    name: span.name,
    kind: span.kind,
    spanContext: { ...span.spanContext(), traceState: span.spanContext().traceState?.serialize() },
    parentSpanContext: span.parentSpanContext,
    attributes: span.attributes,
    links: span.links,
    events: span.events.map((e) => ({ ...e, time: withTimes ? e.time : typeof e.time })),
    status: span.status,
    ended: span.ended,
    droppedAttributesCount: span.droppedAttributesCount,
    droppedEventsCount: span.droppedEventsCount,
    droppedLinksCount: span.droppedLinksCount,
    resource: span.resource === resource,
    scope: span.instrumentationScope,
    ...(withTimes
      ? { startTime: span.startTime, endTime: span.endTime, duration: span.duration }
      : {}),
  };
}

const PARENT = trace.setSpanContext(ROOT_CONTEXT, {
  traceId: 'a'.repeat(32),
  spanId: 'b'.repeat(16),
  traceFlags: TraceFlags.SAMPLED,
  traceState: new TraceState('k=v'),
  isRemote: true,
});

describe('PackageTracer and PackageSpan, against the SDK tracer on the same settings', () => {
  let warnings: string[];
  beforeEach(() => {
    warnings = [];
    const log = (message: string) => warnings.push(message);
    diag.setLogger({ error: log, warn: log, info: () => {}, debug: () => {}, verbose: () => {} });
  });
  afterEach(() => diag.disable());

  it('starts root and child spans with the same ids, kind, attributes and parent', () => {
    const [sdk, ours] = pair().run((tracer) => {
      tracer.startSpan('root', { kind: SpanKind.SERVER, attributes: { a: 1, b: 'x' } }).end();
      tracer.startSpan('child', { kind: SpanKind.CLIENT }, PARENT).end();
      tracer.startSpan('new root', { root: true }, PARENT).end();
      const invalid = trace.setSpanContext(ROOT_CONTEXT, {
        traceId: '0'.repeat(32),
        spanId: '0'.repeat(16),
        traceFlags: TraceFlags.SAMPLED,
      });
      tracer.startSpan('invalid parent', {}, invalid).end();
    });
    expect(ours).toEqual(sdk);
    expect(ours).toHaveLength(4);
    expect((ours[1] as { parentSpanContext: { spanId: string } }).parentSpanContext.spanId).toBe(
      'b'.repeat(16),
    );
    expect((ours[1] as { spanContext: { traceState: string } }).spanContext.traceState).toBe('k=v');
  });

  it('continues a parent whose ids came in upper case in lower case, as W3C writes them', () => {
    const spans = new InMemorySpanExporter();
    const tracer = new PackageTracer(scope, {
      resource,
      sampler: new AlwaysOnSampler(),
      idGenerator: new CountingIds(),
      spanLimits: SPAN_LIMITS,
      processor: new SimpleSpanProcessor(spans),
    });
    const upper = trace.setSpanContext(ROOT_CONTEXT, {
      traceId: 'ABCDEF0123456789ABCDEF0123456789',
      spanId: '00F067AA0BA902B7',
      traceFlags: TraceFlags.SAMPLED,
      isRemote: true,
    });
    const child = tracer.startSpan('child', {}, upper);
    const grandchild = tracer.startSpan('grandchild', {}, trace.setSpan(ROOT_CONTEXT, child));
    grandchild.end();
    child.end();
    expect(child.spanContext().traceId).toBe('abcdef0123456789abcdef0123456789');
    expect(grandchild.spanContext().traceId).toBe('abcdef0123456789abcdef0123456789');
    const [, exported] = spans.getFinishedSpans();
    expect(exported?.parentSpanContext).toMatchObject({
      traceId: 'abcdef0123456789abcdef0123456789',
      spanId: '00f067aa0ba902b7',
      isRemote: true,
    });
    // A parent in lower case is kept as it came.
    const lower = tracer.startSpan('lower', {}, PARENT);
    lower.end();
    expect(lower.spanContext().traceId).toBe(trace.getSpanContext(PARENT)?.traceId);
  });

  it('checks and copies attributes the way the SDK span does', () => {
    const shared = ['one', 'two'];
    const [sdk, ours] = pair().run((tracer) => {
      const span = tracer.startSpan('attributes', {
        attributes: {
          list: shared,
          bad: { nested: true } as never,
          nothing: undefined,
          '': 'empty key',
        },
      });
      span.setAttribute('n', 3);
      span.setAttribute('n', 4);
      span.setAttribute('', 'x');
      span.setAttribute('obj', {} as never);
      span.setAttribute('null', null as never);
      span.setAttributes({ m: [1, 2], mixed: [1, 'a'] as never, list2: shared });
      span.end();
      span.setAttribute('after', 'end');
    });
    shared.push('three');
    expect(ours).toEqual(sdk);
    expect((ours[0] as { attributes: Attributes }).attributes).toEqual({
      list: ['one', 'two'],
      nothing: undefined,
      n: 4,
      m: [1, 2],
      list2: ['one', 'two'],
    });
  });

  it('applies the attribute count and value length limits', () => {
    const limits = { attributeCountLimit: 3, attributeValueLengthLimit: 4 };
    const [sdk, ours] = pair({ limits }).run((tracer) => {
      const span = tracer.startSpan('limits', { attributes: { a: 'abcdefg', b: ['123456', 'x'] } });
      span.setAttribute('c', true);
      span.setAttribute('d', 'dropped');
      span.setAttribute('a', 'overwritten');
      span.end();
    });
    expect(ours).toEqual(sdk);
    expect((ours[0] as { attributes: Attributes }).attributes).toEqual({
      a: 'over',
      b: ['1234', 'x'],
      c: true,
    });
    expect((ours[0] as { droppedAttributesCount: number }).droppedAttributesCount).toBe(1);
  });

  it('keeps status by the SDK rules: OK is final, UNSET ignored, only ERROR keeps a message', () => {
    const [sdk, ours] = pair().run((tracer) => {
      const a = tracer.startSpan('error then ok');
      a.setStatus({ code: SpanStatusCode.ERROR, message: 'boom' });
      a.setStatus({ code: SpanStatusCode.UNSET });
      a.end();
      const b = tracer.startSpan('ok then error');
      b.setStatus({ code: SpanStatusCode.OK, message: 'dropped' });
      b.setStatus({ code: SpanStatusCode.ERROR, message: 'ignored' });
      b.end();
      const c = tracer.startSpan('bad message');
      c.setStatus({ code: SpanStatusCode.ERROR, message: 42 as never });
      c.end();
      c.setStatus({ code: SpanStatusCode.OK });
    });
    expect(ours).toEqual(sdk);
    expect(ours.map((s) => (s as { status: unknown }).status)).toEqual([
      { code: SpanStatusCode.ERROR, message: 'boom' },
      { code: SpanStatusCode.OK },
      { code: SpanStatusCode.ERROR },
    ]);
  });

  it('records events, exceptions and links within their limits, oldest dropped first', () => {
    const limits = {
      eventCountLimit: 3,
      linkCountLimit: 2,
      attributePerEventCountLimit: 1,
      attributePerLinkCountLimit: 1,
    };
    const link = (n: number) => ({
      context: { traceId: 'c'.repeat(32), spanId: String(n).repeat(16), traceFlags: 1 },
      attributes: { first: n, second: n },
    });
    const [sdk, ours] = pair({ limits }).run((tracer) => {
      const span = tracer.startSpan('events', { links: [link(1)] });
      span.addEvent('plain');
      span.addEvent('with attributes', { x: 1, y: 2 });
      const error = Object.assign(new Error('failed'), { code: 'E_CODE' });
      span.recordException(error);
      span.recordException(new TypeError('typed'));
      span.recordException('a string');
      span.recordException({} as Error);
      span.addLink(link(2));
      span.addLinks([link(3)]);
      span.updateName('renamed');
      span.end();
      span.addEvent('after end');
      span.updateName('after end');
    });
    expect(ours).toEqual(sdk);
    const span = ours[0] as ReturnType<typeof plain>;
    expect(span.name).toBe('renamed');
    expect(span.events.map((e) => e.name)).toEqual(['exception', 'exception', 'exception']);
    expect(span.events[0]!.attributes).toEqual({ 'exception.type': 'E_CODE' });
    expect(span.droppedEventsCount).toBe(2);
    expect(span.links.map((l) => l.context.spanId[0])).toEqual(['2', '3']);
    expect(span.droppedLinksCount).toBe(1);
    expect(warnings.some((w) => w.startsWith('Failed to record an exception'))).toBe(true);
  });

  it('takes start, end and event times as the SDK span does (Date, epoch ms, HrTime)', () => {
    const start = new Date('2026-01-02T03:04:05.678Z');
    const { sdk, ours } = pair();
    const times = (tracer: PackageTracer | typeof sdk) => {
      const a = tracer.startSpan('date', { startTime: start });
      a.addEvent('epoch ms', start.getTime() + 1.5);
      a.addEvent('hr time', {}, [1767323045, 700_000_001]);
      a.end(start.getTime() + 25.25);
      const b = tracer.startSpan('backwards', { startTime: [1767323045, 0] });
      b.end([1767323044, 0]);
      return [a, b].map((s) => plain(s as unknown as ReadableSpan, true));
    };
    const reference = times(sdk);
    expect(times(ours)).toEqual(reference);
    expect(reference[0]!.duration).toEqual([0, 25_250_000]);
    expect(reference[1]!.duration).toEqual([0, 0]);
  });

  it('times an open span by the monotonic clock, and ends it once', () => {
    const { ours } = pair();
    const span = ours.startSpan('timed') as PackageSpan;
    expect(span.ended).toBe(false);
    expect(span.endTime).toEqual([0, 0]);
    expect(span.duration).toEqual([-1, -1]);
    const before = Date.now();
    span.end();
    const [seconds, nanos] = span.startTime;
    expect(Math.abs(seconds * 1000 + nanos / 1e6 - before)).toBeLessThan(1000);
    expect(span.duration[0]).toBe(0);
    expect(span.ended).toBe(true);
    expect(span.isRecording()).toBe(false);
    span.end();
    expect(warnings.some((w) => w.includes('You can only call end() on a span once.'))).toBe(true);
  });

  it('follows the sampler: dropped, recorded unsampled, its attributes and trace state', () => {
    const sampler = (): Sampler => ({
      shouldSample: (_ctx, _traceId, name) => {
        if (name === 'drop') return { decision: SamplingDecision.NOT_RECORD };
        if (name === 'record') return { decision: SamplingDecision.RECORD };
        return {
          decision: SamplingDecision.RECORD_AND_SAMPLED,
          attributes: { sampled: 'by sampler' },
          traceState: new TraceState('s=1'),
        };
      },
      toString: () => 'spec sampler',
    });
    const { sdk, ours } = pair({ sampler });
    for (const tracer of [sdk, ours]) {
      const dropped = tracer.startSpan('drop', {}, PARENT);
      expect(dropped.isRecording()).toBe(false);
      expect(dropped.spanContext().traceFlags).toBe(TraceFlags.NONE);
      expect(dropped.spanContext().traceId).toBe('a'.repeat(32));
      const recorded = tracer.startSpan('record', {}, PARENT);
      expect(recorded.isRecording()).toBe(true);
      expect(recorded.spanContext().traceFlags).toBe(TraceFlags.NONE);
      recorded.end();
    }
    // Unsampled spans are not exported (SimpleSpanProcessor): only the sampled one is.
    const [a, b] = pair({ sampler }).run((tracer) => {
      tracer.startSpan('record').end();
      tracer.startSpan('merged', { attributes: { own: 1 } }).end();
    });
    expect(b).toEqual(a);
    expect(b).toHaveLength(1);
    expect(b[0]).toMatchObject({
      name: 'merged',
      attributes: { own: 1, sampled: 'by sampler' },
      spanContext: { traceState: 's=1', traceFlags: TraceFlags.SAMPLED },
    });
  });

  it('starts no span while tracing is suppressed, or when the sampler says off', () => {
    const { ours } = pair({ sampler: () => new AlwaysOffSampler() });
    expect(ours.startSpan('off').isRecording()).toBe(false);
    const suppressed = pair().ours.startSpan('suppressed', {}, suppressTracing(ROOT_CONTEXT));
    expect(suppressed.isRecording()).toBe(false);
    expect(trace.isSpanContextValid(suppressed.spanContext())).toBe(false);
  });

  it('calls a processor at start, while ending (span still writable) and at the end', () => {
    const calls: string[] = [];
    const processor: SpanProcessor = {
      onStart: (span, parent: Context) => {
        calls.push(`start ${span.name} ${trace.getSpan(parent)?.spanContext().spanId ?? '-'}`);
        span.setAttribute('from.onStart', true);
      },
      onEnding: (span) => {
        calls.push(`ending ${String(span.isRecording())}`);
        // The end time and duration are known by then, as on the SDK span.
        const readable = span as unknown as ReadableSpan;
        calls.push(`duration ${readable.duration[0]} ${String(readable.duration[1] >= 0)}`);
        span.setAttribute('from.onEnding', true);
      },
      onEnd: (span) => {
        calls.push(`end ${JSON.stringify(span.attributes)}`);
        // Each span's status is its own object, which a processor may rewrite.
        span.status.message = 'redacted';
      },
      forceFlush: () => Promise.resolve(),
      shutdown: () => Promise.resolve(),
    };
    const tracer = new PackageTracer(scope, {
      resource,
      sampler: new AlwaysOnSampler(),
      idGenerator: new CountingIds(),
      spanLimits: SPAN_LIMITS,
      processor,
    });
    const span = tracer.startSpan('p', {}, PARENT) as PackageSpan;
    span.end();
    expect(calls).toEqual([
      `start p ${'b'.repeat(16)}`,
      'ending true',
      'duration 0 true',
      'end {"from.onStart":true,"from.onEnding":true}',
    ]);
    expect(span.status).toEqual({ code: SpanStatusCode.UNSET, message: 'redacted' });
    expect((tracer.startSpan('q') as PackageSpan).status).toEqual({ code: SpanStatusCode.UNSET });
  });

  it('ignores every write after end() with the SDK span’s warning', () => {
    const { sdk, ours } = pair();
    const writesAfterEnd = (tracer: PackageTracer | typeof sdk): string[] => {
      warnings = [];
      const span = tracer.startSpan('ended');
      span.end();
      span.setAttribute('a', 1);
      span.setAttributes({ b: 2 });
      span.addEvent('e');
      span.addLink({ context: span.spanContext() });
      span.setStatus({ code: SpanStatusCode.ERROR });
      span.updateName('renamed');
      span.recordException(new Error('late'));
      return warnings;
    };
    const sdkWarnings = writesAfterEnd(sdk);
    const ourWarnings = writesAfterEnd(ours);
    expect(sdkWarnings).toHaveLength(7);
    expect(ourWarnings).toEqual(sdkWarnings);
    expect(ourWarnings[0]).toMatch(/^Cannot execute the operation on ended Span \{traceId: /);
  });

  describe('startOwned', () => {
    it('keeps the attribute object it is given when it fits the limits', () => {
      const { ours } = pair();
      const attributes: Attributes = { 'url.path': '/x', 'server.port': 80 };
      const span = ours.startOwned('GET', SpanKind.SERVER, attributes, PARENT) as PackageSpan;
      expect(span.attributes).toBe(attributes);
      expect(span.kind).toBe(SpanKind.SERVER);
      expect(span.parentSpanContext?.spanId).toBe('b'.repeat(16));
      span.setAttribute('http.route', '/x');
      span.setAttribute('url.path', '/y');
      expect(span.attributes).toEqual({ 'url.path': '/y', 'server.port': 80, 'http.route': '/x' });
    });

    it('counts the attributes it keeps against the count limit', () => {
      const { ours } = pair({ limits: { attributeCountLimit: 2 } });
      const span = ours.startOwned('x', SpanKind.INTERNAL, { a: 1, b: 2 }, ROOT_CONTEXT);
      span.setAttribute('c', 3);
      expect((span as PackageSpan).attributes).toEqual({ a: 1, b: 2 });
      expect((span as PackageSpan).droppedAttributesCount).toBe(1);
    });

    it('copies, as startSpan does, an object with an empty value or beyond a limit', () => {
      const cases: Array<[SpanLimits, Attributes, Attributes, number]> = [
        [{}, { a: 'x', b: undefined }, { a: 'x' }, 0],
        [{ attributeValueLengthLimit: 2 }, { a: 'xyz' }, { a: 'xy' }, 0],
        [{ attributeCountLimit: 1 }, { a: 1, b: 2 }, { a: 1 }, 1],
      ];
      for (const [limits, given, kept, dropped] of cases) {
        const span = pair({ limits }).ours.startOwned(
          'x',
          SpanKind.INTERNAL,
          given,
          ROOT_CONTEXT,
        ) as PackageSpan;
        expect(span.attributes).not.toBe(given);
        expect(span.attributes).toEqual(kept);
        expect(span.droppedAttributesCount).toBe(dropped);
      }
    });

    it('merges the sampler’s attributes into a checked copy', () => {
      const sampler = (): Sampler => ({
        shouldSample: () => ({
          decision: SamplingDecision.RECORD_AND_SAMPLED,
          attributes: { extra: true },
        }),
      });
      const attributes = { a: 1 };
      const span = pair({ sampler }).ours.startOwned(
        'x',
        SpanKind.INTERNAL,
        attributes,
        ROOT_CONTEXT,
      ) as PackageSpan;
      expect(span.attributes).toEqual({ a: 1, extra: true });
    });
  });

  describe('startActiveSpan', () => {
    const manager = new AsyncLocalStorageContextManager();
    beforeAll(() => context.setGlobalContextManager(manager.enable()));
    afterAll(() => {
      context.disable();
      manager.disable();
    });

    it('runs the function in a context with the span, for each overload', () => {
      const { ours } = pair();
      const seen: Array<[string, string | undefined]> = [];
      const note = (span: Span) => {
        seen.push([
          trace.getActiveSpan() === span ? 'active' : 'not active',
          (span as PackageSpan).parentSpanContext?.spanId,
        ]);
        span.end();
        return 'result';
      };
      const options: SpanOptions = { kind: SpanKind.CONSUMER };
      expect(ours.startActiveSpan('two', note)).toBe('result');
      expect(ours.startActiveSpan('three', options, note)).toBe('result');
      expect(ours.startActiveSpan('four', options, PARENT, note)).toBe('result');
      context.with(PARENT, () => ours.startActiveSpan('inherits', note));
      expect(seen).toEqual([
        ['active', undefined],
        ['active', undefined],
        ['active', 'b'.repeat(16)],
        ['active', 'b'.repeat(16)],
      ]);
    });
  });
});
