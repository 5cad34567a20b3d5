import {
  context,
  propagation,
  trace,
  type TextMapPropagator,
  type TracerProvider,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  CompositePropagator,
  W3CBaggagePropagator,
  W3CTraceContextPropagator,
} from '@opentelemetry/core';
import { OTLPTraceExporter as OTLPProtoTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { OTLPTraceExporter as OTLPJsonTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import {
  defaultResource,
  detectResources,
  envDetector,
  resourceFromAttributes,
  type Resource,
} from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ConsoleSpanExporter,
  InMemorySpanExporter,
  ParentBasedSampler,
  SimpleSpanProcessor,
  TraceIdRatioBasedSampler,
  type Sampler,
  type SpanExporter,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import type {
  ExporterName,
  PropagatorName,
} from '../interfaces/tracing-module-options.interface.js';
import {
  TracingConfigError,
  type ResolvedTracingConfig,
  type SamplerSpec,
} from './tracing-config.js';

/**
 * Every OpenTelemetry SDK object the package builds is built in this file, so a
 * move to the next SDK major touches one file.
 */

/**
 * Formats `traceresponse` / `Server-Timing` values: always W3C, whatever
 * propagators the app configured, so a caller can read them.
 */
export const traceparentFormatter: TextMapPropagator = new W3CTraceContextPropagator();

/** Where the SDK reports what it did; the Nest layer passes its Logger. */
export interface SdkLogger {
  log(message: string): void;
  warn(message: string): void;
}

/** Optional packages, loaded only when chosen. */
const OPTIONAL_PACKAGES = {
  'otlp-grpc': { pkg: '@opentelemetry/exporter-trace-otlp-grpc', range: '^0.223.0' },
  zipkin: { pkg: '@opentelemetry/exporter-zipkin', range: '^2.12.0' },
  b3: { pkg: '@opentelemetry/propagator-b3', range: '^2.12.0' },
  jaeger: { pkg: '@opentelemetry/propagator-jaeger', range: '^2.12.0' },
} as const;

async function loadOptional<T>(
  what: keyof typeof OPTIONAL_PACKAGES,
  label: string,
  load: () => Promise<T>,
): Promise<T> {
  try {
    return await load();
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
      const { pkg, range } = OPTIONAL_PACKAGES[what];
      throw new TracingConfigError(
        `${label} needs the optional package ${pkg}, which is not installed: ` +
          `install ${pkg} (npm install ${pkg}@${range}).`,
      );
    }
    throw error;
  }
}

/** Builds the exporter a shorthand names; `undefined` for `'none'`. */
export async function createExporter(
  name: ExporterName,
  config: Pick<ResolvedTracingConfig, 'otlpProtocol'>,
): Promise<SpanExporter | undefined> {
  const resolved =
    name === 'otlp'
      ? config.otlpProtocol === 'grpc'
        ? 'otlp-grpc'
        : config.otlpProtocol === 'http/json'
          ? 'otlp-http-json'
          : 'otlp-proto'
      : name;
  switch (resolved) {
    // The OTLP exporters read OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT / HEADERS /
    // TIMEOUT / COMPRESSION themselves, and default to localhost:4318 (4317 for gRPC).
    case 'otlp-proto':
      return new OTLPProtoTraceExporter();
    case 'otlp-http-json':
      return new OTLPJsonTraceExporter();
    case 'otlp-grpc': {
      const mod = await loadOptional(
        'otlp-grpc',
        "The 'otlp-grpc' exporter",
        () => import('@opentelemetry/exporter-trace-otlp-grpc'),
      );
      return new mod.OTLPTraceExporter();
    }
    case 'zipkin': {
      const mod = await loadOptional(
        'zipkin',
        "The 'zipkin' exporter",
        () => import('@opentelemetry/exporter-zipkin'),
      );
      return new mod.ZipkinExporter();
    }
    case 'console':
      return new ConsoleSpanExporter();
    case 'memory':
      return new InMemorySpanExporter();
    case 'none':
      return undefined;
  }
}

/** Builds the global propagator from names and instances. */
export async function createPropagator(
  specs: Array<PropagatorName | TextMapPropagator>,
): Promise<TextMapPropagator> {
  const propagators: TextMapPropagator[] = [];
  for (const spec of specs) {
    if (typeof spec !== 'string') {
      propagators.push(spec);
      continue;
    }
    switch (spec) {
      case 'tracecontext':
        propagators.push(new W3CTraceContextPropagator());
        break;
      case 'baggage':
        propagators.push(new W3CBaggagePropagator());
        break;
      case 'b3':
      case 'b3multi': {
        const mod = await loadOptional(
          'b3',
          `The '${spec}' propagator`,
          () => import('@opentelemetry/propagator-b3'),
        );
        propagators.push(
          new mod.B3Propagator({
            injectEncoding:
              spec === 'b3'
                ? mod.B3InjectEncoding.SINGLE_HEADER
                : mod.B3InjectEncoding.MULTI_HEADER,
          }),
        );
        break;
      }
      case 'jaeger': {
        const mod = await loadOptional(
          'jaeger',
          "The 'jaeger' propagator",
          () => import('@opentelemetry/propagator-jaeger'),
        );
        propagators.push(new mod.JaegerPropagator());
        break;
      }
      case 'none':
        break;
    }
  }
  return new CompositePropagator({ propagators });
}

export function createSampler(spec: SamplerSpec): Sampler {
  switch (spec.type) {
    case 'instance':
      return spec.sampler;
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(spec.ratio);
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(spec.ratio) });
  }
}

export function createResource(config: ResolvedTracingConfig): Resource {
  const explicit = { ...config.resourceAttributes };
  if (config.serviceName !== undefined) explicit[ATTR_SERVICE_NAME] = config.serviceName;
  if (config.serviceVersion !== undefined) explicit[ATTR_SERVICE_VERSION] = config.serviceVersion;
  // Later merges win: SDK defaults < OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME < options.
  return defaultResource()
    .merge(detectResources({ detectors: [envDetector] }))
    .merge(resourceFromAttributes(explicit));
}

export function createSpanProcessors(
  config: ResolvedTracingConfig,
  exporters: SpanExporter[],
): SpanProcessor[] {
  if (typeof config.spanProcessor === 'object') return [config.spanProcessor];
  return exporters.map((exporter) =>
    config.spanProcessor === 'simple'
      ? new SimpleSpanProcessor(exporter)
      : new BatchSpanProcessor(exporter, config.batch),
  );
}

let reportedExternalProvider = false;

/**
 * The running SDK of one module instance: the provider it built and the
 * globals it registered, or, when another SDK was registered first, a handle
 * that flushes that one on shutdown.
 */
export class TracingSdk {
  private shutdownPromise: Promise<void> | undefined;

  private constructor(
    /** Our provider; undefined when disabled or when another provider is in charge. */
    readonly provider: NodeTracerProvider | undefined,
    readonly enabled: boolean,
    private readonly owns: { trace: boolean; context: boolean; propagation: boolean },
    private readonly shutdownTimeoutMs: number,
    private readonly logger: SdkLogger,
    private readonly processors: readonly SpanProcessor[] = [],
  ) {}

  /** A handle that does nothing: tracing is off. */
  static disabled(logger: SdkLogger): TracingSdk {
    return new TracingSdk(
      undefined,
      false,
      { trace: false, context: false, propagation: false },
      0,
      logger,
    );
  }

  /** Builds the provider and registers it, the context manager and the propagators globally. */
  static async start(
    config: ResolvedTracingConfig,
    exporters: SpanExporter[],
    logger: SdkLogger,
  ): Promise<TracingSdk> {
    const propagator = await createPropagator(config.propagators);
    const spanProcessors = createSpanProcessors(config, exporters);
    const provider = new NodeTracerProvider({
      resource: createResource(config),
      sampler: createSampler(config.sampler),
      spanProcessors,
    });
    if (!trace.setGlobalTracerProvider(provider)) {
      if (!reportedExternalProvider) {
        reportedExternalProvider = true;
        logger.log(
          'A global OpenTelemetry tracer provider is already registered (for example by ' +
            '@opentelemetry/sdk-node); nestjs-tracing uses it and ignores its own exporter, ' +
            'sampler and propagator options.',
        );
      }
      await provider.shutdown();
      return new TracingSdk(
        undefined,
        true,
        { trace: false, context: false, propagation: false },
        config.shutdownTimeoutMs,
        logger,
      );
    }
    const contextManager = new AsyncLocalStorageContextManager().enable();
    const ownsContext = context.setGlobalContextManager(contextManager);
    if (!ownsContext) contextManager.disable();
    const ownsPropagation = propagation.setGlobalPropagator(propagator);
    return new TracingSdk(
      provider,
      true,
      { trace: true, context: ownsContext, propagation: ownsPropagation },
      config.shutdownTimeoutMs,
      logger,
      spanProcessors,
    );
  }

  /** Exports every finished span now. */
  async forceFlush(): Promise<void> {
    const target = this.provider ?? externalProvider();
    await target?.forceFlush();
  }

  /**
   * Flushes and shuts the provider down within the shutdown timeout, then
   * unregisters the globals this instance registered. Safe to call twice.
   */
  shutdown(): Promise<void> {
    this.shutdownPromise ??= this.doShutdown();
    return this.shutdownPromise;
  }

  private async doShutdown(): Promise<void> {
    if (!this.enabled) return;
    try {
      // Another SDK owns its own shutdown; flushing it keeps our last spans.
      const work = this.provider
        ? this.flushThenShutdown(this.provider)
        : (externalProvider()?.forceFlush() ?? Promise.resolve());
      const finished = await withTimeout(work, this.shutdownTimeoutMs);
      if (!finished) {
        this.logger.warn(
          `Span export did not finish within shutdownTimeoutMs (${this.shutdownTimeoutMs} ms); ` +
            'spans not yet exported were dropped.',
        );
      }
    } catch (error) {
      this.logger.warn(`Span export failed during shutdown: ${(error as Error).message}`);
    } finally {
      if (this.owns.trace) trace.disable();
      if (this.owns.propagation) propagation.disable();
      if (this.owns.context) context.disable();
    }
  }

  /**
   * SimpleSpanProcessor#shutdown (sdk-trace 2.x) does not wait for exports in
   * flight, so each processor is flushed first. Flushing the processors one by
   * one, not through the provider (which swallows errors), lets a failed export
   * reach the shutdown warning.
   */
  private async flushThenShutdown(provider: NodeTracerProvider): Promise<void> {
    try {
      await Promise.all(this.processors.map((processor) => processor.forceFlush()));
    } finally {
      await provider.shutdown();
    }
  }
}

function externalProvider(): { forceFlush(): Promise<void> } | undefined {
  const global = trace.getTracerProvider() as TracerProvider & { getDelegate?: () => unknown };
  const delegate = typeof global.getDelegate === 'function' ? global.getDelegate() : global;
  const flush = (delegate as { forceFlush?: unknown } | undefined)?.forceFlush;
  return typeof flush === 'function' ? (delegate as { forceFlush(): Promise<void> }) : undefined;
}

async function withTimeout(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
    timer.unref();
  });
  try {
    return await Promise.race([work.then(() => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
