import { jest } from '@jest/globals';
import {
  INVALID_SPAN_CONTEXT,
  ROOT_CONTEXT,
  baggageEntryMetadataFromString,
  SpanKind,
  TraceFlags,
  context,
  createContextKey,
  defaultTextMapGetter,
  defaultTextMapSetter,
  propagation,
  trace,
  type Span,
  type Context,
  type SpanContext,
  type TextMapPropagator,
} from '@opentelemetry/api';
import type { ExportResult } from '@opentelemetry/core';
import { OTLPExporterError } from '@opentelemetry/otlp-exporter-base';
import { OTLPTraceExporter as OTLPGrpcTraceExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { OTLPTraceExporter as OTLPJsonTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { EncodingBatchSpanProcessor } from './encoding-batch-processor.js';
import { PooledIdGenerator } from './id-generator.js';
import { PackageSpan, PackageTracer, SPAN_LIMITS } from './span.js';
import { getTracer, SHARED_SDK, startSpanWith } from './tracer.js';
import { TRACER_NAME, TRACER_VERSION } from '../tracing.constants.js';
import { OtlpProtoTraceExporter } from './otlp-proto-exporter.js';
import { ZipkinExporter } from '@opentelemetry/exporter-zipkin';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { stat } from 'node:fs';
import {
  PromiseContextManager,
  asyncLocalStorageUsesPromiseHooks,
} from './promise-context-manager.js';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ConsoleSpanExporter,
  InMemorySpanExporter,
  NoopSpanProcessor,
  ParentBasedSampler,
  SamplingDecision,
  SimpleSpanProcessor,
  TraceIdRatioBasedSampler,
  type IdGenerator,
  type ReadableSpan,
  type Sampler,
  type SpanExporter,
} from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import type { TracingModuleOptions } from '../interfaces/tracing-module-options.interface.js';
import { TracingConfigError, resolveTracingConfig, type SamplerSpec } from './tracing-config.js';
import {
  TracingSdk,
  createExporter,
  createPropagator,
  createResource,
  createSampler,
  createSpanProcessors,
  type SdkLogger,
} from './tracing-sdk.js';

const TRACE_ID = 'd4cda95b652f4a1592b449d5929fda1b';
const SPAN_ID = '6e0c63257de34c92';
const SAMPLED_PARENT: SpanContext = {
  traceId: TRACE_ID,
  spanId: SPAN_ID,
  traceFlags: TraceFlags.SAMPLED,
  isRemote: true,
};

const config = (options: TracingModuleOptions = {}, env: Record<string, string> = {}) =>
  resolveTracingConfig(options, env);

function resetGlobals(): void {
  trace.disable();
  context.disable();
  propagation.disable();
}

function makeLogger(): SdkLogger & {
  log: jest.Mock<(message: string) => void>;
  warn: jest.Mock<(message: string) => void>;
} {
  return { log: jest.fn<(message: string) => void>(), warn: jest.fn<(message: string) => void>() };
}

/** An in-memory exporter whose shutdown keeps the spans, so a test can read what shutdown flushed. */
class KeepingExporter extends InMemorySpanExporter {
  shutdowns = 0;
  override shutdown(): Promise<void> {
    this.shutdowns += 1;
    return Promise.resolve();
  }
}

/** Accepts spans and does not report back until released: an exporter stuck on a dead collector. */
class StuckExporter implements SpanExporter {
  received: ReadableSpan[] = [];
  private readonly pending: Array<(result: ExportResult) => void> = [];
  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.received.push(...spans);
    this.pending.push(done);
  }
  /** Lets the processor's own export timer go, so the test leaves no timer behind. */
  release(): void {
    for (const done of this.pending.splice(0)) done({ code: 0 });
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/** Reports success after a delay, like a remote collector. */
class SlowExporter implements SpanExporter {
  exported: ReadableSpan[] = [];
  constructor(private readonly delayMs: number) {}
  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    setTimeout(() => {
      this.exported.push(...spans);
      done({ code: 0 });
    }, this.delayMs);
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/** Reports failure for every export. */
class FailingExporter implements SpanExporter {
  export(_spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    done({ code: 1, error: new Error('collector said 503') });
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

function notFound(specifier: string): Error & { code: string } {
  const error = new Error(`Cannot find package '${specifier}' imported from tracing-sdk.js`);
  return Object.assign(error, { code: 'ERR_MODULE_NOT_FOUND' });
}

afterEach(resetGlobals);

describe('createExporter', () => {
  const created: SpanExporter[] = [];
  afterEach(async () => {
    await Promise.all(created.splice(0).map((e) => e.shutdown()));
  });
  const make = async (
    name: Parameters<typeof createExporter>[0],
    otlpProtocol: 'http/protobuf' | 'http/json' | 'grpc' = 'http/protobuf',
  ) => {
    const exporter = await createExporter(name, { otlpProtocol, exportThread: 'worker' });
    if (exporter) created.push(exporter);
    return exporter;
  };

  it.each([
    ['http/protobuf', OtlpProtoTraceExporter],
    ['http/json', OTLPJsonTraceExporter],
    ['grpc', OTLPGrpcTraceExporter],
  ] as const)("builds 'otlp' over %s", async (protocol, type) => {
    const exporter = await make('otlp', protocol);
    expect(exporter).toBeInstanceOf(type);
  });

  it("builds 'otlp-http-json' and 'otlp-grpc' whatever the protocol setting", async () => {
    expect(await make('otlp-http-json', 'grpc')).toBeInstanceOf(OTLPJsonTraceExporter);
    expect(await make('otlp-grpc', 'http/protobuf')).toBeInstanceOf(OTLPGrpcTraceExporter);
  });

  it.each([
    ['zipkin', ZipkinExporter],
    ['console', ConsoleSpanExporter],
    ['memory', InMemorySpanExporter],
  ] as const)('builds %p', async (name, type) => {
    expect(await make(name)).toBeInstanceOf(type);
  });

  it("builds a new exporter each call (two modules never share one 'memory' exporter)", async () => {
    expect(await make('memory')).not.toBe(await make('memory'));
  });

  it("returns undefined for 'none'", async () => {
    expect(await make('none')).toBeUndefined();
  });

  describe('when an optional package is not installed', () => {
    afterEach(() => {
      jest.unstable_unmockModule('@opentelemetry/exporter-zipkin');
      jest.unstable_unmockModule('@opentelemetry/exporter-trace-otlp-grpc');
      jest.unstable_unmockModule('@opentelemetry/propagator-b3');
      jest.unstable_unmockModule('@opentelemetry/propagator-jaeger');
    });

    it("names the package to install for 'zipkin'", async () => {
      jest.unstable_mockModule('@opentelemetry/exporter-zipkin', (): never => {
        throw notFound('@opentelemetry/exporter-zipkin');
      });
      const attempt = createExporter('zipkin', {
        otlpProtocol: 'http/protobuf',
        exportThread: 'worker',
      });
      await expect(attempt).rejects.toThrow(TracingConfigError);
      await expect(
        createExporter('zipkin', { otlpProtocol: 'http/protobuf', exportThread: 'worker' }),
      ).rejects.toThrow(
        /The 'zipkin' exporter needs the optional package @opentelemetry\/exporter-zipkin, which is not installed: install @opentelemetry\/exporter-zipkin \(npm install @opentelemetry\/exporter-zipkin@\^2\.12\.0\)\./,
      );
    });

    it("names the package to install for 'otlp' over grpc", async () => {
      jest.unstable_mockModule('@opentelemetry/exporter-trace-otlp-grpc', (): never => {
        throw notFound('@opentelemetry/exporter-trace-otlp-grpc');
      });
      await expect(
        createExporter('otlp', { otlpProtocol: 'grpc', exportThread: 'worker' }),
      ).rejects.toThrow(
        /The 'otlp-grpc' exporter needs .*install @opentelemetry\/exporter-trace-otlp-grpc \(npm install @opentelemetry\/exporter-trace-otlp-grpc@\^0\.223\.0\)/,
      );
    });

    it.each([
      ['b3', '@opentelemetry/propagator-b3'],
      ['b3multi', '@opentelemetry/propagator-b3'],
      ['jaeger', '@opentelemetry/propagator-jaeger'],
    ] as const)("names the package to install for the '%s' propagator", async (name, pkg) => {
      jest.unstable_mockModule(pkg, (): never => {
        throw notFound(pkg);
      });
      await expect(createPropagator(['tracecontext', name])).rejects.toThrow(
        new RegExp(`The '${name}' propagator needs .*install ${pkg.replace('/', '\\/')} \\(npm`),
      );
    });

    it('rethrows any other load error unchanged', async () => {
      const broken = new Error('SyntaxError in a broken install');
      jest.unstable_mockModule('@opentelemetry/exporter-zipkin', (): never => {
        throw broken;
      });
      await expect(
        createExporter('zipkin', { otlpProtocol: 'http/protobuf', exportThread: 'worker' }),
      ).rejects.toBe(broken);
    });

    it('loads the real package again once it is there', async () => {
      expect(await make('zipkin')).toBeInstanceOf(ZipkinExporter);
    });
  });
});

describe('createPropagator', () => {
  const sampledContext = trace.setSpanContext(ROOT_CONTEXT, SAMPLED_PARENT);

  function inject(propagator: TextMapPropagator, ctx: Context = sampledContext) {
    const carrier: Record<string, string> = {};
    propagator.inject(ctx, carrier, defaultTextMapSetter);
    return carrier;
  }

  function extract(propagator: TextMapPropagator, carrier: Record<string, string>) {
    return trace.getSpanContext(propagator.extract(ROOT_CONTEXT, carrier, defaultTextMapGetter));
  }

  it('tracecontext writes and reads traceparent', async () => {
    const propagator = await createPropagator(['tracecontext']);
    const carrier = inject(propagator);
    expect(carrier).toEqual({ traceparent: `00-${TRACE_ID}-${SPAN_ID}-01` });
    expect(extract(propagator, carrier)).toEqual(SAMPLED_PARENT);
    expect(propagator.fields()).toEqual(['traceparent', 'tracestate']);
  });

  it('baggage writes and reads the baggage header', async () => {
    const propagator = await createPropagator(['baggage']);
    const ctx = propagation.setBaggage(
      ROOT_CONTEXT,
      propagation.createBaggage({ 'user.id': { value: 'alice' } }),
    );
    const carrier = inject(propagator, ctx);
    expect(carrier).toEqual({ baggage: 'user.id=alice' });
    const extracted = propagator.extract(ROOT_CONTEXT, carrier, defaultTextMapGetter);
    expect(propagation.getBaggage(extracted)?.getEntry('user.id')?.value).toBe('alice');
  });

  describe('baggage it cannot write', () => {
    const entries = {
      tenant: { value: 'acme', metadata: baggageEntryMetadataFromString('origin=api') },
      // Properties go out unencoded: a line break, a character beyond ASCII, a comma.
      broken: { value: 'b', metadata: baggageEntryMetadataFromString('p\nq') },
      wide: { value: 'w', metadata: baggageEntryMetadataFromString('p\u4e2d') },
      comma: { value: 'c', metadata: baggageEntryMetadataFromString('p,q=1') },
      // No header name, for Jaeger's header per key.
      'with space': { value: 's' },
      // A lone surrogate, which encodeURIComponent refuses.
      lone: { value: 'x\ud800' },
      '\udc00': { value: 'k' },
    };
    const ctx = propagation.setBaggage(ROOT_CONTEXT, propagation.createBaggage(entries));

    it('w3c: sends the rest, an entry without properties it cannot write', async () => {
      const propagator = await createPropagator(['baggage']);
      const carrier = inject(propagator, ctx);
      expect(carrier.baggage?.split(',')).toEqual([
        'tenant=acme;origin=api',
        'broken=b',
        'wide=w',
        'comma=c',
        'with%20space=s',
      ]);
      // The application's own context keeps what it set.
      expect(propagation.getBaggage(ctx)?.getAllEntries()).toHaveLength(7);
    });

    it('jaeger: sends a header for every key that is a header name', async () => {
      const propagator = await createPropagator(['jaeger']);
      const carrier = inject(propagator, trace.setSpanContext(ctx, SAMPLED_PARENT));
      expect(Object.keys(carrier).sort()).toEqual([
        'uber-trace-id',
        'uberctx-broken',
        'uberctx-comma',
        'uberctx-tenant',
        'uberctx-wide',
      ]);
    });

    it('leaves a context it can write as it is', async () => {
      const propagator = await createPropagator(['baggage']);
      const fine = propagation.setBaggage(
        ROOT_CONTEXT,
        propagation.createBaggage({
          a: { value: 'ü 1', metadata: baggageEntryMetadataFromString('p=1;q') },
        }),
      );
      expect(inject(propagator, fine)).toEqual({ baggage: 'a=%C3%BC%201;p=1;q' });
    });
  });

  it("b3 writes the single 'b3' header and reads it", async () => {
    const propagator = await createPropagator(['b3']);
    const carrier = inject(propagator);
    expect(carrier).toEqual({ b3: `${TRACE_ID}-${SPAN_ID}-1` });
    expect(extract(propagator, carrier)).toMatchObject({ traceId: TRACE_ID, spanId: SPAN_ID });
  });

  it('b3multi writes the x-b3-* headers and reads them', async () => {
    const propagator = await createPropagator(['b3multi']);
    const carrier = inject(propagator);
    expect(carrier).toEqual({
      'x-b3-traceid': TRACE_ID,
      'x-b3-spanid': SPAN_ID,
      'x-b3-sampled': '1',
    });
    expect(extract(propagator, carrier)).toMatchObject({
      traceId: TRACE_ID,
      spanId: SPAN_ID,
      traceFlags: TraceFlags.SAMPLED,
    });
  });

  it('jaeger writes and reads uber-trace-id', async () => {
    const propagator = await createPropagator(['jaeger']);
    const carrier = inject(propagator);
    expect(carrier).toEqual({ 'uber-trace-id': `${TRACE_ID}:${SPAN_ID}:0:01` });
    expect(extract(propagator, carrier)).toMatchObject({ traceId: TRACE_ID, spanId: SPAN_ID });
  });

  it.each([['tracecontext'], ['b3'], ['b3multi'], ['jaeger']] as const)(
    '%s writes no context for an invalid span context (a call outside any span), baggage still',
    async (name) => {
      const propagator = await createPropagator([name, 'baggage']);
      const ctx = propagation.setBaggage(
        trace.setSpanContext(ROOT_CONTEXT, INVALID_SPAN_CONTEXT),
        propagation.createBaggage({ tenant: { value: 'acme' } }),
      );
      const carrier: Record<string, string> = {};
      propagator.inject(ctx, carrier, defaultTextMapSetter);
      expect(
        Object.keys(carrier).filter((k) => k !== 'baggage' && !k.startsWith('uberctx-')),
      ).toEqual([]);
      expect(carrier.baggage).toBe('tenant=acme');
      if (name === 'jaeger') expect(carrier['uberctx-tenant']).toBe('acme');
    },
  );

  it('none writes and reads nothing', async () => {
    const propagator = await createPropagator(['none']);
    expect(inject(propagator)).toEqual({});
    expect(propagator.fields()).toEqual([]);
    expect(extract(propagator, { traceparent: `00-${TRACE_ID}-${SPAN_ID}-01` })).toBeUndefined();
  });

  it('combines several, writing every header', async () => {
    const propagator = await createPropagator(['tracecontext', 'b3multi', 'jaeger']);
    expect(Object.keys(inject(propagator)).sort()).toEqual([
      'traceparent',
      'uber-trace-id',
      'x-b3-sampled',
      'x-b3-spanid',
      'x-b3-traceid',
    ]);
  });

  it('uses a TextMapPropagator instance as given', async () => {
    const custom: TextMapPropagator = {
      inject: (_ctx, carrier, setter) => setter.set(carrier, 'x-custom', 'yes'),
      extract: (ctx) => ctx,
      fields: () => ['x-custom'],
    };
    const propagator = await createPropagator([custom, 'tracecontext']);
    expect(inject(propagator)).toEqual({
      'x-custom': 'yes',
      traceparent: `00-${TRACE_ID}-${SPAN_ID}-01`,
    });
    expect(propagator.fields()).toEqual(['x-custom', 'traceparent', 'tracestate']);
  });
});

describe('createSampler', () => {
  const decide = (sampler: Sampler, parent: Context = ROOT_CONTEXT) =>
    sampler.shouldSample(parent, TRACE_ID, 'op', SpanKind.INTERNAL, {}, []).decision;
  const sampledParent = trace.setSpanContext(ROOT_CONTEXT, SAMPLED_PARENT);
  const unsampledParent = trace.setSpanContext(ROOT_CONTEXT, {
    ...SAMPLED_PARENT,
    traceFlags: TraceFlags.NONE,
  });
  const spec = (type: Exclude<SamplerSpec['type'], 'instance'>, ratio = 1): SamplerSpec => ({
    type,
    ratio,
  });

  it('returns an instance as is', () => {
    const sampler = new AlwaysOffSampler();
    expect(createSampler({ type: 'instance', sampler })).toBe(sampler);
  });

  it('always_on samples even under an unsampled parent', () => {
    const sampler = createSampler(spec('always_on'));
    expect(sampler).toBeInstanceOf(AlwaysOnSampler);
    expect(decide(sampler, unsampledParent)).toBe(SamplingDecision.RECORD_AND_SAMPLED);
  });

  it('always_off drops even under a sampled parent', () => {
    const sampler = createSampler(spec('always_off'));
    expect(sampler).toBeInstanceOf(AlwaysOffSampler);
    expect(decide(sampler, sampledParent)).toBe(SamplingDecision.NOT_RECORD);
  });

  it('traceidratio uses the ratio and ignores the parent', () => {
    const sampler = createSampler(spec('traceidratio', 0.25));
    expect(sampler).toBeInstanceOf(TraceIdRatioBasedSampler);
    expect(sampler.toString()).toBe('TraceIdRatioBased{0.25}');
    expect(decide(createSampler(spec('traceidratio', 0)), sampledParent)).toBe(
      SamplingDecision.NOT_RECORD,
    );
    expect(decide(createSampler(spec('traceidratio', 1)), unsampledParent)).toBe(
      SamplingDecision.RECORD_AND_SAMPLED,
    );
  });

  it('parentbased_always_on samples roots and follows the parent', () => {
    const sampler = createSampler(spec('parentbased_always_on'));
    expect(sampler).toBeInstanceOf(ParentBasedSampler);
    expect(sampler.toString()).toMatch(/^ParentBased\{root=AlwaysOnSampler,/);
    expect(decide(sampler)).toBe(SamplingDecision.RECORD_AND_SAMPLED);
    expect(decide(sampler, unsampledParent)).toBe(SamplingDecision.NOT_RECORD);
  });

  it('parentbased_always_off drops roots and follows the parent', () => {
    const sampler = createSampler(spec('parentbased_always_off'));
    expect(sampler.toString()).toMatch(/^ParentBased\{root=AlwaysOffSampler,/);
    expect(decide(sampler)).toBe(SamplingDecision.NOT_RECORD);
    expect(decide(sampler, sampledParent)).toBe(SamplingDecision.RECORD_AND_SAMPLED);
  });

  it('parentbased_traceidratio applies the ratio to roots only', () => {
    const sampler = createSampler(spec('parentbased_traceidratio', 0));
    expect(sampler.toString()).toMatch(/^ParentBased\{root=TraceIdRatioBased\{0\},/);
    expect(decide(sampler)).toBe(SamplingDecision.NOT_RECORD);
    expect(decide(sampler, sampledParent)).toBe(SamplingDecision.RECORD_AND_SAMPLED);
  });

  it("parent-based samplers follow a parent span of the package's own tracer as it is", () => {
    // The package's ids are valid when it makes them, so they are not checked again. Ids that
    // OpenTelemetry's check rejects (made here on purpose) show it: ParentBasedSampler takes
    // such a parent for none and asks its root; these pass the parent's decision on.
    const zeroIds: IdGenerator = {
      generateTraceId: () => '0'.repeat(32),
      generateSpanId: () => '0'.repeat(16),
    };
    const ownParent = (sampler: Sampler) => {
      const tracer = new PackageTracer(
        { name: 'own' },
        {
          resource: createResource(config()),
          sampler,
          idGenerator: zeroIds,
          processor: new NoopSpanProcessor(),
          spanLimits: SPAN_LIMITS,
        },
      );
      return trace.setSpan(ROOT_CONTEXT, tracer.startSpan('parent'));
    };
    const sampled = ownParent(new AlwaysOnSampler());
    const unsampled = ownParent(new AlwaysOffSampler());

    expect(decide(createSampler(spec('parentbased_always_off')), sampled)).toBe(
      SamplingDecision.RECORD_AND_SAMPLED,
    );
    expect(decide(createSampler(spec('parentbased_always_on')), unsampled)).toBe(
      SamplingDecision.NOT_RECORD,
    );
    expect(decide(createSampler(spec('parentbased_traceidratio', 0)), sampled)).toBe(
      SamplingDecision.RECORD_AND_SAMPLED,
    );
    // What the check would have done with these ids.
    expect(decide(new ParentBasedSampler({ root: new AlwaysOffSampler() }), sampled)).toBe(
      SamplingDecision.NOT_RECORD,
    );
    expect(decide(new ParentBasedSampler({ root: new AlwaysOnSampler() }), unsampled)).toBe(
      SamplingDecision.RECORD_AND_SAMPLED,
    );
  });

  it("parent-based samplers follow a remote parent the package's tracer checked, checking it once", () => {
    // A remote parent whose ids count their reads: the tracer checks them (one read of each) and
    // takes the trace id; ParentBasedSampler would read both again for a check of its own.
    const counting = (traceFlags: number, traceId = TRACE_ID) => {
      const reads = { traceId: 0, spanId: 0 };
      const spanContext: SpanContext = {
        get traceId() {
          reads.traceId++;
          return traceId;
        },
        get spanId() {
          reads.spanId++;
          return SPAN_ID;
        },
        traceFlags,
        isRemote: true,
      };
      return { reads, parent: trace.setSpanContext(ROOT_CONTEXT, spanContext) };
    };
    const tracerWith = (sampler: Sampler) =>
      new PackageTracer(
        { name: 'remote' },
        {
          resource: createResource(config()),
          sampler,
          idGenerator: new PooledIdGenerator(),
          processor: new NoopSpanProcessor(),
          spanLimits: SPAN_LIMITS,
        },
      );

    const childUnder = (
      type: 'parentbased_always_on' | 'parentbased_always_off',
      parent: Context,
    ) => tracerWith(createSampler(spec(type))).startSpan('child', {}, parent);

    const sampled = counting(TraceFlags.SAMPLED);
    const span = childUnder('parentbased_always_off', sampled.parent);
    expect(span.isRecording()).toBe(true);
    expect(span.spanContext().traceId).toBe(TRACE_ID);
    expect((span as PackageSpan).parentSpanContext?.spanId).toBe(SPAN_ID);
    // The tracer's check only: the span keeps the ids it checked as its parent.
    expect(sampled.reads.spanId).toBe(1);
    const unsampled = counting(TraceFlags.NONE);
    const dropped = childUnder('parentbased_always_on', unsampled.parent);
    expect(dropped.isRecording()).toBe(false);
    expect(dropped.spanContext().traceId).toBe(TRACE_ID);
    expect(unsampled.reads.spanId).toBe(1);

    // Asked by anyone else, even about the same parent, the sampler checks: invalid ids are no
    // parent, and the root decides.
    const invalid = counting(TraceFlags.SAMPLED, '0'.repeat(32));
    const sampler = createSampler(spec('parentbased_always_off'));
    expect(decide(sampler, sampled.parent)).toBe(SamplingDecision.RECORD_AND_SAMPLED);
    expect(sampled.reads.spanId).toBe(2); // the tracer's check before, the sampler's own now
    expect(decide(sampler, invalid.parent)).toBe(SamplingDecision.NOT_RECORD);
    const root = tracerWith(sampler).startSpan('root', {}, invalid.parent);
    expect(root.isRecording()).toBe(false);
    expect(root.spanContext().traceId).not.toBe('0'.repeat(32));
  });

  it('{ ratio } from the options ends up as parent-based ratio sampling', () => {
    const sampler = createSampler(config({ sampler: { ratio: 0.5 } }).sampler);
    expect(sampler.toString()).toMatch(/^ParentBased\{root=TraceIdRatioBased\{0\.5\},/);
  });
});

describe('createResource', () => {
  const KEYS = ['OTEL_RESOURCE_ATTRIBUTES', 'OTEL_SERVICE_NAME'] as const;

  async function withProcessEnv<T>(
    values: Partial<Record<(typeof KEYS)[number], string>>,
    fn: () => T | Promise<T>,
  ): Promise<T> {
    const saved = KEYS.map((key) => [key, process.env[key]] as const);
    for (const key of KEYS) delete process.env[key];
    Object.assign(process.env, values);
    try {
      return await fn();
    } finally {
      for (const [key, value] of saved) {
        if (value === undefined) delete process.env[key];
        else process.env[key] = value;
      }
    }
  }

  it('keeps the SDK defaults when nothing is set', async () => {
    const attributes = await withProcessEnv({}, () => createResource(config()).attributes);
    expect(attributes['telemetry.sdk.language']).toBe('nodejs');
    expect(attributes['telemetry.sdk.name']).toBe('opentelemetry');
    expect(attributes['service.name']).toMatch(/^unknown_service/);
  });

  it('lets OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME override the defaults', async () => {
    const attributes = await withProcessEnv(
      {
        OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=staging,telemetry.sdk.name=custom',
        OTEL_SERVICE_NAME: 'from-env',
      },
      () => createResource(config()).attributes,
    );
    expect(attributes).toMatchObject({
      'deployment.environment.name': 'staging',
      'telemetry.sdk.name': 'custom',
      'telemetry.sdk.language': 'nodejs',
      'service.name': 'from-env',
    });
  });

  it('lets options override OTEL_RESOURCE_ATTRIBUTES', async () => {
    const attributes = await withProcessEnv(
      {
        OTEL_RESOURCE_ATTRIBUTES:
          'service.name=attr-name,service.version=0.0.1,team=env-team,region=eu',
        OTEL_SERVICE_NAME: 'env-name',
      },
      () =>
        createResource(
          config({
            serviceName: 'orders',
            serviceVersion: '2.0.0',
            resourceAttributes: { team: 'payments', canary: true },
          }),
        ).attributes,
    );
    expect(attributes).toMatchObject({
      'service.name': 'orders',
      'service.version': '2.0.0',
      team: 'payments',
      canary: true,
      region: 'eu',
      'telemetry.sdk.language': 'nodejs',
    });
  });

  it('puts resourceAttributes.service.name below the serviceName option', async () => {
    const attributes = await withProcessEnv(
      {},
      () =>
        createResource(
          config({ serviceName: 'orders', resourceAttributes: { 'service.name': 'other' } }),
        ).attributes,
    );
    expect(attributes['service.name']).toBe('orders');
  });

  it('puts resourceAttributes.service.name above OTEL_SERVICE_NAME (options win)', async () => {
    const env = { OTEL_SERVICE_NAME: 'from-env' };
    const fromOption = await withProcessEnv(
      env,
      () =>
        createResource(config({ resourceAttributes: { 'service.name': 'other' } }, env)).attributes,
    );
    expect(fromOption['service.name']).toBe('other');
    const fromEnv = await withProcessEnv(
      env,
      () => createResource(config({ resourceAttributes: { team: 'a' } }, env)).attributes,
    );
    expect(fromEnv['service.name']).toBe('from-env');
  });
});

describe('createSpanProcessors', () => {
  it('builds one batch processor per exporter by default, with the batch settings', async () => {
    const exporters = [new InMemorySpanExporter(), new InMemorySpanExporter()];
    const processors = createSpanProcessors(
      config({ batch: { maxQueueSize: 7, maxExportBatchSize: 3 } }),
      exporters,
    );
    expect(processors).toHaveLength(2);
    for (const p of processors) expect(p).toBeInstanceOf(BatchSpanProcessor);
    expect(processors[0]).toMatchObject({ _maxQueueSize: 7, _maxExportBatchSize: 3 });
    await Promise.all(processors.map((p) => p.shutdown()));
  });

  it('gives the SDK batch processor every setting, so that it reads no OTEL_BSP_* itself', async () => {
    process.env.OTEL_BSP_MAX_QUEUE_SIZE = '-5';
    try {
      const [processor] = createSpanProcessors(config({}), [new InMemorySpanExporter()]);
      expect(processor).toMatchObject({
        _maxQueueSize: 2048,
        _maxExportBatchSize: 512,
        _scheduledDelayMillis: 5000,
        _exportTimeoutMillis: 30000,
      });
      await processor!.shutdown();
    } finally {
      delete process.env.OTEL_BSP_MAX_QUEUE_SIZE;
    }
  });

  it('encodes spans as they end for the default OTLP/protobuf exporter, with the batch settings', async () => {
    const processors = createSpanProcessors(
      config({ batch: { maxQueueSize: 7, maxExportBatchSize: 3 } }),
      [new OtlpProtoTraceExporter(), new InMemorySpanExporter()],
    );
    expect(processors[0]).toBeInstanceOf(EncodingBatchSpanProcessor);
    expect(processors[0]).toMatchObject({
      settings: { maxQueueSize: 7, maxExportBatchSize: 3, scheduledDelayMillis: 5000 },
    });
    expect(processors[1]).toBeInstanceOf(BatchSpanProcessor);
    await Promise.all(processors.map((p) => p.shutdown()));
  });

  it("builds simple processors for 'simple'", async () => {
    const processors = createSpanProcessors(config({ spanProcessor: 'simple' }), [
      new InMemorySpanExporter(),
    ]);
    expect(processors).toHaveLength(1);
    expect(processors[0]).toBeInstanceOf(SimpleSpanProcessor);
    await Promise.all(processors.map((p) => p.shutdown()));
  });

  it('uses a processor instance alone, ignoring exporters', () => {
    const processor = new SimpleSpanProcessor(new InMemorySpanExporter());
    expect(
      createSpanProcessors(config({ spanProcessor: processor }), [new InMemorySpanExporter()]),
    ).toEqual([processor]);
  });
});

describe('TracingSdk', () => {
  const getDelegate = () =>
    (trace.getTracerProvider() as unknown as { getDelegate(): unknown }).getDelegate();

  it('registers the provider, an async context manager and the propagators', async () => {
    const exporter = new KeepingExporter();
    const logger = makeLogger();
    const sdk = await TracingSdk.start(
      config({ serviceName: 'svc', spanProcessor: 'simple', propagators: ['tracecontext', 'b3'] }),
      [exporter],
      logger,
    );
    try {
      expect(sdk.enabled).toBe(true);
      expect(sdk.provider).toBeInstanceOf(NodeTracerProvider);
      expect(getDelegate()).toBe(sdk.provider);
      expect(propagation.fields()).toEqual(['traceparent', 'tracestate', 'b3']);

      const key = createContextKey('test');
      const seen = await context.with(context.active().setValue(key, 'kept'), async () => {
        await new Promise((resolve) => setTimeout(resolve, 1));
        return context.active().getValue(key);
      });
      expect(seen).toBe('kept');

      const span = trace.getTracer('t').startSpan('work');
      expect(span.isRecording()).toBe(true);
      span.end();
      const [finished] = exporter.getFinishedSpans();
      expect(finished?.name).toBe('work');
      expect(finished?.resource.attributes['service.name']).toBe('svc');
      expect(logger.log).not.toHaveBeenCalled();
    } finally {
      await sdk.shutdown();
    }
  });

  it.each([
    [
      'auto',
      asyncLocalStorageUsesPromiseHooks() ? PromiseContextManager : AsyncLocalStorageContextManager,
    ],
    ['promise-hooks', PromiseContextManager],
    ['async-local-storage', AsyncLocalStorageContextManager],
  ] as const)('registers the context manager contextManager %p names', async (name, expected) => {
    const sdk = await TracingSdk.start(
      config({ contextManager: name, spanProcessor: 'simple' }),
      [new KeepingExporter()],
      makeLogger(),
    );
    try {
      const manager = (
        context as unknown as { _getContextManager(): unknown }
      )._getContextManager();
      expect(manager).toBeInstanceOf(expected);
      // Only AsyncLocalStorage follows the callbacks of Node's callback APIs.
      const key = createContextKey('callback');
      const seen = await context.with(
        context.active().setValue(key, 'kept'),
        () => new Promise((resolve) => stat('.', () => resolve(context.active().getValue(key)))),
      );
      expect(seen).toBe(expected === AsyncLocalStorageContextManager ? 'kept' : undefined);
    } finally {
      await sdk.shutdown();
    }
  });

  it("makes ids with the package's pooled generator", async () => {
    const traceIds = jest.spyOn(PooledIdGenerator.prototype, 'generateTraceId');
    const spanIds = jest.spyOn(PooledIdGenerator.prototype, 'generateSpanId');
    const exporter = new KeepingExporter();
    const sdk = await TracingSdk.start(
      config({ spanProcessor: 'simple' }),
      [exporter],
      makeLogger(),
    );
    try {
      const tracer = trace.getTracer('t');
      const root = tracer.startSpan('root');
      tracer.startSpan('child', {}, trace.setSpan(ROOT_CONTEXT, root)).end();
      root.end();
      const [child, parent] = exporter.getFinishedSpans();
      expect(traceIds.mock.results.map((r) => r.value)).toEqual([parent?.spanContext().traceId]);
      expect(spanIds.mock.results.map((r) => r.value)).toEqual([
        parent?.spanContext().spanId,
        child?.spanContext().spanId,
      ]);
      expect(child?.spanContext().traceId).toBe(parent?.spanContext().traceId);
    } finally {
      traceIds.mockRestore();
      spanIds.mockRestore();
      await sdk.shutdown();
    }
  });

  it("starts the package's own spans with its PackageTracer, on the provider's settings", async () => {
    const exporter = new KeepingExporter();
    const endings: string[] = [];
    const sdk = await TracingSdk.start(
      config({
        spanProcessor: 'simple',
        resourceAttributes: { 'deployment.environment.name': 'spec' },
      }),
      [exporter],
      makeLogger(),
    );
    const noteEnding = { onEnding: (span: { name: string }) => endings.push(span.name) };
    const shared = (globalThis as Record<symbol, { processor: { processors: object[] } }>)[
      SHARED_SDK
    ]!;
    shared.processor.processors.push({
      onStart: () => undefined,
      onEnd: () => undefined,
      forceFlush: () => Promise.resolve(),
      shutdown: () => Promise.resolve(),
      ...noteEnding,
    });
    try {
      expect(getTracer()).toBeInstanceOf(PackageTracer);
      const attributes = { 'url.path': '/p' };
      const own = startSpanWith('own', SpanKind.SERVER, attributes, ROOT_CONTEXT);
      expect(own).toBeInstanceOf(PackageSpan);
      expect((own as PackageSpan).attributes).toBe(attributes);
      const app = trace.getTracer('app').startSpan('app', {}, trace.setSpan(ROOT_CONTEXT, own));
      expect(app).not.toBeInstanceOf(PackageSpan);
      app.end();
      own.end();
      const [appSpan, ownSpan] = exporter.getFinishedSpans();
      expect(ownSpan?.instrumentationScope).toMatchObject({
        name: TRACER_NAME,
        version: TRACER_VERSION,
      });
      expect(ownSpan?.resource).toBe(appSpan?.resource);
      expect(ownSpan?.resource.attributes['deployment.environment.name']).toBe('spec');
      expect(appSpan?.parentSpanContext?.spanId).toBe(own.spanContext().spanId);
      // Both kinds of span reach a processor's onEnding (the SDK's through the provider).
      expect(endings).toEqual(['app', 'own']);
    } finally {
      await sdk.shutdown();
    }
    // Once the provider is gone, the API's (no-op) tracer is used again.
    expect(getTracer()).not.toBeInstanceOf(PackageTracer);
    expect(startSpanWith('after', SpanKind.SERVER, {}, ROOT_CONTEXT).isRecording()).toBe(false);
  });

  it('holds its own spans and the SDK tracer’s to the span limits of the environment', async () => {
    const exporter = new KeepingExporter();
    const sdk = await TracingSdk.start(
      config(
        { spanProcessor: 'simple' },
        {
          OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT: '2',
          OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT: '3',
          OTEL_SPAN_EVENT_COUNT_LIMIT: '1',
        },
      ),
      [exporter],
      makeLogger(),
    );
    try {
      const write = (span: Span) => {
        span.setAttributes({ a: 'abcdef', b: ['xyzw', 'q'], c: true });
        span.addEvent('first');
        span.addEvent('second');
        span.end();
      };
      write(startSpanWith('own', SpanKind.INTERNAL, { s: 'long value' }, ROOT_CONTEXT));
      write(trace.getTracer('app').startSpan('app', { attributes: { s: 'long value' } }));
      const [own, app] = exporter.getFinishedSpans();
      for (const span of [own!, app!]) {
        expect(span.attributes).toEqual({ s: 'lon', a: 'abc' });
        expect(span.droppedAttributesCount).toBe(2);
        expect(span.events.map((e) => e.name)).toEqual(['second']);
        expect(span.droppedEventsCount).toBe(1);
      }
    } finally {
      await sdk.shutdown();
    }
  });

  it('shutdown flushes batched spans, then unregisters the globals', async () => {
    const exporter = new KeepingExporter();
    const sdk = await TracingSdk.start(
      config({ batch: { scheduledDelayMillis: 60_000 } }),
      [exporter],
      makeLogger(),
    );
    trace.getTracer('t').startSpan('queued').end();
    expect(exporter.getFinishedSpans()).toHaveLength(0);

    await sdk.shutdown();

    expect(exporter.getFinishedSpans().map((s) => s.name)).toEqual(['queued']);
    expect(exporter.shutdowns).toBe(1);
    expect(trace.getTracer('t').startSpan('after').isRecording()).toBe(false);
    expect(propagation.fields()).toEqual([]);
    const key = createContextKey('test');
    expect(context.with(ROOT_CONTEXT.setValue(key, 1), () => context.active().getValue(key))).toBe(
      undefined,
    );
  });

  it('shutdown waits for exports a simple processor has in flight', async () => {
    const exporter = new SlowExporter(30);
    const sdk = await TracingSdk.start(
      config({ spanProcessor: 'simple' }),
      [exporter],
      makeLogger(),
    );
    trace.getTracer('t').startSpan('in-flight').end();
    await sdk.shutdown();
    expect(exporter.exported.map((s) => s.name)).toEqual(['in-flight']);
  });

  it('forceFlush exports batched spans without shutting down', async () => {
    const exporter = new KeepingExporter();
    const sdk = await TracingSdk.start(
      config({ batch: { scheduledDelayMillis: 60_000 } }),
      [exporter],
      makeLogger(),
    );
    try {
      trace.getTracer('t').startSpan('flushed').end();
      await sdk.forceFlush();
      expect(exporter.getFinishedSpans()).toHaveLength(1);
      expect(exporter.shutdowns).toBe(0);
      expect(trace.getTracer('t').startSpan('still-on').isRecording()).toBe(true);
    } finally {
      await sdk.shutdown();
    }
  });

  it('shutdown is idempotent and never releases globals registered later', async () => {
    const exporter = new KeepingExporter();
    const first = await TracingSdk.start(
      config({ spanProcessor: 'simple' }),
      [exporter],
      makeLogger(),
    );
    const p1 = first.shutdown();
    expect(first.shutdown()).toBe(p1);
    await p1;
    expect(exporter.shutdowns).toBe(1);

    const second = await TracingSdk.start(config(), [new KeepingExporter()], makeLogger());
    try {
      await first.shutdown();
      expect(exporter.shutdowns).toBe(1);
      expect(getDelegate()).toBe(second.provider);
      expect(trace.getTracer('t').startSpan('x').isRecording()).toBe(true);
    } finally {
      await second.shutdown();
    }
  });

  it('leaves the registered context manager working when the tracer provider was reset under it', async () => {
    const first = await TracingSdk.start(config({ spanProcessor: 'simple' }), [], makeLogger());
    // A test resets the tracer API only; the first module's context manager stays registered.
    trace.disable();
    const second = await TracingSdk.start(config({ spanProcessor: 'simple' }), [], makeLogger());
    try {
      const key = createContextKey('kept');
      const seen = await context.with(context.active().setValue(key, 'yes'), async () => {
        await Promise.resolve();
        await new Promise((resolve) => setTimeout(resolve, 1));
        return context.active().getValue(key);
      });
      expect(seen).toBe('yes');
    } finally {
      await second.shutdown();
      await first.shutdown();
    }
  });

  it('defers to a foreign provider registered first, logs that once, and leaves its globals alone', async () => {
    const ownerExporter = new KeepingExporter();
    const owner = new NodeTracerProvider({
      spanProcessors: [new SimpleSpanProcessor(ownerExporter)],
    });
    trace.setGlobalTracerProvider(owner);
    const logger = makeLogger();
    const ignoredExporter = new KeepingExporter();
    try {
      const late = await TracingSdk.start(
        config({ spanProcessor: 'simple', propagators: ['jaeger'] }),
        [ignoredExporter],
        logger,
      );
      const later = await TracingSdk.start(config(), [new KeepingExporter()], logger);

      expect(late.provider).toBeUndefined();
      expect(late.enabled).toBe(true);
      expect(later.provider).toBeUndefined();
      expect(logger.log).toHaveBeenCalledTimes(1);
      expect(logger.log.mock.calls[0]?.[0]).toMatch(
        /A global OpenTelemetry tracer provider is already registered .* uses it and ignores its own exporter, sampler and propagator options, and its resource options \(serviceName, serviceVersion, resourceAttributes\)\./,
      );
      expect(getDelegate()).toBe(owner);

      // The late SDK's shutdown flushes the provider in charge and unregisters nothing.
      trace.getTracer('t').startSpan('via-owner').end();
      await late.shutdown();
      await later.shutdown();
      expect(ownerExporter.getFinishedSpans().map((s) => s.name)).toEqual(['via-owner']);
      expect(ignoredExporter.getFinishedSpans()).toHaveLength(0);
      expect(getDelegate()).toBe(owner);
      expect(trace.getTracer('t').startSpan('y').isRecording()).toBe(true);
      expect(logger.warn).not.toHaveBeenCalled();
    } finally {
      await owner.shutdown();
      trace.disable();
    }
  });

  it('lets a second module of this package share the provider, and releases it with the last one', async () => {
    const firstExporter = new KeepingExporter();
    const secondExporter = new KeepingExporter();
    const logger = makeLogger();
    const first = await TracingSdk.start(
      config({ spanProcessor: 'simple' }),
      [firstExporter],
      logger,
    );
    const second = await TracingSdk.start(
      config({ spanProcessor: 'simple' }),
      [secondExporter],
      logger,
    );
    expect(second.provider).toBe(first.provider);
    expect(getDelegate()).toBe(first.provider);
    expect(logger.log.mock.calls[0]?.[0]).toMatch(
      /Another TracingModule already runs in this process/,
    );

    trace.getTracer('t').startSpan('both').end();
    expect(firstExporter.getFinishedSpans().map((s) => s.name)).toEqual(['both']);
    expect(secondExporter.getFinishedSpans().map((s) => s.name)).toEqual(['both']);

    // The first one stops: the second keeps tracing, through the same provider.
    await first.shutdown();
    expect(firstExporter.shutdowns).toBe(1);
    expect(getDelegate()).toBe(second.provider);
    trace.getTracer('t').startSpan('second-only').end();
    expect(secondExporter.getFinishedSpans().map((s) => s.name)).toEqual(['both', 'second-only']);

    // The last one out releases the globals.
    await second.shutdown();
    expect(secondExporter.shutdowns).toBe(1);
    expect(trace.getTracer('t').startSpan('after').isRecording()).toBe(false);
  });

  it.each(['simple', 'batch'] as const)(
    'shutdown with a stuck exporter (%s processor) resolves within shutdownTimeoutMs and warns',
    async (spanProcessor) => {
      const logger = makeLogger();
      const exporter = new StuckExporter();
      const sdk = await TracingSdk.start(
        config({
          spanProcessor,
          shutdownTimeoutMs: 50,
          batch: { scheduledDelayMillis: 60_000, exportTimeoutMillis: 1_000 },
        }),
        [exporter],
        logger,
      );
      trace.getTracer('t').startSpan('stuck').end();
      const started = Date.now();
      await sdk.shutdown().finally(() => exporter.release());
      const elapsed = Date.now() - started;

      expect(exporter.received.map((s) => s.name)).toEqual(['stuck']);
      expect(elapsed).toBeGreaterThanOrEqual(45);
      expect(elapsed).toBeLessThan(800);
      expect(logger.warn).toHaveBeenCalledTimes(1);
      expect(logger.warn.mock.calls[0]?.[0]).toBe(
        'Span export did not finish within shutdownTimeoutMs (50 ms); spans whose export was not answered may not have reached the collector. An exporter retries a collector that refuses connections or does not answer: is it running, at the endpoint configured?',
      );
      expect(trace.getTracer('t').startSpan('after').isRecording()).toBe(false);
    },
  );

  it('forceFlush logs a failed export instead of throwing it at the caller', async () => {
    const logger = makeLogger();
    const sdk = await TracingSdk.start(
      config({ batch: { scheduledDelayMillis: 60_000 } }),
      [new FailingExporter()],
      logger,
    );
    try {
      trace.getTracer('t').startSpan('unsent').end();
      await expect(sdk.forceFlush()).resolves.toBeUndefined();
      expect(logger.warn).toHaveBeenCalledWith(
        'Span export failed during forceFlush: collector said 503',
      );
    } finally {
      await sdk.shutdown();
    }
  });

  it('says what the collector answered when a flushed export is refused', async () => {
    const logger = makeLogger();
    const refused = new OTLPExporterError('Bad Request', 400, 'span rejected:\nbad attribute');
    const exporter: SpanExporter = {
      export: (_spans, done) => done({ code: 1, error: refused }),
      shutdown: () => Promise.resolve(),
    };
    const sdk = await TracingSdk.start(
      config({ batch: { scheduledDelayMillis: 60_000 } }),
      [exporter],
      logger,
    );
    try {
      trace.getTracer('t').startSpan('unsent').end();
      await sdk.forceFlush();
      expect(logger.warn).toHaveBeenCalledWith(
        'Span export failed during forceFlush: Bad Request (code 400) span rejected: bad attribute',
      );
    } finally {
      await sdk.shutdown();
    }
  });

  it('warns when the final export fails, and still releases the globals', async () => {
    const logger = makeLogger();
    const sdk = await TracingSdk.start(
      config({ batch: { scheduledDelayMillis: 60_000 } }),
      [new FailingExporter()],
      logger,
    );
    trace.getTracer('t').startSpan('lost').end();
    await sdk.shutdown();
    expect(logger.warn).toHaveBeenCalledWith(
      'Span export failed during shutdown: collector said 503',
    );
    expect(trace.getTracer('t').startSpan('after').isRecording()).toBe(false);
  });

  it('a disabled handle registers nothing and shuts down quietly', async () => {
    const logger = makeLogger();
    const sdk = TracingSdk.disabled(logger);
    expect(sdk.enabled).toBe(false);
    expect(sdk.provider).toBeUndefined();
    expect(trace.getTracer('t').startSpan('x').isRecording()).toBe(false);
    await sdk.shutdown();
    await sdk.forceFlush();
    expect(logger.log).not.toHaveBeenCalled();
    expect(logger.warn).not.toHaveBeenCalled();
  });
});
