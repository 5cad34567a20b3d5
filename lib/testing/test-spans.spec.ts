import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type HrTime,
  type Span,
} from '@opentelemetry/api';
import { ConsoleSpanExporter, InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { localTracer, remoteContext } from '../../test/support/local-tracer.js';
import { TRACING_SPAN_EXPORTER } from '../tracing.constants.js';
import { TestSpans, type SpanNode } from './test-spans.js';
import { TracingModule } from '../tracing.module.js';
import { TracingTestingModule } from './tracing-testing.module.js';

// Spans are parented through explicit contexts, so the TracingTestingModule tests below find the
// OpenTelemetry globals free.
const { exporter, tracer } = localTracer('fixture');
const spans = new TestSpans(exporter);
const REMOTE_TRACE = 'ab'.repeat(16);
const REMOTE_SPAN = 'cd'.repeat(8);

function start(name: string, startTime: HrTime, parent?: Span, kind = SpanKind.INTERNAL): Span {
  const ctx = parent === undefined ? ROOT_CONTEXT : trace.setSpan(ROOT_CONTEXT, parent);
  return tracer.startSpan(name, { kind, startTime }, ctx);
}

/**
 * Trace A: `GET /orders` → validate, load → db.query (ERROR), encode. The children end in an
 * order that is neither their start order nor their name order; two of them start in the same
 * second (so ordering needs the nanoseconds) and one starts a second later with fewer nanoseconds.
 * Trace B: `job` → `job.step`, started before trace A. Then `remote-child`, whose parent is remote.
 */
function buildFixture() {
  const root = start('GET /orders', [100, 0], undefined, SpanKind.SERVER);
  const validate = start('validate', [100, 500], root);
  const load = start('load', [100, 700], root);
  const query = start('db.query', [100, 800], load, SpanKind.CLIENT);
  const encode = start('encode', [101, 100], root);
  query.setStatus({ code: SpanStatusCode.ERROR, message: 'boom' });
  for (const span of [encode, query, load, validate, root]) span.end();

  const job = start('job', [99, 0], undefined, SpanKind.CONSUMER);
  const step = start('job.step', [99, 10], job);
  step.end();
  job.end();

  const remote = tracer.startSpan(
    'remote-child',
    { kind: SpanKind.SERVER, startTime: [102, 0] },
    remoteContext(REMOTE_TRACE, REMOTE_SPAN),
  );
  remote.end();
  return {
    traceA: root.spanContext().traceId,
    traceB: job.spanContext().traceId,
    rootId: root.spanContext().spanId,
    loadId: load.spanContext().spanId,
  };
}

const END_ORDER = [
  'encode',
  'db.query',
  'load',
  'validate',
  'GET /orders',
  'job.step',
  'job',
  'remote-child',
];

/** A tree as [name, children] pairs, to compare whole shapes at once. */
type Shape = [string, Shape[]];
const shape = (nodes: SpanNode[]): Shape[] =>
  nodes.map((n) => [n.span.name, shape(n.children)] as Shape);

describe('TestSpans lookups', () => {
  let fx: ReturnType<typeof buildFixture>;
  beforeEach(() => {
    exporter.reset();
    fx = buildFixture();
  });

  it('all() returns every finished span in the order they ended', () => {
    expect(spans.all().map((s) => s.name)).toEqual(END_ORDER);
    expect(spans.all()).toHaveLength(exporter.getFinishedSpans().length);
  });

  it('all() leaves out spans that have not ended', () => {
    const open = start('still-open', [200, 0]);
    expect(spans.names()).not.toContain('still-open');
    open.end();
    expect(spans.names()).toContain('still-open');
  });

  it('names() lists the names in end order, duplicates kept', () => {
    start('encode', [200, 0]).end();
    expect(spans.names()).toEqual([...END_ORDER, 'encode']);
  });

  it('byName(string) matches the whole name exactly', () => {
    expect(spans.byName('load').map((s) => s.spanContext().spanId)).toEqual([fx.loadId]);
    expect(spans.byName('lo')).toEqual([]);
    expect(spans.byName('LOAD')).toEqual([]);
    expect(spans.byName('missing')).toEqual([]);
  });

  it('byName(RegExp) matches by pattern', () => {
    expect(spans.byName(/^job/).map((s) => s.name)).toEqual(['job.step', 'job']);
    expect(spans.byName(/query$/).map((s) => s.name)).toEqual(['db.query']);
    expect(spans.byName(/^nothing/)).toEqual([]);
  });

  it('byName(RegExp) with the global flag matches every span (lastIndex)', () => {
    expect(spans.byName(/^job/g).map((s) => s.name)).toEqual(['job.step', 'job']);
  });

  it('one() returns the single match', () => {
    const load = spans.one('load');
    expect(load.name).toBe('load');
    expect(load.spanContext().spanId).toBe(fx.loadId);
    expect(spans.one(/^db\./).name).toBe('db.query');
  });

  it('one() throws when nothing matches, listing the finished span names', () => {
    expect(() => spans.one('missing')).toThrow(
      `Expected exactly one span named missing, found 0. Finished spans: ${END_ORDER.join(', ')}`,
    );
  });

  it('one() throws when several match, with the count', () => {
    expect(() => spans.one(/^job/)).toThrow(
      `Expected exactly one span named /^job/, found 2. Finished spans: ${END_ORDER.join(', ')}`,
    );
    start('load', [200, 0]).end();
    expect(() => spans.one('load')).toThrow(/named load, found 2\./);
  });

  it('one() says (none) when no span has finished', () => {
    exporter.reset();
    expect(() => spans.one('load')).toThrow('found 0. Finished spans: (none)');
  });

  it('byKind() filters by span kind', () => {
    expect(spans.byKind(SpanKind.SERVER).map((s) => s.name)).toEqual([
      'GET /orders',
      'remote-child',
    ]);
    expect(spans.byKind(SpanKind.CLIENT).map((s) => s.name)).toEqual(['db.query']);
    expect(spans.byKind(SpanKind.CONSUMER).map((s) => s.name)).toEqual(['job']);
    expect(spans.byKind(SpanKind.PRODUCER)).toEqual([]);
  });

  it('trace() returns the spans of one trace only', () => {
    expect(spans.trace(fx.traceA).map((s) => s.name)).toEqual([
      'encode',
      'db.query',
      'load',
      'validate',
      'GET /orders',
    ]);
    expect(spans.trace(fx.traceB).map((s) => s.name)).toEqual(['job.step', 'job']);
    expect(spans.trace(REMOTE_TRACE).map((s) => s.name)).toEqual(['remote-child']);
    expect(spans.trace('0'.repeat(32))).toEqual([]);
  });

  it('traceIds() lists each trace once, in order of first ended span', () => {
    expect(fx.traceA).not.toBe(fx.traceB);
    expect(spans.traceIds()).toEqual([fx.traceA, fx.traceB, REMOTE_TRACE]);
    exporter.reset();
    expect(spans.traceIds()).toEqual([]);
  });

  it('tree() nests spans by parent and orders children by start time (seconds, then nanos)', () => {
    expect(shape(spans.tree(fx.traceA))).toEqual([
      [
        'GET /orders',
        [
          ['validate', []],
          ['load', [['db.query', []]]],
          ['encode', []],
        ],
      ],
    ]);
    const [root] = spans.tree(fx.traceA);
    expect(root?.span.spanContext().spanId).toBe(fx.rootId);
  });

  it('tree() without a trace id returns the roots of every trace, by start time', () => {
    expect(shape(spans.tree()).map(([name]) => name)).toEqual([
      'job',
      'GET /orders',
      'remote-child',
    ]);
    expect(shape(spans.tree())[0]).toEqual(['job', [['job.step', []]]]);
  });

  it('tree() makes a span with a remote parent a root', () => {
    const [node, ...rest] = spans.tree(REMOTE_TRACE);
    expect(rest).toEqual([]);
    expect(node?.span.name).toBe('remote-child');
    expect(node?.children).toEqual([]);
    expect(node?.span.parentSpanContext?.spanId).toBe(REMOTE_SPAN);
  });

  it('tree() makes a span whose parent has not ended a root, and nests it once the parent ends', () => {
    exporter.reset();
    const parent = start('parent', [300, 0]);
    start('child', [300, 1], parent).end();
    expect(shape(spans.tree())).toEqual([['child', []]]);
    parent.end();
    expect(shape(spans.tree())).toEqual([['parent', [['child', []]]]]);
  });

  it('tree() of an unknown trace is empty', () => {
    expect(spans.tree('0'.repeat(32))).toEqual([]);
  });

  it('printTree() prints one trace indented, with kinds and an !error mark', () => {
    expect(spans.printTree(fx.traceA)).toBe(
      [
        'GET /orders [SERVER]',
        '  validate [INTERNAL]',
        '  load [INTERNAL]',
        '    db.query [CLIENT] !error',
        '  encode [INTERNAL]',
      ].join('\n'),
    );
  });

  it('printTree() without a trace id prints every trace', () => {
    expect(spans.printTree()).toBe(
      [
        'job [CONSUMER]',
        '  job.step [INTERNAL]',
        'GET /orders [SERVER]',
        '  validate [INTERNAL]',
        '  load [INTERNAL]',
        '    db.query [CLIENT] !error',
        '  encode [INTERNAL]',
        'remote-child [SERVER]',
      ].join('\n'),
    );
  });

  it('printTree() marks only ERROR, not OK or UNSET', () => {
    exporter.reset();
    const ok = start('ok', [400, 0]);
    ok.setStatus({ code: SpanStatusCode.OK });
    ok.end();
    start('unset', [400, 1]).end();
    expect(spans.printTree()).toBe('ok [INTERNAL]\nunset [INTERNAL]');
    exporter.reset();
    expect(spans.printTree()).toBe('');
  });

  it('reset() forgets every finished span, and spans ending later are seen again', () => {
    expect(spans.all()).not.toEqual([]);
    spans.reset();
    expect(spans.all()).toEqual([]);
    expect(spans.names()).toEqual([]);
    expect(exporter.getFinishedSpans()).toEqual([]);
    start('after-reset', [500, 0]).end();
    expect(spans.names()).toEqual(['after-reset']);
  });
});

describe('TestSpans waiting', () => {
  beforeEach(() => exporter.reset());

  it('waitFor() resolves once a span that ends later satisfies the predicate', async () => {
    const late = start('late', [600, 0]);
    const timer = setTimeout(() => late.end(), 30);
    let calls = 0;
    const found = await spans.waitFor((all) => {
      calls++;
      return all.some((s) => s.name === 'late');
    }, 2000);
    clearTimeout(timer);
    expect(found.map((s) => s.name)).toEqual(['late']);
    expect(calls).toBeGreaterThan(1);
  });

  it('waitFor() resolves at once when the predicate already holds', async () => {
    start('done', [600, 0]).end();
    const before = Date.now();
    const found = await spans.waitFor((all) => all.length === 1, 5000);
    expect(found.map((s) => s.name)).toEqual(['done']);
    expect(Date.now() - before).toBeLessThan(1000);
  });

  it('waitFor() rejects after the timeout, naming the finished spans', async () => {
    start('first', [600, 0]).end();
    start('second', [600, 1]).end();
    const before = Date.now();
    await expect(spans.waitFor(() => false, 60)).rejects.toThrow(
      'Timed out after 60 ms waiting for spans. Finished spans: first, second',
    );
    expect(Date.now() - before).toBeGreaterThanOrEqual(59);
  });

  it('waitFor() says (none) when it times out with no span', async () => {
    await expect(spans.waitFor(() => false, 20)).rejects.toThrow('Finished spans: (none)');
  });

  it('waitForOne() returns the span once it ends', async () => {
    const late = start('late-one', [600, 0]);
    const timer = setTimeout(() => late.end(), 30);
    const found = await spans.waitForOne('late-one', 2000);
    clearTimeout(timer);
    expect(found.spanContext().spanId).toBe(late.spanContext().spanId);
    expect(found.endTime).not.toEqual([0, 0]);
  });

  it('waitForOne() accepts a RegExp', async () => {
    const late = start('late-regexp', [600, 0]);
    const timer = setTimeout(() => late.end(), 20);
    expect((await spans.waitForOne(/^late-re/, 2000)).name).toBe('late-regexp');
    clearTimeout(timer);
  });

  it('waitForOne() rejects after the timeout when the span never ends', async () => {
    start('other', [600, 0]).end();
    const open = start('never-ends', [600, 1]);
    await expect(spans.waitForOne('never-ends', 40)).rejects.toThrow(
      "Timed out after 40 ms waiting for a span named 'never-ends'. Finished spans: other",
    );
    open.end();
  });

  it('waitForOne() rejects when several spans have the name', async () => {
    start('twice', [600, 0]).end();
    start('twice', [600, 1]).end();
    await expect(spans.waitForOne('twice', 40)).rejects.toThrow(
      'Expected exactly one span named twice, found 2',
    );
  });
});

describe('TestSpans.from()', () => {
  it('finds the in-memory exporter among the exporters under TRACING_SPAN_EXPORTER', () => {
    const memory = new InMemorySpanExporter();
    const asked: unknown[][] = [];
    const lookup = {
      get: (...args: unknown[]) => {
        asked.push(args);
        return [new ConsoleSpanExporter(), memory];
      },
    };
    const found = TestSpans.from(lookup);
    expect(found).toBeInstanceOf(TestSpans);
    expect(found.exporter).toBe(memory);
    expect(asked).toHaveLength(1);
    expect(asked[0]?.[0]).toBe(TRACING_SPAN_EXPORTER);
  });

  it('accepts a single exporter as well as an array', () => {
    const memory = new InMemorySpanExporter();
    expect(TestSpans.from({ get: () => memory }).exporter).toBe(memory);
  });

  it.each([
    ['only a console exporter', [new ConsoleSpanExporter()]],
    ['no exporter', []],
    ['nothing at all', undefined],
  ])('throws a clear error when there is %s', (_label, value) => {
    expect(() => TestSpans.from({ get: () => value })).toThrow(
      /^nestjs-tracing: this application exports no spans to memory\. Import TracingTestingModule\.forRoot\(\)/,
    );
  });

  it('says that the application has no TracingModule, where Nest cannot find the exporter', async () => {
    @Module({})
    class Untraced {}
    const moduleRef = await Test.createTestingModule({ imports: [Untraced] }).compile();
    try {
      expect(() => TestSpans.from(moduleRef)).toThrow(
        /^nestjs-tracing: this application has no TracingModule\. Import TracingTestingModule\.forRoot\(\)/,
      );
    } finally {
      await moduleRef.close();
    }
  });

  it('says that tracing is off when the options asked for memory but OTEL_SDK_DISABLED won', async () => {
    const previous = process.env.OTEL_SDK_DISABLED;
    process.env.OTEL_SDK_DISABLED = 'true';
    try {
      const moduleRef = await Test.createTestingModule({
        imports: [TracingModule.forRoot({ exporter: 'memory', spanProcessor: 'simple' })],
      }).compile();
      try {
        expect(() => TestSpans.from(moduleRef)).toThrow(
          /^nestjs-tracing: tracing is off in this application .*Set enabled: true beside exporter: 'memory'/,
        );
      } finally {
        await moduleRef.close();
      }
      // What the message advises works.
      const enabled = await Test.createTestingModule({
        imports: [
          TracingModule.forRoot({ enabled: true, exporter: 'memory', spanProcessor: 'simple' }),
        ],
      }).compile();
      try {
        expect(TestSpans.from(enabled).exporter).toBeInstanceOf(InMemorySpanExporter);
      } finally {
        await enabled.close();
      }
    } finally {
      if (previous === undefined) delete process.env.OTEL_SDK_DISABLED;
      else process.env.OTEL_SDK_DISABLED = previous;
    }
  });
});

describe('TracingTestingModule.forRoot()', () => {
  it('provides TestSpans that sees spans started through the global API', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [TracingTestingModule.forRoot()],
    }).compile();
    try {
      const testSpans = moduleRef.get(TestSpans);
      expect(testSpans).toBeInstanceOf(TestSpans);
      trace.getTracer('x').startSpan('through-the-api').end();
      const span = await testSpans.waitForOne('through-the-api', 1000);
      expect(testSpans.names()).toEqual(['through-the-api']);
      expect(span.resource.attributes['service.name']).toBe('test');
      // The same exporter TestSpans.from() finds in the module.
      expect(TestSpans.from(moduleRef).exporter).toBe(testSpans.exporter);
    } finally {
      await moduleRef.close();
    }
    expect(trace.getTracer('x').startSpan('after-close').isRecording()).toBe(false);
  });

  it('keeps spans in memory whatever exporter the options try to set', async () => {
    // Not assignable in a literal (the type leaves them out), but a spread object can carry them.
    const options = { serviceName: 'orders', exporter: 'none', spanProcessor: 'batch' };
    const moduleRef = await Test.createTestingModule({
      imports: [TracingTestingModule.forRoot(options)],
    }).compile();
    try {
      const testSpans = moduleRef.get(TestSpans);
      trace.getTracer('x').startSpan('kept').end();
      // A simple processor exports on end(): no waiting needed.
      expect(testSpans.names()).toEqual(['kept']);
      expect(testSpans.one('kept').resource.attributes['service.name']).toBe('orders');
    } finally {
      await moduleRef.close();
    }
  });

  it('still traces when OTEL_SDK_DISABLED=true (as CI often sets it)', async () => {
    const previous = process.env.OTEL_SDK_DISABLED;
    process.env.OTEL_SDK_DISABLED = 'true';
    try {
      const moduleRef = await Test.createTestingModule({
        imports: [TracingTestingModule.forRoot()],
      }).compile();
      try {
        const kit = moduleRef.get(TestSpans);
        trace.getTracer('x').startSpan('while-disabled-by-env').end();
        expect(kit.names()).toEqual(['while-disabled-by-env']);
      } finally {
        await moduleRef.close();
      }
    } finally {
      if (previous === undefined) delete process.env.OTEL_SDK_DISABLED;
      else process.env.OTEL_SDK_DISABLED = previous;
    }
  });
});
