import 'reflect-metadata';
import { jest } from '@jest/globals';
import { Global, Inject, Injectable, Module, type ModuleMetadata } from '@nestjs/common';
import { ConfigModule, ConfigService } from '@nestjs/config';
import { ModulesContainer } from '@nestjs/core';
import { Test, type TestingModule } from '@nestjs/testing';
import { context, propagation, trace } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import {
  InMemorySpanExporter,
  SimpleSpanProcessor,
  type ReadableSpan,
  type SpanExporter,
} from '@opentelemetry/sdk-trace-base';
import type { TracingModuleOptions } from './interfaces/tracing-module-options.interface.js';
import type { TracingSdk } from './sdk/tracing-sdk.js';
import { TracingConfigError } from './sdk/tracing-config.js';
import { TRACING_SDK, TRACING_SPAN_EXPORTER } from './tracing.constants.js';
import { TracingModule } from './tracing.module.js';
import { logger } from './tracing.providers.js';
import { TestSpans, TracingTestingModule } from './testing/index.js';

const SERVICE = 'orders-from-config';

/** Something a global module provides, for an exporter class to depend on. */
@Injectable()
class SpanSink {
  readonly spans: ReadableSpan[] = [];
}

@Global()
@Module({ providers: [SpanSink], exports: [SpanSink] })
class SinkModule {}

/** An exporter built by Nest: it gets SpanSink injected. */
@Injectable()
class SinkExporter implements SpanExporter {
  constructor(@Inject(SpanSink) readonly sink: SpanSink) {}
  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.sink.spans.push(...spans);
    done({ code: ExportResultCode.SUCCESS });
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/** A forRootAsync options factory (`create()` is the module definition's method name). */
@Injectable()
class TracingOptionsFromConfig {
  constructor(@Inject(ConfigService) private readonly config: ConfigService) {}
  create(): TracingModuleOptions {
    return {
      serviceName: this.config.getOrThrow<string>('SERVICE_NAME'),
      spanProcessor: 'simple',
      exporter: 'memory',
    };
  }
}

@Global()
@Module({ providers: [TracingOptionsFromConfig], exports: [TracingOptionsFromConfig] })
class TracingOptionsModule {}

const configModule = () =>
  ConfigModule.forRoot({
    isGlobal: true,
    ignoreEnvFile: true,
    load: [() => ({ SERVICE_NAME: SERVICE })],
  });

const opened: TestingModule[] = [];

async function compile(imports: NonNullable<ModuleMetadata['imports']>): Promise<TestingModule> {
  const moduleRef = await Test.createTestingModule({ imports }).compile();
  opened.push(moduleRef);
  return moduleRef;
}

/** The names of the spans the console exporter prints, while `dir` (restore it) is spied on. */
function consoleSpans() {
  const printed: string[] = [];
  const dir = jest.spyOn(console, 'dir').mockImplementation((span: unknown) => {
    printed.push((span as { name: string }).name);
  });
  return { printed, dir };
}

function exportersOf(moduleRef: TestingModule): SpanExporter[] {
  return moduleRef.get<SpanExporter[]>(TRACING_SPAN_EXPORTER);
}

/** Ends one span through the global API and waits until it is exported. */
async function endSpan(moduleRef: TestingModule, name = 'work'): Promise<string> {
  const span = trace.getTracer('test').startSpan(name);
  span.end();
  await moduleRef.get<TracingSdk>(TRACING_SDK).forceFlush();
  return span.spanContext().spanId;
}

function memoryExporter(moduleRef: TestingModule): InMemorySpanExporter {
  const [exporter] = exportersOf(moduleRef);
  expect(exporter).toBeInstanceOf(InMemorySpanExporter);
  return exporter as InMemorySpanExporter;
}

afterEach(async () => {
  // close() runs onApplicationShutdown, which releases the globals; then reset anyway.
  for (const moduleRef of opened.splice(0)) await moduleRef.close();
  trace.disable();
  context.disable();
  propagation.disable();
});

describe('TracingModule exporter resolution', () => {
  it("builds a shorthand exporter ('memory') and exports spans to it", async () => {
    const moduleRef = await compile([
      TracingModule.forRoot({ serviceName: 'orders', exporter: 'memory', spanProcessor: 'simple' }),
    ]);
    const exporter = memoryExporter(moduleRef);
    expect(exportersOf(moduleRef)).toHaveLength(1);

    const spanId = await endSpan(moduleRef);
    const [span] = exporter.getFinishedSpans();
    expect(span?.spanContext().spanId).toBe(spanId);
    expect(span?.resource.attributes['service.name']).toBe('orders');
  });

  it("resolves 'none' to no exporter", async () => {
    const moduleRef = await compile([TracingModule.forRoot({ exporter: 'none' })]);
    expect(exportersOf(moduleRef)).toEqual([]);
  });

  it('uses an exporter instance as given', async () => {
    const instance = new InMemorySpanExporter();
    const moduleRef = await compile([
      TracingModule.forRoot({ exporter: instance, spanProcessor: 'simple' }),
    ]);
    expect(exportersOf(moduleRef)).toEqual([instance]);
    expect(exportersOf(moduleRef)[0]).toBe(instance);
    await endSpan(moduleRef, 'to-instance');
    expect(instance.getFinishedSpans().map((s) => s.name)).toEqual(['to-instance']);
  });

  it('builds { useClass } through Nest, injecting a provider of a global module', async () => {
    const moduleRef = await compile([
      TracingModule.forRoot({ exporter: { useClass: SinkExporter }, spanProcessor: 'simple' }),
      SinkModule,
    ]);
    const [exporter] = exportersOf(moduleRef);
    expect(exporter).toBeInstanceOf(SinkExporter);
    const sink = moduleRef.get(SpanSink);
    expect((exporter as SinkExporter).sink).toBe(sink);

    const spanId = await endSpan(moduleRef);
    expect(sink.spans.map((s) => s.spanContext().spanId)).toEqual([spanId]);
  });

  it('fails to compile when a { useClass } dependency is missing, naming the class', async () => {
    await expect(
      compile([TracingModule.forRoot({ exporter: { useClass: SinkExporter } })]),
    ).rejects.toThrow(/can't resolve dependencies of the SinkExporter \(\?\)/);
  });

  it('calls { useFactory, inject: [ConfigService] } with the ConfigService', async () => {
    const received: unknown[] = [];
    const moduleRef = await compile([
      configModule(),
      TracingModule.forRoot({
        spanProcessor: 'simple',
        exporter: {
          useFactory: (cfg: ConfigService) => {
            received.push(cfg, cfg.get('SERVICE_NAME'));
            return new InMemorySpanExporter();
          },
          inject: [ConfigService],
        },
      }),
    ]);
    expect(received).toEqual([moduleRef.get(ConfigService), SERVICE]);
    const exporter = memoryExporter(moduleRef);
    await endSpan(moduleRef, 'from-factory');
    expect(exporter.getFinishedSpans().map((s) => s.name)).toEqual(['from-factory']);
  });

  it('awaits an async factory and accepts an array from it', async () => {
    const a = new InMemorySpanExporter();
    const b = new InMemorySpanExporter();
    const moduleRef = await compile([
      TracingModule.forRoot({
        spanProcessor: 'simple',
        exporter: { useFactory: async () => Promise.resolve([a, b]) },
      }),
    ]);
    expect(exportersOf(moduleRef)).toEqual([a, b]);
  });

  it('passes undefined for a missing optional dependency', async () => {
    const received: unknown[] = [];
    await compile([
      configModule(),
      TracingModule.forRoot({
        exporter: {
          useFactory: (missing: unknown, cfg: ConfigService) => {
            received.push(missing, cfg);
            return new InMemorySpanExporter();
          },
          inject: [{ token: 'NOT_PROVIDED', optional: true }, ConfigService],
        },
      }),
    ]);
    expect(received).toHaveLength(2);
    expect(received[0]).toBeUndefined();
    expect(received[1]).toBeInstanceOf(ConfigService);
  });

  it('fails to compile when a required factory dependency is missing, naming the token', async () => {
    await expect(
      compile([
        TracingModule.forRoot({
          exporter: {
            useFactory: () => new InMemorySpanExporter(),
            inject: [{ token: 'NOT_PROVIDED', optional: false }],
          },
        }),
      ]),
    ).rejects.toThrow(/argument "NOT_PROVIDED" at index \[0\] is available/);
  });

  it('exports the same span to each exporter of an array', async () => {
    const second = new InMemorySpanExporter();
    const moduleRef = await compile([
      TracingModule.forRoot({ exporter: ['memory', second], spanProcessor: 'simple' }),
    ]);
    const exporters = exportersOf(moduleRef);
    expect(exporters).toHaveLength(2);
    expect(exporters[0]).toBeInstanceOf(InMemorySpanExporter);
    expect(exporters[1]).toBe(second);

    const spanId = await endSpan(moduleRef);
    for (const exporter of exporters as InMemorySpanExporter[]) {
      expect(exporter.getFinishedSpans().map((s) => s.spanContext().spanId)).toEqual([spanId]);
    }
  });

  it.each([
    ['useFactory returning a plain object', { useFactory: () => ({ export: () => undefined }) }],
    [
      'useFactory returning an array with a non-exporter',
      { useFactory: () => [new InMemorySpanExporter(), 42] },
    ],
    ['useClass that is no exporter', { useClass: SpanSink }],
  ])('rejects a %s with a clear error', async (_label, exporter) => {
    await expect(
      compile([
        SinkModule,
        TracingModule.forRoot({ exporter: exporter as TracingModuleOptions['exporter'] }),
      ]),
    ).rejects.toThrow(
      /nestjs-tracing: the exporter provider \(useClass \/ useFactory\) must produce a SpanExporter \(an object with export\(\) and shutdown\(\)\) or an array of them\./,
    );
    expect(trace.getTracer('t').startSpan('x').isRecording()).toBe(false);
  });

  it.each([
    ['one exporter', (e: InMemorySpanExporter) => e],
    ['a list of them', (e: InMemorySpanExporter) => [e]],
  ])('takes the exporter token overridden with %s', async (_label, as) => {
    const exporter = new InMemorySpanExporter();
    const moduleRef = await Test.createTestingModule({
      imports: [TracingModule.forRoot({ spanProcessor: 'simple' })],
    })
      .overrideProvider(TRACING_SPAN_EXPORTER)
      .useValue(as(exporter))
      .compile();
    opened.push(moduleRef);
    await endSpan(moduleRef, 'overridden');
    expect(exporter.getFinishedSpans().map((s) => s.name)).toEqual(['overridden']);
  });

  it('rejects the exporter token overridden with something else, with a clear error', async () => {
    await expect(
      Test.createTestingModule({ imports: [TracingModule.forRoot()] })
        .overrideProvider(TRACING_SPAN_EXPORTER)
        .useValue({ notAnExporter: true })
        .compile(),
    ).rejects.toThrow(/TRACING_SPAN_EXPORTER \(when overridden\) must produce a SpanExporter/);
  });

  it('uses a SpanProcessor instance instead of exporters', async () => {
    const exporter = new InMemorySpanExporter();
    const moduleRef = await compile([
      TracingModule.forRoot({ spanProcessor: new SimpleSpanProcessor(exporter) }),
    ]);
    expect(exportersOf(moduleRef)).toEqual([]);
    await endSpan(moduleRef, 'via-processor');
    expect(exporter.getFinishedSpans().map((s) => s.name)).toEqual(['via-processor']);
  });
});

describe('TracingModule options', () => {
  it.each([
    [{ exporter: 'jaeger' }, /nestjs-tracing: exporter 'jaeger' is unknown; use one of 'otlp'/],
    [
      { sampler: { ratio: 2 } },
      /nestjs-tracing: sampler\.ratio must be a number from 0 to 1, got 2/,
    ],
    [
      { servicename: 'x' },
      /options has an unknown key 'servicename' \(did you mean 'serviceName'\?\)/,
    ],
  ])('fails to compile with the TracingConfigError message for %p', async (options, message) => {
    const error = await compile([TracingModule.forRoot(options as TracingModuleOptions)]).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).name).toBe('TracingConfigError');
    expect((error as Error).message).toMatch(message);
  });

  it.each([null, 'orders', [], 42])(
    'throws a TracingConfigError from forRoot(%p), before Nest spreads the options',
    (options) => {
      expect(() => TracingModule.forRoot(options as unknown as TracingModuleOptions)).toThrow(
        expect.objectContaining({
          name: 'TracingConfigError',
          message: expect.stringMatching(/forRoot\(\) takes an object of options/),
        }),
      );
    },
  );

  it.each([
    ['nothing', undefined],
    ['null', null],
    ['a string', 'x'],
    ['no provider', { inject: [] }],
  ])('throws a TracingConfigError from forRootAsync given %s', (_label, options) => {
    expect(() => TracingModule.forRootAsync(options as never)).toThrow(
      expect.objectContaining({
        name: 'TracingConfigError',
        message: expect.stringMatching(/forRootAsync\(\) takes an object with one of useFactory/),
      }),
    );
  });

  it.each([
    ['forRoot', () => TracingModule.forRoot({ isGlobal: 'yes' as never })],
    [
      'forRootAsync',
      () => TracingModule.forRootAsync({ isGlobal: 1 as never, useFactory: () => ({}) }),
    ],
  ])('rejects an isGlobal that is no boolean in %s', (_method, call) => {
    expect(call).toThrow(/isGlobal must be true or false, got /);
  });

  it('fails forRootAsync with the TracingConfigError message too', async () => {
    await expect(
      compile([
        TracingModule.forRootAsync({
          useFactory: () => ({ shutdownTimeoutMs: -5 }),
        }),
      ]),
    ).rejects.toThrow(/shutdownTimeoutMs must be a number of milliseconds >= 0, got -5/);
  });

  it.each([
    ['undefined', undefined],
    ['null', null],
  ])(
    'fails forRootAsync whose factory returns %s (a config key not set), rather than run on the defaults',
    async (label, returned) => {
      expect(process.env.OTEL_SDK_DISABLED).toBeUndefined();
      await expect(
        compile([TracingModule.forRootAsync({ useFactory: () => returned as never })]),
      ).rejects.toThrow(
        new RegExp(
          `forRootAsync\\(\\) got ${label} for the options: its factory \\(or create\\(\\)\\) must return an object`,
        ),
      );
    },
  );

  it.each([
    ['forRoot', () => TracingModule.forRoot({ isGlobal: undefined })],
    [
      'forRootAsync',
      () => TracingModule.forRootAsync({ isGlobal: undefined, useFactory: () => ({}) }),
    ],
  ])('is global when %s is given isGlobal: undefined', (_method, call) => {
    expect(call().global).toBe(true);
  });

  it.each(['useClass', 'useExisting'] as const)(
    'names a %s provider without create() when it is resolved',
    async (given) => {
      class NoCreate {
        build(): TracingModuleOptions {
          return {};
        }
      }
      @Module({ providers: [NoCreate], exports: [NoCreate] })
      class NoCreateModule {}
      await expect(
        compile([
          TracingModule.forRootAsync({ imports: [NoCreateModule], [given]: NoCreate as never }),
        ]),
      ).rejects.toThrow(
        new TracingConfigError(
          `forRootAsync({ ${given}: NoCreate }): NoCreate has no create() method; it must ` +
            'return the options (or a Promise of them).',
        ),
      );
    },
  );

  it('takes a create() that a class field holds', async () => {
    class FieldCreate {
      create = (): TracingModuleOptions => ({ exporter: 'memory', spanProcessor: 'simple' });
    }
    const moduleRef = await compile([TracingModule.forRootAsync({ useClass: FieldCreate })]);
    expect(exportersOf(moduleRef)).toHaveLength(1);
  });

  it('starts off, with a warning, when the factory returns nothing and OTEL_SDK_DISABLED=true', async () => {
    const warn = jest.spyOn(logger, 'warn').mockImplementation(() => undefined);
    process.env.OTEL_SDK_DISABLED = 'true';
    try {
      const moduleRef = await compile([
        TracingModule.forRootAsync({ useFactory: () => undefined as never }),
      ]);
      expect(moduleRef.get<TracingSdk>(TRACING_SDK).enabled).toBe(false);
      expect(warn).toHaveBeenCalledWith(
        expect.stringMatching(
          /got undefined for the options.*Tracing is off \(OTEL_SDK_DISABLED=true\)/,
        ),
      );
    } finally {
      delete process.env.OTEL_SDK_DISABLED;
      warn.mockRestore();
    }
  });

  it('registers nothing globally when enabled is false', async () => {
    const moduleRef = await compile([
      TracingModule.forRoot({ enabled: false, exporter: 'memory', spanProcessor: 'simple' }),
    ]);
    expect(exportersOf(moduleRef)).toEqual([]);
    const sdk = moduleRef.get<TracingSdk>(TRACING_SDK);
    expect(sdk.enabled).toBe(false);
    expect(sdk.provider).toBeUndefined();
    const span = trace.getTracer('t').startSpan('off');
    expect(span.isRecording()).toBe(false);
    expect(span.spanContext().traceFlags).toBe(0);
    expect(propagation.fields()).toEqual([]);
  });

  it('registers globally when enabled (the counterpart of the test above)', async () => {
    const moduleRef = await compile([TracingModule.forRoot({ exporter: 'memory' })]);
    expect(moduleRef.get<TracingSdk>(TRACING_SDK).provider).toBeDefined();
    expect(trace.getTracer('t').startSpan('on').isRecording()).toBe(true);
    expect(propagation.fields()).toEqual(['traceparent', 'tracestate', 'baggage']);
  });
});

describe('TracingModule.forRootAsync', () => {
  it('useFactory with inject: [ConfigService]', async () => {
    const moduleRef = await compile([
      configModule(),
      TracingModule.forRootAsync({
        inject: [ConfigService],
        useFactory: (cfg: ConfigService) => ({
          serviceName: cfg.getOrThrow<string>('SERVICE_NAME'),
          spanProcessor: 'simple',
          exporter: {
            useFactory: (inner: ConfigService) => {
              expect(inner).toBe(cfg);
              return new InMemorySpanExporter();
            },
            inject: [ConfigService],
          },
        }),
      }),
    ]);
    const exporter = memoryExporter(moduleRef);
    await endSpan(moduleRef);
    expect(exporter.getFinishedSpans()[0]?.resource.attributes['service.name']).toBe(SERVICE);
  });

  it('useClass, with ConfigModule in the imports', async () => {
    const moduleRef = await compile([
      TracingModule.forRootAsync({
        imports: [
          ConfigModule.forRoot({ ignoreEnvFile: true, load: [() => ({ SERVICE_NAME: SERVICE })] }),
        ],
        useClass: TracingOptionsFromConfig,
      }),
    ]);
    const exporter = memoryExporter(moduleRef);
    await endSpan(moduleRef);
    expect(exporter.getFinishedSpans()[0]?.resource.attributes['service.name']).toBe(SERVICE);
  });

  it('useExisting, from a global module', async () => {
    const moduleRef = await compile([
      configModule(),
      TracingOptionsModule,
      TracingModule.forRootAsync({ useExisting: TracingOptionsFromConfig }),
    ]);
    const exporter = memoryExporter(moduleRef);
    await endSpan(moduleRef);
    expect(exporter.getFinishedSpans()[0]?.resource.attributes['service.name']).toBe(SERVICE);
  });
});

describe('TracingModule lifecycle', () => {
  it('flushes batched spans and releases the globals on app.close()', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [
        TracingModule.forRoot({
          exporter: 'memory',
          batch: { scheduledDelayMillis: 60_000 },
          http: { enabled: false },
        }),
      ],
    }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    await app.init();
    const exporter = app.get<SpanExporter[]>(TRACING_SPAN_EXPORTER)[0] as InMemorySpanExporter;
    // Spy on export: InMemorySpanExporter#shutdown clears what it holds.
    const exported: string[] = [];
    const original = exporter.export.bind(exporter);
    exporter.export = (spans, done) => {
      exported.push(...spans.map((s) => s.name));
      original(spans, done);
    };

    trace.getTracer('t').startSpan('last').end();
    expect(exported).toEqual([]);
    await app.close();

    expect(exported).toEqual(['last']);
    expect(trace.getTracer('t').startSpan('after').isRecording()).toBe(false);
    expect(propagation.fields()).toEqual([]);
  });

  it('exports a span once from two applications with the same exporters, until the last closes', async () => {
    const { printed, dir } = consoleSpans();
    const log = jest.spyOn(logger, 'log').mockImplementation(() => undefined);
    try {
      const options = { exporter: 'console' as const, spanProcessor: 'simple' as const };
      const gateway = await compile([TracingModule.forRoot({ ...options, serviceName: 'gw' })]);
      const service = await compile([TracingModule.forRoot({ ...options, serviceName: 'svc' })]);
      expect(log).toHaveBeenCalledWith(
        expect.stringMatching(/already runs in this process with the same exporters/),
      );
      trace.getTracer('test').startSpan('once').end();
      expect(printed).toEqual(['once']);
      // The first to close flushes; the other goes on exporting through the same exporter.
      await gateway.close();
      trace.getTracer('test').startSpan('after the first').end();
      expect(printed).toEqual(['once', 'after the first']);
      await service.close();
      expect(trace.getTracer('test').startSpan('after both').isRecording()).toBe(false);
    } finally {
      dir.mockRestore();
      log.mockRestore();
    }
  });

  it('keeps the exporters of an app started with another OTLP endpoint apart', async () => {
    const log = jest.spyOn(logger, 'log').mockImplementation(() => undefined);
    const saved = process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
    try {
      const options = { exporter: 'otlp' as const, spanProcessor: 'simple' as const };
      process.env.OTEL_EXPORTER_OTLP_ENDPOINT = 'http://127.0.0.1:9/a';
      const first = await compile([TracingModule.forRoot(options)]);
      process.env.OTEL_EXPORTER_OTLP_ENDPOINT = 'http://127.0.0.1:9/b';
      const second = await compile([TracingModule.forRoot(options)]);
      const processorsOf = (m: TestingModule) =>
        (m.get<TracingSdk>(TRACING_SDK) as unknown as { group?: { processors: unknown[] } }).group
          ?.processors;
      expect(processorsOf(second)).toBeDefined();
      expect(processorsOf(second)).not.toBe(processorsOf(first));
      expect(log).not.toHaveBeenCalledWith(expect.stringMatching(/with the same exporters/));
    } finally {
      if (saved === undefined) delete process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
      else process.env.OTEL_EXPORTER_OTLP_ENDPOINT = saved;
      log.mockRestore();
    }
  });

  it('exports to an exporter a test put in place of the same shorthand, beside the other app', async () => {
    const { printed, dir } = consoleSpans();
    try {
      const options = { exporter: 'console' as const, spanProcessor: 'simple' as const };
      await compile([TracingModule.forRoot(options)]);
      const memory = new InMemorySpanExporter();
      const overridden = await Test.createTestingModule({
        imports: [TracingModule.forRoot(options)],
      })
        .overrideProvider(TRACING_SPAN_EXPORTER)
        .useValue(memory)
        .compile();
      opened.push(overridden);
      trace.getTracer('test').startSpan('both').end();
      expect(printed).toEqual(['both']);
      expect(memory.getFinishedSpans().map((s) => s.name)).toEqual(['both']);
    } finally {
      dir.mockRestore();
    }
  });

  it('exports a span once when one application imports forRoot() twice with the same exporters', async () => {
    const { printed, dir } = consoleSpans();
    try {
      const options = { exporter: 'console' as const, isGlobal: false };
      @Module({ imports: [TracingModule.forRoot(options)] })
      class FeatureModule {}
      const app = await compile([TracingModule.forRoot(options), FeatureModule]);
      const sdks = [...app.get(ModulesContainer).values()]
        .filter((m) => m.metatype === TracingModule)
        .map((m) => m.providers.get(TRACING_SDK)!.instance as TracingSdk);
      expect(sdks).toHaveLength(2);
      trace.getTracer('test').startSpan('once').end();
      // Either module's forceFlush exports it: the second flushes through the first's processors.
      await sdks[1]!.forceFlush();
      expect(printed).toEqual(['once']);
      await sdks[0]!.forceFlush();
      expect(printed).toEqual(['once']);
    } finally {
      dir.mockRestore();
    }
  });

  it.each([
    ['an app module exporting to memory', { exporter: 'memory', spanProcessor: 'simple' }],
    ['an app module exporting elsewhere', { exporter: 'none' }],
  ])(
    'lets the test kit beside %s see every span, and the app module its own',
    async (_l, options) => {
      @Module({
        imports: [TracingModule.forRoot({ ...(options as TracingModuleOptions), isGlobal: false })],
      })
      class AppModule {}
      const app = await compile([AppModule, TracingTestingModule.forRoot()]);
      await endSpan(app, 'both');
      expect(app.get(TestSpans).names()).toEqual(['both']);
      const own = app
        .select(AppModule)
        .get<SpanExporter[]>(TRACING_SPAN_EXPORTER, { strict: false });
      for (const exporter of own) {
        expect((exporter as InMemorySpanExporter).getFinishedSpans().map((s) => s.name)).toEqual([
          'both',
        ]);
      }
    },
  );

  it('lets a second module start after the first closed', async () => {
    const first = await compile([
      TracingModule.forRoot({ serviceName: 'first', exporter: 'memory' }),
    ]);
    const firstProvider = first.get<TracingSdk>(TRACING_SDK).provider;
    await first.close();
    opened.splice(opened.indexOf(first), 1);
    const second = await compile([
      TracingModule.forRoot({ serviceName: 'second', exporter: 'memory', spanProcessor: 'simple' }),
    ]);
    const secondProvider = second.get<TracingSdk>(TRACING_SDK).provider;
    expect(secondProvider).toBeDefined();
    await endSpan(second, 'second');
    const exported = memoryExporter(second).getFinishedSpans();
    expect(exported.map((s) => s.name)).toEqual(['second']);
    // Had the first module kept the globals, the second would have joined its provider, resource
    // and all: the span would carry service.name 'first'.
    expect(exported[0]?.resource.attributes['service.name']).toBe('second');
    expect(secondProvider === firstProvider).toBe(false);
  });
});
