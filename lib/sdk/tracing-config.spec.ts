import type { Context, TextMapPropagator } from '@opentelemetry/api';
import {
  AlwaysOffSampler,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import type { TracingModuleOptions } from '../interfaces/tracing-module-options.interface.js';
import {
  EXPORTER_NAMES,
  TracingConfigError,
  resolveTracingConfig,
  type ResolvedTracingConfig,
} from './tracing-config.js';

/** Options as a user might write them in plain JavaScript, type errors included. */
const resolve = (options: unknown, env: Record<string, string | undefined> = {}) =>
  resolveTracingConfig(options as TracingModuleOptions, env);

/** The error thrown by `resolve`, for assertions on its class and message. */
function errorOf(options: unknown): Error {
  try {
    resolve(options);
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected resolveTracingConfig to throw');
}

class StubPropagator implements TextMapPropagator {
  inject(): void {}
  extract(ctx: Context): Context {
    return ctx;
  }
  fields(): string[] {
    return ['x-stub'];
  }
}

describe('resolveTracingConfig', () => {
  describe('defaults', () => {
    it('takes every option given as undefined as left out (exactOptionalPropertyTypes allows it)', () => {
      const given = {
        serviceName: undefined,
        serviceVersion: undefined,
        resourceAttributes: undefined,
        exporter: undefined,
        exportThread: undefined,
        contextManager: undefined,
        spanProcessor: undefined,
        batch: {
          maxQueueSize: undefined,
          maxExportBatchSize: undefined,
          scheduledDelayMillis: undefined,
          exportTimeoutMillis: undefined,
        },
        sampler: undefined,
        propagators: undefined,
        http: {
          enabled: undefined,
          ignore: undefined,
          requestHeaders: undefined,
          responseHeaders: undefined,
          traceResponse: undefined,
        },
        microservices: { enabled: undefined },
        httpClient: { enabled: undefined },
        enabled: undefined,
        shutdownTimeoutMs: undefined,
      } satisfies Record<keyof TracingModuleOptions, unknown> & TracingModuleOptions;
      const config = resolve(given);
      expect({ ...config, warnings: undefined }).toEqual({
        ...resolve({}),
        warnings: undefined,
      });
      expect(config.warnings).toEqual([]);
    });

    it('resolves an empty environment and no options to the documented defaults', () => {
      const config: ResolvedTracingConfig = resolve(undefined);
      expect(config).toEqual({
        enabled: true,
        serviceName: undefined,
        serviceNameGiven: false,
        serviceVersion: undefined,
        resourceAttributes: {},
        exporters: ['otlp'],
        otlpProtocol: 'http/protobuf',
        exportThread: 'worker',
        contextManager: 'auto',
        spanProcessor: 'batch',
        batch: {},
        sampler: { type: 'parentbased_always_on', ratio: 1 },
        propagators: ['tracecontext', 'baggage'],
        http: {
          enabled: true,
          ignore: [],
          requestHeaders: [],
          responseHeaders: [],
          traceResponse: true,
        },
        microservices: { enabled: true },
        httpClient: { enabled: true },
        shutdownTimeoutMs: 5000,
        spanLimits: {
          attributeCountLimit: 128,
          attributeValueLengthLimit: Infinity,
          eventCountLimit: 128,
          linkCountLimit: 128,
          attributePerEventCountLimit: 128,
          attributePerLinkCountLimit: 128,
        },
        warnings: [],
      });
    });

    it('treats {} like undefined', () => {
      expect(resolve({})).toEqual(resolve(undefined));
    });

    it('treats null like undefined', () => {
      expect(resolve(null)).toEqual(resolve(undefined));
    });

    it.each([['orders'], [42], [[{ serviceName: 'x' }]]])('rejects options %p', (options) => {
      expect(() => resolve(options)).toThrow(/options must be an object, e\.g\. forRoot\(/);
    });

    it('throws TracingConfigError with the package prefix', () => {
      const error = errorOf({ serviceName: 1 });
      expect(error).toBeInstanceOf(TracingConfigError);
      expect(error.name).toBe('TracingConfigError');
      expect(error.message).toMatch(/^nestjs-tracing: serviceName/);
    });
  });

  describe('unknown keys', () => {
    it('names the key, suggests the right spelling and lists the allowed keys', () => {
      expect(() => resolve({ servicename: 'orders' })).toThrow(
        /options has an unknown key 'servicename' \(did you mean 'serviceName'\?\); allowed: serviceName, serviceVersion, resourceAttributes, exporter, .*shutdownTimeoutMs\./,
      );
    });

    it('suggests the option a typo is close to', () => {
      expect(errorOf({ exporters: 'otlp' }).message).toMatch(
        /unknown key 'exporters' \(did you mean 'exporter'\?\)/,
      );
      expect(errorOf({ serviceNmae: 'x' }).message).toMatch(/did you mean 'serviceName'/);
    });

    it('lists the allowed keys without a suggestion when nothing is close', () => {
      const message = errorOf({ colour: 'red' }).message;
      expect(message).toMatch(/options has an unknown key 'colour'; allowed: serviceName,/);
      expect(message).not.toMatch(/did you mean/);
    });
  });

  describe('serviceName / serviceVersion', () => {
    it('keeps valid strings', () => {
      const config = resolve({ serviceName: 'orders', serviceVersion: '1.2.3' });
      expect(config.serviceName).toBe('orders');
      expect(config.serviceVersion).toBe('1.2.3');
    });

    it.each([
      ['serviceName', ''],
      ['serviceName', '   '],
      ['serviceName', 42],
      ['serviceVersion', ''],
      ['serviceVersion', { major: 1 }],
    ])('rejects %s = %p', (key, value) => {
      expect(() => resolve({ [key]: value })).toThrow(
        new RegExp(`${key} must be a non-empty string, got `),
      );
    });
  });

  describe('resourceAttributes', () => {
    it('keeps strings, numbers, booleans and homogeneous arrays', () => {
      const attributes = { team: 'payments', shard: 3, canary: false, zones: ['a', 'b'] };
      expect(resolve({ resourceAttributes: attributes }).resourceAttributes).toEqual(attributes);
    });

    it('leaves out a key whose value is undefined (a variable that is not set)', () => {
      const resolved = resolve({
        resourceAttributes: { team: 'payments', 'deployment.environment.name': undefined },
      }).resourceAttributes;
      expect(resolved).toEqual({ team: 'payments' });
      expect(Object.keys(resolved)).toEqual(['team']);
    });

    it.each([['a string'], [[1, 2]], [null]])('rejects a non-object (%p)', (value) => {
      expect(() => resolve({ resourceAttributes: value })).toThrow(
        /resourceAttributes must be an object of attribute values, got /,
      );
    });

    it.each([
      ['nested', { a: 1 }, /an object \(Object\)/],
      ['fn', () => 1, /a function/],
      ['nan', Number.NaN, /NaN/],
      ['infinite', Number.POSITIVE_INFINITY, /Infinity/],
    ])('rejects the value of %s and names the key', (key, value, got) => {
      const message = errorOf({ resourceAttributes: { [key]: value } }).message;
      expect(message).toMatch(
        new RegExp(
          `resourceAttributes\\.${key} must be a string, number, boolean or an array of one of those`,
        ),
      );
      expect(message).toMatch(got);
    });
  });

  describe('exporter', () => {
    it.each(EXPORTER_NAMES.map((name) => [name]))('accepts the shorthand %p', (name) => {
      expect(resolve({ exporter: name }).exporters).toEqual([name]);
    });

    it('accepts a SpanExporter instance as is', () => {
      const exporter = new InMemorySpanExporter();
      expect(resolve({ exporter }).exporters[0]).toBe(exporter);
    });

    it('accepts { useClass } and { useFactory, inject }', () => {
      const useClass = { useClass: InMemorySpanExporter };
      const useFactory = { useFactory: () => new InMemorySpanExporter(), inject: ['TOKEN'] };
      expect(resolve({ exporter: useClass }).exporters).toEqual([useClass]);
      expect(resolve({ exporter: useFactory }).exporters).toEqual([useFactory]);
    });

    it('accepts an array mixing the forms, in order', () => {
      const instance = new InMemorySpanExporter();
      const provider = { useFactory: () => new InMemorySpanExporter() };
      expect(resolve({ exporter: ['console', instance, provider] }).exporters).toEqual([
        'console',
        instance,
        provider,
      ]);
    });

    it('rejects an empty array and points at none', () => {
      expect(() => resolve({ exporter: [] })).toThrow(
        /exporter must not be an empty array; use 'none' to export nothing/,
      );
    });

    it('rejects an unknown name and lists every allowed name', () => {
      const message = errorOf({ exporter: 'jaeger' }).message;
      expect(message).toMatch(/exporter 'jaeger' is unknown; use one of /);
      for (const name of EXPORTER_NAMES) expect(message).toContain(`'${name}'`);
      expect(message).toMatch(
        /a SpanExporter instance, or \{ useClass \} \/ \{ useFactory, inject \}/,
      );
    });

    it('names the array index of a bad entry', () => {
      expect(() => resolve({ exporter: ['console', 'otlp-proto'] })).toThrow(
        /exporter\[1\] 'otlp-proto' is unknown/,
      );
    });

    it.each([
      [42, /got 42/],
      [{ export: () => undefined }, /got an object \(Object\)/],
      [null, /got null/],
    ])('rejects a value that is no exporter (%p)', (value, got) => {
      const message = errorOf({ exporter: value }).message;
      expect(message).toMatch(
        /exporter must be an exporter name, a SpanExporter \(with export\(\) and shutdown\(\)\), or \{ useClass \} \/ \{ useFactory, inject \}/,
      );
      expect(message).toMatch(got);
    });

    it('rejects a useClass that is not a class', () => {
      expect(() => resolve({ exporter: { useClass: 'InMemorySpanExporter' } })).toThrow(
        /exporter\.useClass must be a class, got 'InMemorySpanExporter'/,
      );
    });

    it('rejects a useFactory that is not a function', () => {
      expect(() => resolve({ exporter: { useFactory: new InMemorySpanExporter() } })).toThrow(
        /exporter\.useFactory must be a function, got an object \(InMemorySpanExporter\)/,
      );
    });

    it('rejects inject that is not an array', () => {
      expect(() =>
        resolve({ exporter: { useFactory: () => new InMemorySpanExporter(), inject: 'TOKEN' } }),
      ).toThrow(/exporter\.inject must be an array of injection tokens/);
    });
  });

  describe('spanProcessor', () => {
    it.each(['batch', 'simple'] as const)('accepts %p', (name) => {
      expect(resolve({ spanProcessor: name }).spanProcessor).toBe(name);
    });

    it('accepts a SpanProcessor instance when no exporter is set', () => {
      const processor = new SimpleSpanProcessor(new InMemorySpanExporter());
      expect(resolve({ spanProcessor: processor }).spanProcessor).toBe(processor);
    });

    it('rejects a SpanProcessor instance together with exporter, and says how to fix it', () => {
      const processor = new SimpleSpanProcessor(new InMemorySpanExporter());
      expect(() => resolve({ spanProcessor: processor, exporter: 'console' })).toThrow(
        /set either spanProcessor .* or exporter, not both\. To keep the module's exporter, use spanProcessor: 'batch' or 'simple'\./,
      );
    });

    it("allows 'simple' together with an exporter", () => {
      const config = resolve({ spanProcessor: 'simple', exporter: 'memory' });
      expect(config.spanProcessor).toBe('simple');
      expect(config.exporters).toEqual(['memory']);
    });

    it.each([['Batch'], [{ onEnd: () => undefined }], [1]])('rejects %p', (value) => {
      expect(() => resolve({ spanProcessor: value })).toThrow(
        /spanProcessor must be 'batch', 'simple' or a SpanProcessor instance, got /,
      );
    });
  });

  describe('batch', () => {
    it('keeps every valid key', () => {
      const batch = {
        maxQueueSize: 100,
        maxExportBatchSize: 100,
        scheduledDelayMillis: 0,
        exportTimeoutMillis: 1,
      };
      expect(resolve({ batch }).batch).toEqual(batch);
    });

    it('rejects a non-object', () => {
      expect(() => resolve({ batch: 512 })).toThrow(/batch must be an object, got 512/);
    });

    it('rejects an unknown key, with the suggestion and the allowed keys', () => {
      expect(() => resolve({ batch: { maxqueuesize: 10 } })).toThrow(
        /batch has an unknown key 'maxqueuesize' \(did you mean 'maxQueueSize'\?\); allowed: maxQueueSize, maxExportBatchSize, scheduledDelayMillis, exportTimeoutMillis\./,
      );
    });

    it.each([
      ['maxQueueSize', 0, 1],
      ['maxQueueSize', 1.5, 1],
      ['maxExportBatchSize', -1, 1],
      ['exportTimeoutMillis', 0, 1],
      ['exportTimeoutMillis', '1000', 1],
      ['scheduledDelayMillis', -1, 0],
      ['scheduledDelayMillis', Number.NaN, 0],
    ])('rejects %s = %p (minimum %p)', (key, value, min) => {
      expect(() => resolve({ batch: { [key]: value } })).toThrow(
        new RegExp(`batch\\.${key} must be an integer >= ${min}, got `),
      );
    });

    it('accepts the lower bounds', () => {
      expect(
        resolve({ batch: { maxQueueSize: 1, maxExportBatchSize: 1, scheduledDelayMillis: 0 } })
          .batch,
      ).toEqual({ maxQueueSize: 1, maxExportBatchSize: 1, scheduledDelayMillis: 0 });
    });

    it('takes what the options leave out from OTEL_BSP_*', () => {
      const config = resolve(
        { batch: { maxQueueSize: 100 } },
        {
          OTEL_BSP_MAX_QUEUE_SIZE: '7',
          OTEL_BSP_MAX_EXPORT_BATCH_SIZE: ' 50 ',
          OTEL_BSP_SCHEDULE_DELAY: '0',
          OTEL_BSP_EXPORT_TIMEOUT: '1000',
        },
      );
      expect(config.batch).toEqual({
        maxQueueSize: 100,
        maxExportBatchSize: 50,
        scheduledDelayMillis: 0,
        exportTimeoutMillis: 1000,
      });
      expect(config.warnings).toEqual([]);
    });

    it.each([
      ['OTEL_BSP_MAX_QUEUE_SIZE', 'lots', 1],
      ['OTEL_BSP_MAX_EXPORT_BATCH_SIZE', '0', 1],
      ['OTEL_BSP_SCHEDULE_DELAY', '-1', 0],
      ['OTEL_BSP_EXPORT_TIMEOUT', '2.5', 1],
    ])('ignores %s=%p with a warning (minimum %p)', (name, raw, min) => {
      const config = resolve({}, { [name]: raw });
      expect(config.batch).toEqual({});
      expect(config.warnings).toEqual([
        `${name} value '${raw}' is not an integer >= ${min}; ignored.`,
      ]);
    });

    it('holds a batch size from the environment to the queue size, with a warning', () => {
      const fromEnv = resolve(
        { batch: { maxQueueSize: 10 } },
        { OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '64' },
      );
      expect(fromEnv.batch).toEqual({ maxQueueSize: 10, maxExportBatchSize: 10 });
      expect(fromEnv.warnings).toEqual([
        'The batch size (64) exceeds the span queue (10); batches are 10 spans.',
      ]);
      // Against the default queue (2048) when only the batch size is given.
      expect(resolve({ batch: { maxExportBatchSize: 4096 } }).batch).toEqual({
        maxExportBatchSize: 2048,
      });
    });

    it('holds the default batch size (512) to a smaller queue, with a warning', () => {
      // A queue that can never hold a full batch would drop spans between two scheduled exports.
      for (const config of [
        resolve({ batch: { maxQueueSize: 100 } }),
        resolve({}, { OTEL_BSP_MAX_QUEUE_SIZE: '100' }),
      ]) {
        expect(config.batch).toEqual({ maxQueueSize: 100, maxExportBatchSize: 100 });
        expect(config.warnings).toEqual([
          'The batch size (512) exceeds the span queue (100); batches are 100 spans.',
        ]);
      }
      expect(resolve({ batch: { maxQueueSize: 512 } }).batch).toEqual({ maxQueueSize: 512 });
    });

    it("says only that batch settings are ignored with spanProcessor 'simple'", () => {
      expect(
        resolve(
          { spanProcessor: 'simple', exporter: 'memory', batch: { maxQueueSize: 10 } },
          { OTEL_BSP_SCHEDULE_DELAY: 'soon' },
        ).warnings,
      ).toEqual([
        "batch settings apply to the batch span processor only; with spanProcessor 'simple' or a processor of your own they are ignored.",
      ]);
    });

    it('rejects maxExportBatchSize > maxQueueSize with both values in the message', () => {
      expect(() => resolve({ batch: { maxQueueSize: 10, maxExportBatchSize: 11 } })).toThrow(
        /batch\.maxExportBatchSize \(11\) must not exceed batch\.maxQueueSize \(10\)/,
      );
    });
  });

  describe('sampler', () => {
    it('wraps a Sampler instance', () => {
      const sampler = new AlwaysOffSampler();
      expect(resolve({ sampler }).sampler).toEqual({ type: 'instance', sampler });
    });

    it.each([0, 0.25, 1])('turns { ratio: %p } into parent-based ratio sampling', (ratio) => {
      expect(resolve({ sampler: { ratio } }).sampler).toEqual({
        type: 'parentbased_traceidratio',
        ratio,
      });
    });

    it.each([
      [2, /got 2/],
      [-1, /got -1/],
      [Number.NaN, /got NaN/],
      ['0.5', /got '0.5'/],
    ])('rejects { ratio: %p }', (ratio, got) => {
      const message = errorOf({ sampler: { ratio } }).message;
      expect(message).toMatch(/sampler\.ratio must be a number from 0 to 1/);
      expect(message).toMatch(got);
    });

    it('rejects extra keys next to ratio', () => {
      expect(() => resolve({ sampler: { ratio: 0.5, root: 'x' } })).toThrow(
        /sampler has an unknown key 'root'; allowed: ratio\./,
      );
    });

    it.each([['always_on'], [{ probability: 0.5 }], [0.5], [{}]])(
      'rejects the wrong shape %p',
      (value) => {
        expect(() => resolve({ sampler: value })).toThrow(
          /sampler must be a Sampler \(with shouldSample\(\)\) or \{ ratio: 0\.\.1 \}, got /,
        );
      },
    );
  });

  describe('propagators', () => {
    it('keeps names and instances in order, without duplicates', () => {
      const stub = new StubPropagator();
      expect(
        resolve({ propagators: ['b3', 'tracecontext', stub, 'b3', 'jaeger', 'b3multi'] })
          .propagators,
      ).toEqual(['b3', 'tracecontext', stub, 'jaeger', 'b3multi']);
    });

    it("keeps ['none'] and an empty list", () => {
      expect(resolve({ propagators: ['none'] }).propagators).toEqual(['none']);
      expect(resolve({ propagators: [] }).propagators).toEqual([]);
    });

    it('rejects an unknown name and lists the allowed names', () => {
      expect(() => resolve({ propagators: ['tracecontext', 'w3c'] })).toThrow(
        /propagators\[1\] 'w3c' is unknown; use one of tracecontext, baggage, b3, b3multi, jaeger, none or a TextMapPropagator instance\./,
      );
    });

    it('rejects an object that is not a TextMapPropagator', () => {
      expect(() => resolve({ propagators: [{ inject: () => undefined }] })).toThrow(
        /propagators\[0\] must be a propagator name or a TextMapPropagator \(inject, extract, fields\), got an object/,
      );
    });

    it.each([['tracecontext'], [new StubPropagator()]])('rejects a non-array (%p)', (value) => {
      expect(() => resolve({ propagators: value })).toThrow(
        /propagators must be an array of names \(tracecontext, baggage, b3, b3multi, jaeger, none\) or TextMapPropagator instances, got /,
      );
    });
  });

  describe('http', () => {
    it('keeps valid settings and lower-cases header names', () => {
      const predicate = () => true;
      const http = resolve({
        http: {
          enabled: false,
          traceResponse: false,
          ignore: ['/health', /^\/metrics/, predicate, '/internal/**'],
          requestHeaders: ['X-Request-Id', 'x-request-id', 'user-agent'],
          responseHeaders: ['Content-Type'],
        },
      }).http;
      expect(http).toEqual({
        enabled: false,
        traceResponse: false,
        ignore: ['/health', /^\/metrics/, predicate, '/internal/**'],
        requestHeaders: ['x-request-id', 'user-agent'],
        responseHeaders: ['content-type'],
      });
    });

    it('wraps a single ignore rule in an array', () => {
      expect(resolve({ http: { ignore: '/health' } }).http.ignore).toEqual(['/health']);
    });

    it('rejects a non-object', () => {
      expect(() => resolve({ http: true })).toThrow(/http must be an object, got true/);
    });

    it('rejects an unknown key', () => {
      expect(() => resolve({ http: { ignored: ['/health'] } })).toThrow(
        /http has an unknown key 'ignored' \(did you mean 'ignore'\?\); allowed: enabled, ignore, requestHeaders, responseHeaders, traceResponse\./,
      );
    });

    it.each(['enabled', 'traceResponse'])('rejects a non-boolean %s', (key) => {
      expect(() => resolve({ http: { [key]: 'yes' } })).toThrow(
        new RegExp(`http\\.${key} must be true or false, got 'yes'`),
      );
    });

    it.each([
      [['health'], 0, /got 'health'/],
      [['/ok', 42], 1, /got 42/],
      [{ path: '/x' }, 0, /got an object/],
    ])('rejects ignore %p', (ignore, index, got) => {
      const message = errorOf({ http: { ignore } }).message;
      expect(message).toMatch(
        new RegExp(
          `http\\.ignore\\[${index}\\] must be a path starting with '/' \\(globs allowed: /health/\\*, /internal/\\*\\*\\), a RegExp or a function`,
        ),
      );
      expect(message).toMatch(got);
    });

    it.each([
      ['requestHeaders', 'x-request-id'],
      ['requestHeaders', ['x request id']],
      ['responseHeaders', ['content-type', 1]],
      ['responseHeaders', ['x-a:b']],
    ])('rejects %s = %p', (key, value) => {
      expect(() => resolve({ http: { [key]: value } })).toThrow(
        new RegExp(`http\\.${key} must be an array of header names, e\\.g\\. \\['x-request-id'\\]`),
      );
    });

    it('names the element that is no header name', () => {
      expect(() => resolve({ http: { responseHeaders: ['content-type', 1] } })).toThrow(
        "http.responseHeaders must be an array of header names, e.g. ['x-request-id']: http.responseHeaders[1] is 1.",
      );
    });
  });

  describe.each(['microservices', 'httpClient'] as const)('%s', (key) => {
    it('is on by default and can be turned off', () => {
      expect(resolve({})[key]).toEqual({ enabled: true });
      expect(resolve({ [key]: {} })[key]).toEqual({ enabled: true });
      expect(resolve({ [key]: { enabled: false } })[key]).toEqual({ enabled: false });
    });

    it.each([[false], ['off'], [[]]])('rejects %p in place of the object', (value) => {
      expect(() => resolve({ [key]: value })).toThrow(
        new RegExp(`${key} must be an object such as \\{ enabled: false \\}`),
      );
    });

    it('rejects a non-boolean enabled and unknown keys, with a suggestion', () => {
      expect(() => resolve({ [key]: { enabled: 'no' } })).toThrow(
        new RegExp(`${key}\\.enabled must be true or false, got 'no'`),
      );
      expect(() => resolve({ [key]: { enable: false } })).toThrow(
        new RegExp(`${key} has an unknown key 'enable' \\(did you mean 'enabled'\\?\\)`),
      );
    });
  });

  describe('enabled', () => {
    it.each([true, false])('keeps %p', (enabled) => {
      expect(resolve({ enabled }).enabled).toBe(enabled);
    });

    it.each([['false'], [0], [null]])('rejects %p', (value) => {
      expect(() => resolve({ enabled: value })).toThrow(/enabled must be true or false, got /);
    });

    it('still validates the other options when disabled', () => {
      expect(() => resolve({ enabled: false, exporter: 'nope' })).toThrow(/exporter 'nope'/);
    });
  });

  describe('exportThread', () => {
    it.each(['worker', 'main'] as const)('accepts %p', (value) => {
      expect(resolve({ exportThread: value }).exportThread).toBe(value);
    });

    it.each([['Main'], [true], [{ thread: 'main' }]])('rejects %p', (value) => {
      const error = errorOf({ exportThread: value });
      expect(error).toBeInstanceOf(TracingConfigError);
      expect(error.message).toMatch(/exportThread must be 'worker' or 'main', got /);
    });
  });

  describe('contextManager', () => {
    it.each(['auto', 'promise-hooks', 'async-local-storage'] as const)('accepts %p', (value) => {
      expect(resolve({ contextManager: value }).contextManager).toBe(value);
    });

    it.each([['als'], [false], [{}]])('rejects %p', (value) => {
      const error = errorOf({ contextManager: value });
      expect(error).toBeInstanceOf(TracingConfigError);
      expect(error.message).toMatch(
        /contextManager must be 'auto', 'promise-hooks' or 'async-local-storage', got /,
      );
    });
  });

  describe('shutdownTimeoutMs', () => {
    it.each([0, 250, 10_000])('keeps %p', (value) => {
      expect(resolve({ shutdownTimeoutMs: value }).shutdownTimeoutMs).toBe(value);
    });

    it.each([[-1], [Number.NaN], [Number.POSITIVE_INFINITY], ['5000']])('rejects %p', (value) => {
      expect(() => resolve({ shutdownTimeoutMs: value })).toThrow(
        /shutdownTimeoutMs must be a number of milliseconds >= 0, got /,
      );
    });
  });

  describe('conflicting options', () => {
    it.each([
      [{ exporter: ['none', 'console'] }, /exporter 'none' exports nothing and cannot be combined/],
      [
        { propagators: ['tracecontext', 'none'] },
        /propagators 'none' propagates nothing and cannot be combined/,
      ],
    ])('rejects %p', (options, message) => {
      const error = errorOf(options);
      expect(error.name).toBe('TracingConfigError');
      expect(error.message).toMatch(message);
    });

    it.each([['otlp'], ['otlp-http-json'], ['otlp-grpc']])(
      "warns that 'simple' with the %s exporter loses spans under load",
      (exporter) => {
        expect(resolve({ spanProcessor: 'simple', exporter }).warnings).toEqual([
          expect.stringMatching(
            /^spanProcessor 'simple' sends every span to the OTLP exporter on its own, which refuses more than 30 exports at once/,
          ),
        ]);
        expect(resolve({ spanProcessor: 'simple', exporter: 'memory' }).warnings).toEqual([]);
      },
    );

    it("accepts 'none' alone", () => {
      expect(resolve({ exporter: 'none', propagators: ['none'] }).exporters).toEqual(['none']);
    });

    it.each([
      ['simple', { spanProcessor: 'simple', exporter: 'console' }],
      [
        'a processor of its own',
        { spanProcessor: new SimpleSpanProcessor(new InMemorySpanExporter()) },
      ],
    ])('warns that batch settings are ignored with %s', (_label, options) => {
      expect(resolve({ ...options, batch: { scheduledDelayMillis: 100 } }).warnings).toEqual([
        expect.stringMatching(/^batch settings apply to the batch span processor only/),
      ]);
    });
  });

  describe('environment', () => {
    describe('OTLP endpoints', () => {
      it.each([
        ['OTEL_EXPORTER_OTLP_ENDPOINT', 'localhost:4318'],
        ['OTEL_EXPORTER_OTLP_ENDPOINT', 'notaurl'],
        ['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', 'ftp://collector/v1/traces'],
      ])('warns of %s=%p, which the exporter cannot send to', (key, value) => {
        expect(resolve({}, { [key]: value }).warnings).toEqual([
          `${key} value '${value}' is not an http:// or https:// URL, so the OTLP exporter cannot send spans there (e.g. http://localhost:4318).`,
        ]);
      });

      it.each([
        ['ftp://user:s3cret@collector:21', 'ftp://REDACTED@collector:21'],
        ['user:s3cret@collector:4318', 'REDACTED@collector:4318'],
        ['grpc://user:p@ss@collector', 'grpc://REDACTED@collector'],
        ['grpc://collector/path@v1', 'grpc://collector/path@v1'],
      ])('leaves the credentials of %p out of the warning', (value, shown) => {
        expect(resolve({}, { OTEL_EXPORTER_OTLP_ENDPOINT: value }).warnings).toEqual([
          `OTEL_EXPORTER_OTLP_ENDPOINT value '${shown}' is not an http:// or https:// URL, so the OTLP exporter cannot send spans there (e.g. http://localhost:4318).`,
        ]);
      });

      it.each([
        [{}, { OTEL_EXPORTER_OTLP_ENDPOINT: 'https://collector:4318' }],
        [{}, { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://127.0.0.1:4318/v1/traces' }],
        // Not an OTLP/HTTP exporter: not its variables to check.
        [{ exporter: 'console' }, { OTEL_EXPORTER_OTLP_ENDPOINT: 'localhost:4318' }],
        [
          {},
          { OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc', OTEL_EXPORTER_OTLP_ENDPOINT: 'localhost:4317' },
        ],
        // The general endpoint serves other signals; traces have their own.
        [
          {},
          {
            OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4317',
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:4318/v1/traces',
          },
        ],
      ])('says nothing of %p with %p', (options, env) => {
        expect(resolve(options, env).warnings).toEqual([]);
      });
    });

    describe("the OTLP exporters' other variables", () => {
      it.each([
        [
          'OTEL_EXPORTER_OTLP_COMPRESSION',
          'zip',
          "OTEL_EXPORTER_OTLP_COMPRESSION value 'zip' is not gzip or none; the exporter ignores it.",
        ],
        [
          'OTEL_EXPORTER_OTLP_TRACES_TIMEOUT',
          'abc',
          "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT value 'abc' is not a number of milliseconds above 0; the exporter ignores it.",
        ],
        [
          'OTEL_EXPORTER_OTLP_TIMEOUT',
          '0',
          "OTEL_EXPORTER_OTLP_TIMEOUT value '0' is not a number of milliseconds above 0; the exporter ignores it.",
        ],
        [
          'OTEL_EXPORTER_OTLP_HEADERS',
          'Bearer s3cret,x-ok=1',
          'OTEL_EXPORTER_OTLP_HEADERS has an entry that is not key=value (1 of 2), which the exporter drops.',
        ],
        [
          'OTEL_EXPORTER_OTLP_TRACES_HEADERS',
          'api-key=,=s3cret,x-ok=1',
          'OTEL_EXPORTER_OTLP_TRACES_HEADERS has entries that are not key=value (1, 2 of 3), which the exporter drops.',
        ],
      ])('warns of an invalid %s, never repeating a header', (key, value, warning) => {
        const { warnings } = resolve({}, { [key]: value });
        expect(warnings).toEqual([warning]);
        expect(warnings.join()).not.toContain('s3cret');
      });

      it.each([
        [{}, { OTEL_EXPORTER_OTLP_COMPRESSION: 'gzip', OTEL_EXPORTER_OTLP_TIMEOUT: '1500.5' }],
        [{}, { OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'api-key=a=b, x-team = payments,' }],
        [{ exporter: 'otlp-grpc' }, { OTEL_EXPORTER_OTLP_HEADERS: 'my key=v' }],
        // Not an OTLP exporter: not its variables to check.
        [{ exporter: 'zipkin' }, { OTEL_EXPORTER_OTLP_HEADERS: 'novalue' }],
      ])('says nothing of %p with %p', (options, env) => {
        expect(resolve(options, env).warnings).toEqual([]);
      });
    });

    describe('OTEL_SERVICE_NAME', () => {
      it('sets serviceName', () => {
        expect(resolve({}, { OTEL_SERVICE_NAME: 'billing' }).serviceName).toBe('billing');
      });

      it('is ignored when blank', () => {
        expect(resolve({}, { OTEL_SERVICE_NAME: '  ' }).serviceName).toBeUndefined();
      });

      it('loses to the option', () => {
        expect(
          resolve({ serviceName: 'orders' }, { OTEL_SERVICE_NAME: 'billing' }).serviceName,
        ).toBe('orders');
      });
    });

    describe('OTEL_RESOURCE_ATTRIBUTES', () => {
      it.each([['a=b'], [' a = b , c=d%2Ce '], ['a=,b=1'], [',,a=b,'], ['']])(
        'takes %p without a word',
        (value) => {
          expect(resolve({}, { OTEL_RESOURCE_ATTRIBUTES: value }).warnings).toEqual([]);
        },
      );

      it.each([
        ['a=b,broken', 'broken'],
        ['a=b=c', 'a=b=c'],
        ['=b', '=b'],
        ['a=%E0%A4%A', 'a=%E0%A4%A'],
        [`a=${'x'.repeat(256)}`, `a=${'x'.repeat(256)}`],
      ])('says %p is ignored whole, naming the entry', (value, entry) => {
        expect(resolve({}, { OTEL_RESOURCE_ATTRIBUTES: value }).warnings).toEqual([
          `OTEL_RESOURCE_ATTRIBUTES entry '${entry}' is not a key=value pair (percent-encode ',' and '=', at most 255 characters each); the whole variable is ignored.`,
        ]);
      });
    });

    describe('OTEL_SDK_DISABLED', () => {
      it.each([
        ['true', false],
        ['TRUE', false],
        [' True ', false],
        ['false', true],
        ['1', true],
        ['', true],
      ])('%p → enabled %p', (value, enabled) => {
        expect(resolve({}, { OTEL_SDK_DISABLED: value }).enabled).toBe(enabled);
      });

      it('says so when the value is neither true nor false', () => {
        expect(resolve({}, { OTEL_SDK_DISABLED: 'yes' }).warnings).toEqual([
          "OTEL_SDK_DISABLED value 'yes' is neither 'true' nor 'false'; taken as false.",
        ]);
        for (const value of ['true', 'FALSE', '', ' ']) {
          expect(resolve({}, { OTEL_SDK_DISABLED: value }).warnings).toEqual([]);
        }
      });

      it('loses to the option in both directions', () => {
        expect(resolve({ enabled: true }, { OTEL_SDK_DISABLED: 'true' }).enabled).toBe(true);
        expect(resolve({ enabled: false }, { OTEL_SDK_DISABLED: 'false' }).enabled).toBe(false);
      });
    });

    describe('span limits (OTEL_*_LIMIT)', () => {
      it('takes each limit from its span variable, else the general one', () => {
        const config = resolve(undefined, {
          OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT: '3',
          OTEL_ATTRIBUTE_COUNT_LIMIT: '9',
          OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT: ' 5 ',
          OTEL_SPAN_EVENT_COUNT_LIMIT: '0',
          OTEL_SPAN_LINK_COUNT_LIMIT: '2',
          OTEL_SPAN_ATTRIBUTE_PER_EVENT_COUNT_LIMIT: '4',
          OTEL_LINK_ATTRIBUTE_COUNT_LIMIT: '6',
        });
        expect(config.spanLimits).toEqual({
          attributeCountLimit: 3,
          attributeValueLengthLimit: 5,
          eventCountLimit: 0,
          linkCountLimit: 2,
          attributePerEventCountLimit: 4,
          attributePerLinkCountLimit: 6,
        });
        expect(config.warnings).toEqual([]);
      });

      it('ignores an invalid value with a warning, falling back to the general variable', () => {
        const config = resolve(undefined, {
          OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT: 'many',
          OTEL_ATTRIBUTE_COUNT_LIMIT: '7',
          OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT: '0',
          OTEL_SPAN_EVENT_COUNT_LIMIT: '-1',
          OTEL_SPAN_LINK_COUNT_LIMIT: '1.5',
        });
        expect(config.spanLimits.attributeCountLimit).toBe(7);
        expect(config.spanLimits.attributeValueLengthLimit).toBe(Infinity);
        expect(config.spanLimits.eventCountLimit).toBe(128);
        expect(config.spanLimits.linkCountLimit).toBe(128);
        expect(config.warnings).toEqual([
          "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT value 'many' is not an integer >= 0; ignored.",
          "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT value '0' is not an integer >= 1; ignored.",
          "OTEL_SPAN_EVENT_COUNT_LIMIT value '-1' is not an integer >= 0; ignored.",
          "OTEL_SPAN_LINK_COUNT_LIMIT value '1.5' is not an integer >= 0; ignored.",
        ]);
      });
    });

    describe('OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG', () => {
      it.each([
        ['always_on', 1],
        ['always_off', 1],
        ['traceidratio', 0.25],
        ['parentbased_always_on', 1],
        ['parentbased_always_off', 1],
        ['parentbased_traceidratio', 0.25],
      ])('reads %p (ratio %p with ARG 0.25)', (name, ratio) => {
        const config = resolve({}, { OTEL_TRACES_SAMPLER: name, OTEL_TRACES_SAMPLER_ARG: '0.25' });
        expect(config.sampler).toEqual({ type: name, ratio });
        expect(config.warnings).toEqual([]);
      });

      it('is case-insensitive and trims', () => {
        expect(resolve({}, { OTEL_TRACES_SAMPLER: ' TraceIdRatio ' }).sampler).toEqual({
          type: 'traceidratio',
          ratio: 1,
        });
      });

      it('warns about an unknown name and uses parentbased_always_on', () => {
        const config = resolve({}, { OTEL_TRACES_SAMPLER: 'probabilistic' });
        expect(config.sampler).toEqual({ type: 'parentbased_always_on', ratio: 1 });
        expect(config.warnings).toHaveLength(1);
        expect(config.warnings[0]).toMatch(
          /OTEL_TRACES_SAMPLER value 'probabilistic' is not supported \(use always_on, .*parentbased_traceidratio\); using parentbased_always_on\./,
        );
      });

      it.each(['2', '-0.1', 'half', 'NaN'])('warns about ARG %p and uses ratio 1', (arg) => {
        const config = resolve(
          {},
          { OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: arg },
        );
        expect(config.sampler).toEqual({ type: 'traceidratio', ratio: 1 });
        expect(config.warnings).toEqual([
          `OTEL_TRACES_SAMPLER_ARG value '${arg}' is not a number from 0 to 1; using 1.`,
        ]);
      });

      it('ignores ARG for samplers that take none', () => {
        const config = resolve(
          {},
          { OTEL_TRACES_SAMPLER: 'always_on', OTEL_TRACES_SAMPLER_ARG: 'x' },
        );
        expect(config.warnings).toEqual([]);
      });

      it('loses to the option, which also silences env warnings', () => {
        const config = resolve(
          { sampler: { ratio: 0.5 } },
          { OTEL_TRACES_SAMPLER: 'bogus', OTEL_TRACES_SAMPLER_ARG: '7' },
        );
        expect(config.sampler).toEqual({ type: 'parentbased_traceidratio', ratio: 0.5 });
        expect(config.warnings).toEqual([]);
      });
    });

    describe('OTEL_PROPAGATORS', () => {
      it('reads a comma-separated list, trimmed, lower-cased, deduplicated', () => {
        expect(
          resolve({}, { OTEL_PROPAGATORS: ' B3Multi, jaeger,,tracecontext,b3multi ' }).propagators,
        ).toEqual(['b3multi', 'jaeger', 'tracecontext']);
      });

      it("'none' anywhere wins", () => {
        expect(resolve({}, { OTEL_PROPAGATORS: 'tracecontext,none' }).propagators).toEqual([
          'none',
        ]);
      });

      it('warns about an unknown name and keeps the known ones', () => {
        const config = resolve({}, { OTEL_PROPAGATORS: 'tracecontext,xray' });
        expect(config.propagators).toEqual(['tracecontext']);
        expect(config.warnings).toEqual([
          "OTEL_PROPAGATORS value 'xray' is not supported (use tracecontext, baggage, b3, b3multi, jaeger, none); ignored.",
        ]);
      });

      it('falls back to tracecontext,baggage when nothing known is left', () => {
        const config = resolve({}, { OTEL_PROPAGATORS: 'xray' });
        expect(config.propagators).toEqual(['tracecontext', 'baggage']);
        expect(config.warnings).toHaveLength(1);
      });

      it('loses to the option', () => {
        const config = resolve({ propagators: ['jaeger'] }, { OTEL_PROPAGATORS: 'b3,xray' });
        expect(config.propagators).toEqual(['jaeger']);
        expect(config.warnings).toEqual([]);
      });
    });

    describe('OTEL_TRACES_EXPORTER', () => {
      it('reads a comma-separated list', () => {
        expect(resolve({}, { OTEL_TRACES_EXPORTER: 'zipkin, Console' }).exporters).toEqual([
          'zipkin',
          'console',
        ]);
      });

      it("'none' anywhere wins", () => {
        expect(resolve({}, { OTEL_TRACES_EXPORTER: 'otlp,none,console' }).exporters).toEqual([
          'none',
        ]);
      });

      it('warns about an unknown name and keeps the known ones', () => {
        const config = resolve({}, { OTEL_TRACES_EXPORTER: 'jaeger,console' });
        expect(config.exporters).toEqual(['console']);
        expect(config.warnings).toHaveLength(1);
        expect(config.warnings[0]).toMatch(
          /OTEL_TRACES_EXPORTER value 'jaeger' is not supported \(use otlp, otlp-http-json, otlp-grpc, zipkin, console, memory, none\); ignored\./,
        );
      });

      it("falls back to 'otlp' when nothing known is left", () => {
        expect(resolve({}, { OTEL_TRACES_EXPORTER: 'jaeger' }).exporters).toEqual(['otlp']);
      });

      it('loses to the option', () => {
        const config = resolve({ exporter: 'memory' }, { OTEL_TRACES_EXPORTER: 'zipkin,bogus' });
        expect(config.exporters).toEqual(['memory']);
        expect(config.warnings).toEqual([]);
      });
    });

    describe('OTEL_EXPORTER_OTLP_PROTOCOL / OTEL_EXPORTER_OTLP_TRACES_PROTOCOL', () => {
      it.each(['http/protobuf', 'http/json', 'grpc'])('reads %p from the general variable', (p) => {
        expect(resolve({}, { OTEL_EXPORTER_OTLP_PROTOCOL: p }).otlpProtocol).toBe(p);
      });

      it('reads the traces variable', () => {
        expect(resolve({}, { OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'GRPC' }).otlpProtocol).toBe(
          'grpc',
        );
      });

      it('prefers the traces variable over the general one', () => {
        expect(
          resolve(
            {},
            {
              OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
              OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'grpc',
            },
          ).otlpProtocol,
        ).toBe('grpc');
      });

      it('warns about an invalid value and keeps the default', () => {
        const config = resolve({}, { OTEL_EXPORTER_OTLP_PROTOCOL: 'http' });
        expect(config.otlpProtocol).toBe('http/protobuf');
        expect(config.warnings).toEqual([
          "OTEL_EXPORTER_OTLP_PROTOCOL value 'http' is not one of http/protobuf, http/json, grpc; ignored.",
        ]);
      });

      it('warns about an invalid traces value and falls back to the general one', () => {
        const config = resolve(
          {},
          {
            OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'thrift',
            OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
          },
        );
        expect(config.otlpProtocol).toBe('http/json');
        expect(config.warnings).toEqual([
          "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL value 'thrift' is not one of http/protobuf, http/json, grpc; ignored.",
        ]);
      });
    });
  });
});
