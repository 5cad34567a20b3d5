import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { gunzipSync } from 'node:zlib';
import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  context,
  trace,
  type SpanStatus,
} from '@opentelemetry/api';
import { ExportResultCode, TraceState, type ExportResult } from '@opentelemetry/core';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOnSampler,
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
  type ReadableSpan,
} from '@opentelemetry/sdk-trace-base';
import type { ExportThread } from '../interfaces/tracing-module-options.interface.js';
import { OtlpProtoTraceExporter } from './otlp-proto-exporter.js';
import { EncodedSpanQueue, serializeSpans } from './otlp-span-serializer.js';
import { PooledIdGenerator } from './id-generator.js';
import { PackageTracer, SPAN_LIMITS } from './span.js';

/** OpenTelemetry's own encoding of the same spans: the reference, byte for byte. */
const reference = (spans: ReadableSpan[]) =>
  Buffer.from(ProtobufTraceSerializer.serializeRequest(spans) ?? new Uint8Array());
const ours = (spans: ReadableSpan[]) => Buffer.from(serializeSpans(spans));

/** Both ways of writing (a batch at once; span by span into the queue) give the reference. */
function expectOpenTelemetryBytes(spans: ReadableSpan[]): void {
  expect(ours(spans).equals(reference(spans))).toBe(true);
  const queue = new EncodedSpanQueue();
  for (const span of spans) queue.push(span);
  expect(Buffer.from(queue.take(spans.length).serialize()).equals(reference(spans))).toBe(true);
}

function recorder(
  options: {
    resource?: Record<string, string | number>;
    attributeCountLimit?: number;
    eventCountLimit?: number;
    linkCountLimit?: number;
  } = {},
) {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes(options.resource ?? { 'service.name': 'serializer-spec' }),
    spanLimits: {
      attributeCountLimit: options.attributeCountLimit,
      eventCountLimit: options.eventCountLimit,
      linkCountLimit: options.linkCountLimit,
    },
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  return { provider, spans: () => exporter.getFinishedSpans() };
}

const REMOTE_PARENT = trace.setSpanContext(context.active(), {
  traceId: '0af7651916cd43dd8448eb211c80319c',
  spanId: 'b7ad6b7169203331',
  traceFlags: TraceFlags.SAMPLED,
  isRemote: true,
  traceState: new TraceState('vendor=a1,other=b-2'),
});

describe('serializeSpans (OTLP/protobuf ExportTraceServiceRequest)', () => {
  it('writes the bytes OpenTelemetry writes for a typical HTTP server span', () => {
    const { provider, spans } = recorder();
    const span = provider.getTracer('nestjs-tracing', '0.1.0').startSpan(
      'GET /users/:id',
      {
        kind: SpanKind.SERVER,
        attributes: {
          'http.request.method': 'GET',
          'url.path': '/users/42',
          'url.scheme': 'http',
          'server.address': 'localhost',
          'server.port': 3000,
          'network.protocol.version': '1.1',
        },
      },
      REMOTE_PARENT,
    );
    span.setAttribute('http.route', '/users/:id');
    span.setAttribute('http.response.status_code', 200);
    span.end();
    const encoded = ours(spans());
    expect(encoded.length).toBeGreaterThan(100);
    expect(encoded.equals(reference(spans()))).toBe(true);
  });

  it('writes every attribute value type as OpenTelemetry does', () => {
    const { provider, spans } = recorder();
    const tracer = provider.getTracer('values');
    const values: Record<string, unknown> = {
      empty: '',
      ascii: 'plain',
      latin: 'café',
      cjk: '追踪',
      emoji: 'trace 🚀 done',
      ключ: 'non-ASCII key',
      asciiLong: 'x'.repeat(200),
      utf8Long: 'é'.repeat(100),
      huge: 'y'.repeat(100_000),
      true: true,
      false: false,
      zero: 0,
      int: 42,
      negative: -7,
      big: 2 ** 40 + 3,
      beyondSafe: 2 ** 60,
      minInt64: -(2 ** 63),
      maxInt64AsDouble: 2 ** 63,
      double: 3.25,
      negativeDouble: -0.5,
      nan: NaN,
      infinity: Infinity,
      strings: ['a', 'é', ''],
      numbers: [1, 2.5, -3],
      booleans: [true, false],
      withHoles: ['a', null, undefined, 'b'],
      emptyArray: [],
    };
    for (const [key, value] of Object.entries(values)) {
      tracer.startSpan(`value ${key}`, { attributes: { [key]: value as never } }).end();
    }
    tracer.startSpan('all at once', { attributes: values as never }).end();
    expect(spans()).toHaveLength(Object.keys(values).length + 1);
    expect(ours(spans()).equals(reference(spans()))).toBe(true);
  });

  it('writes values the SDK does not produce but a custom ReadableSpan may carry', () => {
    const { provider, spans } = recorder();
    provider.getTracer('custom').startSpan('base').end();
    const [base] = spans();
    const custom = Object.create(base!, {
      attributes: {
        value: {
          bytes: new Uint8Array([0, 1, 2, 255]),
          map: { nested: 'yes', count: 2, deeper: { list: [1, 'two'] } },
          nothing: null,
          fn: () => 1,
        },
      },
    }) as ReadableSpan;
    expect(ours([custom]).equals(reference([custom]))).toBe(true);
  });

  it('writes events, links, status, trace state, kinds and parents as OpenTelemetry does', () => {
    const { provider, spans } = recorder();
    const tracer = provider.getTracer('shapes', '2.0.0');
    const kinds = [
      SpanKind.INTERNAL,
      SpanKind.SERVER,
      SpanKind.CLIENT,
      SpanKind.PRODUCER,
      SpanKind.CONSUMER,
    ];
    for (const kind of kinds) {
      tracer.startSpan(`kind ${kind}`, { kind }, REMOTE_PARENT).end();
    }
    const parent = tracer.startSpan('local parent');
    const child = tracer.startSpan(
      'child',
      {
        links: [
          { context: parent.spanContext() },
          {
            context: {
              traceId: 'ABCDEF0123456789abcdef0123456789',
              spanId: '0123456789ABCDEF',
              traceFlags: TraceFlags.NONE,
              traceState: new TraceState('k=v'),
              isRemote: true,
            },
            attributes: { 'link.reason': 'fan-in', n: 3 },
          },
        ],
      },
      trace.setSpan(context.active(), parent),
    );
    child.addEvent('no attributes');
    child.addEvent('with attributes', { 'event.k': 'v', 'event.n': 1.5 });
    child.recordException(new Error('boom ✗'));
    child.setStatus({ code: SpanStatusCode.ERROR, message: 'it failed: ✗' });
    child.end();
    const ok = tracer.startSpan('ok');
    ok.setStatus({ code: SpanStatusCode.OK });
    ok.end();
    parent.end();
    expect(spans()).toHaveLength(kinds.length + 3);
    expect(ours(spans()).equals(reference(spans()))).toBe(true);
  });

  it('writes dropped counts when span limits drop attributes and events', () => {
    const { provider, spans } = recorder({ attributeCountLimit: 2, eventCountLimit: 1 });
    const span = provider.getTracer('limits').startSpan('limited', {
      attributes: { a: 1, b: 2, c: 3, d: 4 },
    });
    span.addEvent('one');
    span.addEvent('two');
    span.end();
    expect(spans()[0]!.droppedAttributesCount).toBe(2);
    expect(spans()[0]!.droppedEventsCount).toBe(1);
    expect(ours(spans()).equals(reference(spans()))).toBe(true);
  });

  it('writes the end of a span (dropped counts, status, flags) as OpenTelemetry does', () => {
    // The usual end (no events, no links, no status message, counts below 128) is written at
    // once; anything else field by field. Limits of 0 drop every event and link: counts with
    // nothing written for them.
    const { provider, spans } = recorder({
      attributeCountLimit: 1,
      eventCountLimit: 0,
      linkCountLimit: 0,
    });
    const tracer = provider.getTracer('ends');
    const linked = tracer.startSpan('linked');
    const make = (name: string, attributes: number, status?: SpanStatus, events = 0) => {
      const span = tracer.startSpan(name, {
        attributes: Object.fromEntries(Array.from({ length: attributes }, (_, i) => [`k${i}`, i])),
        links: [{ context: linked.spanContext() }, { context: linked.spanContext() }],
      });
      for (let i = 0; i < events; i++) span.addEvent(`e${i}`);
      if (status) span.setStatus(status);
      span.end();
    };
    make('plain', 1);
    make('dropped', 5, { code: SpanStatusCode.ERROR }, 3);
    make('many dropped', 200, { code: SpanStatusCode.OK }, 130);
    make('with message', 2, { code: SpanStatusCode.ERROR, message: 'went wrong' });
    make('many events dropped', 1, undefined, 128);
    linked.end();
    const [plain, dropped, many] = spans();
    expect(plain!.droppedAttributesCount).toBe(0);
    expect(dropped!.droppedAttributesCount).toBe(4);
    expect(dropped!.droppedEventsCount).toBe(3);
    expect(dropped!.droppedLinksCount).toBe(2);
    expect(many!.droppedAttributesCount).toBe(199);
    expect(many!.droppedEventsCount).toBe(130);
    expect(spans()[4]!.droppedEventsCount).toBe(128);
    expectOpenTelemetryBytes(spans());
  });

  it('groups spans by resource and scope in first-seen order, as OpenTelemetry does', () => {
    const a = recorder({ resource: { 'service.name': 'a', 'process.pid': 1 } });
    const b = recorder({ resource: { 'service.name': 'b ✓' } });
    const interleaved: ReadableSpan[] = [];
    for (let i = 0; i < 3; i++) {
      a.provider.getTracer('scope-1', '1').startSpan(`a1 ${i}`).end();
      b.provider.getTracer('scope-2').startSpan(`b2 ${i}`).end();
      a.provider.getTracer('scope-2', '2').startSpan(`a2 ${i}`).end();
    }
    const fromA = a.spans();
    const fromB = b.spans();
    for (let i = 0; i < 3; i++) interleaved.push(fromA[2 * i]!, fromB[i]!, fromA[2 * i + 1]!);
    expect(ours(interleaved).equals(reference(interleaved))).toBe(true);
  });

  it('writes a span of any size: under 128 bytes, and over 16 KiB', () => {
    const { provider, spans } = recorder({ resource: {} });
    const tracer = provider.getTracer('');
    tracer.startSpan('s').end();
    tracer.startSpan('big', { attributes: { blob: 'z'.repeat(20_000) } }).end();
    const tiny = spans()[0]!;
    expect(ours([tiny]).equals(reference([tiny]))).toBe(true);
    expect(ours(spans()).equals(reference(spans()))).toBe(true);
  });

  it('writes an empty request for no spans', () => {
    expect(ours([]).equals(reference([]))).toBe(true);
    expect(serializeSpans([])).toHaveLength(0);
  });

  it('returns bytes the next call does not overwrite', () => {
    const { provider, spans } = recorder();
    const tracer = provider.getTracer('reuse');
    tracer.startSpan('first', { attributes: { k: 'one' } }).end();
    const first = serializeSpans(spans());
    const copy = Buffer.from(first);
    tracer.startSpan('second', { attributes: { k: 'two'.repeat(50) } }).end();
    serializeSpans(spans());
    expect(Buffer.from(first).equals(copy)).toBe(true);
  });

  it('decodes ids as OpenTelemetry does, upper case and characters that are not hex included', () => {
    const { provider, spans } = recorder();
    provider.getTracer('ids').startSpan('base', {}, REMOTE_PARENT).end();
    const [base] = spans();
    const ids = [
      ['0AF7651916CD43DD8448EB211C80319C', 'B7AD6B7169203331', 'ABCDEF0123456789'],
      ['zz-7651916cd43dd8448eb211c8031 !', 'g7ad6b71692033~~', 'é7ad6b716920333\u0100'],
    ];
    for (const [traceId, spanId, parentId] of ids) {
      const custom = Object.create(base!, {
        spanContext: { value: () => ({ ...base!.spanContext(), traceId, spanId }) },
        parentSpanContext: { value: { ...base!.parentSpanContext!, spanId: parentId } },
      }) as ReadableSpan;
      expect(ours([custom]).equals(reference([custom]))).toBe(true);
    }
  });

  it('writes the ids of nested spans, ended child first, as OpenTelemetry does', () => {
    // The writer copies a repeated trace id, and a span id equal to the last parent id, instead
    // of decoding them again: interleaved traces, links and look-alike ids must not fool it.
    const { provider, spans } = recorder();
    const tracer = provider.getTracer('nested');
    const request = (parent = context.active()) => {
      const server = tracer.startSpan('server', { kind: SpanKind.SERVER }, parent);
      const inServer = trace.setSpan(context.active(), server);
      const a = tracer.startSpan('a', {}, inServer);
      const b = tracer.startSpan(
        'b',
        { links: [{ context: server.spanContext() }] },
        trace.setSpan(inServer, a),
      );
      return [b, a, server];
    };
    const first = request();
    const second = request(REMOTE_PARENT);
    for (let i = 0; i < 3; i++) {
      first[i]!.end();
      second[i]!.end();
    }
    for (const span of request()) span.end();
    const [base] = spans();
    // Same length, other content: the id after a cached one must be decoded again.
    const lookAlike = Object.create(base!, {
      spanContext: {
        value: () => ({
          ...base!.spanContext(),
          traceId: base!.spanContext().traceId.replace(/^./, (c) => (c === '0' ? '1' : '0')),
        }),
      },
    }) as ReadableSpan;
    const all = [...spans(), lookAlike, base!];
    expect(new Set(all.map((span) => span.spanContext().traceId)).size).toBe(4);

    expectOpenTelemetryBytes(all);
  });

  it("copies the ids the package's generator drew, across pools, as OpenTelemetry writes them", () => {
    // The package's tracer keeps where its generator drew each id; the writer copies those bytes
    // (a word at a time) instead of decoding hex. Ids from elsewhere (a remote parent's trace id)
    // are decoded. A generator that fills its pools with a known pattern makes a byte in the wrong
    // place show, and spans drawn just before and after a new pool put a span's ids in two pools.
    class PatternIds extends PooledIdGenerator {
      private fills = 0;
      protected override fill(pool: Buffer): void {
        const fill = ++this.fills;
        for (let i = 0; i < pool.length; i++) pool[i] = (i * 31 + fill * 17 + (i >> 8)) & 0xff;
      }
    }
    const idGenerator = new PatternIds();
    const { tracer, exporter } = pooledTracer(idGenerator);
    const request = (parent = ROOT_CONTEXT) => {
      const server = tracer.startSpan('server', { kind: SpanKind.SERVER }, parent);
      const inServer = trace.setSpan(ROOT_CONTEXT, server);
      const a = tracer.startSpan('a', {}, inServer);
      const b = tracer.startSpan(
        'b',
        { links: [{ context: server.spanContext() }] },
        trace.setSpan(inServer, a),
      );
      for (const span of [b, a, server]) span.end();
    };
    request();
    request(REMOTE_PARENT);
    // 64 KiB a pool: the next root span's span id is the pool's last 8 bytes, its trace id the
    // new pool's first 16.
    const first = idGenerator.pool;
    while (idGenerator.lastAt < first.length - 16) idGenerator.generateSpanId();
    request();
    expect(idGenerator.pool).not.toBe(first);
    request();

    const spans = exporter.getFinishedSpans();
    expect(spans).toHaveLength(12);
    const traceIds = new Set(spans.map((span) => span.spanContext().traceId));
    expect(traceIds.size).toBe(4);
    expect(traceIds).toContain(trace.getSpanContext(REMOTE_PARENT)!.traceId);
    expectOpenTelemetryBytes(spans);
    // What OpenTelemetry writes: the hex of the bytes that were drawn (the first server span's
    // span id, then its trace id).
    expect(spans[2]!.name).toBe('server');
    expect(spans[2]!.spanContext().spanId).toBe(first.toString('hex', 0, 8));
    expect(spans[2]!.spanContext().traceId).toBe(first.toString('hex', 8, 24));
    // Where the bytes are is the tracer's and the writer's business: a span context shows only
    // its SpanContext fields (a pool in JSON or in a test's toEqual would be 64 KiB of noise).
    expect(Object.keys(spans[2]!.spanContext())).toEqual([
      'traceId',
      'spanId',
      'traceFlags',
      'traceState',
    ]);
  });

  it("checks a remote parent's ids once, keeps them decoded, and writes them as OpenTelemetry does", () => {
    const { tracer, exporter } = pooledTracer(new PooledIdGenerator());
    const TRACE = '0AF7651916CD43DD8448eb211c80319c'; // either case, as OpenTelemetry accepts
    const SPAN = 'B7AD6B7169203331';
    const under = (traceId: string, spanId: string) =>
      tracer.startSpan(
        'child',
        { kind: SpanKind.SERVER },
        trace.setSpanContext(ROOT_CONTEXT, {
          traceId,
          spanId,
          traceFlags: TraceFlags.SAMPLED,
          isRemote: true,
          traceState: new TraceState('vendor=a1'),
        }),
      );
    const child = under(TRACE, SPAN);
    const invalid = [
      under('0'.repeat(32), SPAN),
      under(TRACE, '0'.repeat(16)),
      under(TRACE.replace('A', 'g'), SPAN),
      under(TRACE, SPAN.replace('B', '-')),
      under(TRACE.slice(1), SPAN),
      under(TRACE, `${SPAN}0`),
      under(TRACE.replace('A', '\u0100'), SPAN),
    ];
    for (const span of [child, ...invalid]) span.end();

    const spans = exporter.getFinishedSpans();
    // Continued in lower case, as W3C Trace Context writes ids.
    expect(spans[0]!.spanContext().traceId).toBe(TRACE.toLowerCase());
    expect(spans[0]!.parentSpanContext).toMatchObject({
      traceId: TRACE.toLowerCase(),
      spanId: SPAN.toLowerCase(),
      traceFlags: TraceFlags.SAMPLED,
      isRemote: true,
    });
    expect(spans[0]!.parentSpanContext?.traceState?.get('vendor')).toBe('a1');
    // Invalid ids are no parent: each of those spans starts a trace of its own.
    for (const span of spans.slice(1)) {
      expect(span.parentSpanContext).toBeUndefined();
      expect(span.spanContext().traceId).toMatch(/^[0-9a-f]{32}$/);
      expect(span.spanContext().traceId.toLowerCase()).not.toBe(TRACE.toLowerCase());
    }
    expectOpenTelemetryBytes(spans);
  });

  it('writes the ids of a span whose pool was filled again before it ended', () => {
    // Pools take turns and are refilled in place: a span that outlives four pools' ids keeps its
    // ids (strings), and the writer must then decode them instead of copying the new bytes.
    const idGenerator = new PooledIdGenerator();
    const { tracer, exporter } = pooledTracer(idGenerator);
    const long = tracer.startSpan('long', { kind: SpanKind.SERVER });
    const child = tracer.startSpan('child', {}, trace.setSpan(ROOT_CONTEXT, long));
    const words = idGenerator.words;
    const fills = words.fills;
    while (words.fills === fills) idGenerator.generateSpanId();
    const late = tracer.startSpan('late', {}, trace.setSpan(ROOT_CONTEXT, long));
    for (const span of [late, child, long]) span.end();

    const spans = exporter.getFinishedSpans();
    expect(spans.map((span) => span.name)).toEqual(['late', 'child', 'long']);
    expect(new Set(spans.map((span) => span.spanContext().traceId)).size).toBe(1);
    expectOpenTelemetryBytes(spans);
  });

  it('writes attribute values that repeat from span to span as OpenTelemetry does', () => {
    // A primitive written under the same name twice in a row is kept with its encoded KeyValue
    // and copied while it stays equal: every change, and every value that must not be kept,
    // has to be written afresh, in span, event and link attributes alike.
    const { provider, spans } = recorder();
    const tracer = provider.getTracer('repeats');
    const long = 'x'.repeat(300);
    const series: Record<string, unknown>[] = [
      { s: 'a', n: 3000, b: true, f: 0.5, u: 'é', l: long, nan: NaN, z: -0, arr: ['a'] },
      { s: 'a', n: 3000, b: true, f: 0.5, u: 'é', l: long, nan: NaN, z: -0, arr: ['a'] },
      { s: 'a', n: 3000, b: true, f: 0.5, u: 'é', l: long, nan: NaN, z: 0, arr: ['b'] },
      { s: 'b', n: 3001, b: false, f: 1.5, u: 'ü', l: `${long}y`, nan: NaN, z: 0, arr: ['b'] },
      { s: 'a', n: 3000, b: true, f: 0.5, u: 'é', l: long, nan: NaN, z: 0, arr: ['b'] },
      // The same content as a string built at run time: kept by value, not by identity.
      { s: ['a'].join(''), n: 3000, b: true, f: 0.5, u: 'é', l: long, nan: NaN, z: 0 },
      { n: 'a', s: 3000, b: 'true', f: '0.5' },
      { s: 'a', n: 3000, b: true, f: 0.5 },
      { s: 'a', n: 3000, b: true, f: 0.5 },
    ];
    let previous: ReturnType<typeof tracer.startSpan> | undefined;
    for (const attributes of series) {
      const span = tracer.startSpan('repeat', {
        attributes: attributes as Record<string, string>,
        links: previous ? [{ context: previous.spanContext(), attributes: { s: 'a', n: 1 } }] : [],
      });
      span.addEvent('event', { s: attributes.s as string, n: 3000 });
      span.end();
      previous = span;
    }
    const all = spans();
    expect(all).toHaveLength(series.length);
    expectOpenTelemetryBytes(all);
    // One span a request, as the batch processor's queue writes them.
    for (const span of all) expect(ours([span]).equals(reference([span]))).toBe(true);
  });

  it('writes attribute names beyond the cached ones the same way', () => {
    const { provider, spans } = recorder();
    const tracer = provider.getTracer('many-keys');
    for (let i = 0; i < 3000; i++) tracer.startSpan('k', { attributes: { [`key.${i}`]: i } }).end();
    expect(ours(spans()).equals(reference(spans()))).toBe(true);
  });
});

describe('OtlpProtoTraceExporter', () => {
  let server: Server;
  let received: Array<{ url: string; headers: IncomingHttpHeaders; body: Buffer }>;
  let endpoint: string;
  const saved = { ...process.env };

  beforeEach(async () => {
    received = [];
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        received.push({ url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks) });
        res.writeHead(200, { 'content-type': 'application/x-protobuf' });
        res.end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });

  afterEach(async () => {
    process.env = { ...saved };
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  const exportWith = async (
    env: Record<string, string>,
    spans: ReadableSpan[],
    thread: ExportThread = 'worker',
  ) => {
    Object.assign(process.env, env);
    const exporter = new OtlpProtoTraceExporter(thread);
    const result = await new Promise<ExportResult>((resolve) => exporter.export(spans, resolve));
    await exporter.shutdown();
    return result;
  };

  it.each<ExportThread>(['worker', 'main'])(
    "posts OpenTelemetry's bytes to the endpoint, with the OTEL_EXPORTER_OTLP_* settings (thread: %s)",
    async (thread) => {
      const { provider, spans } = recorder();
      provider
        .getTracer('exporter')
        .startSpan('exported', { attributes: { 'http.request.method': 'GET' } })
        .end();
      const result = await exportWith(
        {
          OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
          OTEL_EXPORTER_OTLP_HEADERS: 'api-key=secret',
          OTEL_EXPORTER_OTLP_COMPRESSION: 'gzip',
        },
        spans(),
        thread,
      );
      expect(result.code).toBe(ExportResultCode.SUCCESS);
      expect(received).toHaveLength(1);
      const [request] = received;
      expect(request!.url).toBe('/v1/traces');
      expect(request!.headers['content-type']).toBe('application/x-protobuf');
      expect(request!.headers['api-key']).toBe('secret');
      expect(request!.headers['content-encoding']).toBe('gzip');
      expect(gunzipSync(request!.body).equals(reference(spans()))).toBe(true);
    },
  );

  it('reports a failed export when the collector refuses the request', async () => {
    server.removeAllListeners('request');
    server.on('request', (_req, res) => {
      res.writeHead(400);
      res.end();
    });
    const { provider, spans } = recorder();
    provider.getTracer('exporter').startSpan('refused').end();
    const result = await exportWith(
      { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${endpoint}/x` },
      spans(),
    );
    expect(result.code).toBe(ExportResultCode.FAILED);
  });

  it('fails an export after shutdown, sending nothing', async () => {
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = endpoint;
    const exporter = new OtlpProtoTraceExporter();
    await exporter.shutdown();
    const { provider, spans } = recorder();
    provider.getTracer('exporter').startSpan('late').end();
    const result = await new Promise<ExportResult>((resolve) => exporter.export(spans(), resolve));
    expect(result.code).toBe(ExportResultCode.FAILED);
    expect(result.error?.message).toMatch(/shut down/);
    expect(received).toHaveLength(0);
  });
});

/** The package's tracer on `idGenerator`, every span exported at once to the returned exporter. */
function pooledTracer(idGenerator: PooledIdGenerator): {
  tracer: PackageTracer;
  exporter: InMemorySpanExporter;
} {
  const exporter = new InMemorySpanExporter();
  const tracer = new PackageTracer(
    { name: 'pooled', version: '1.0.0' },
    {
      resource: resourceFromAttributes({ 'service.name': 'serializer-spec' }),
      sampler: new AlwaysOnSampler(),
      idGenerator,
      processor: new SimpleSpanProcessor(exporter),
      spanLimits: SPAN_LIMITS,
    },
  );
  return { tracer, exporter };
}
