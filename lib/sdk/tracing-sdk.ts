import {
  context,
  propagation,
  isSpanContextValid,
  trace,
  TraceFlags,
  type Attributes,
  type Context,
  type ContextManager,
  type Link,
  type SpanKind,
  type TextMapPropagator,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  asyncLocalStorageUsesPromiseHooks,
  PromiseContextManager,
} from './promise-context-manager.js';
import {
  CompositePropagator,
  W3CBaggagePropagator,
  W3CTraceContextPropagator,
} from '@opentelemetry/core';
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
  SamplingDecision,
  SimpleSpanProcessor,
  TraceIdRatioBasedSampler,
  type ReadableSpan,
  type Sampler,
  type SamplingResult,
  type SpanExporter,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import type {
  ContextManagerName,
  ExporterName,
  PropagatorName,
} from '../interfaces/tracing-module-options.interface.js';
import { exportErrorText, registerDiagLogger } from './diag-logger.js';
import { EncodingBatchSpanProcessor } from './encoding-batch-processor.js';
import { PooledIdGenerator } from './id-generator.js';
import { isCheckedSpanContext, PackageTracer } from './span.js';
import { globalDelegate, SHARED_SDK } from './tracer.js';
import { TRACER_NAME, TRACER_VERSION } from '../tracing.constants.js';
import { withSendableBaggage } from '../propagation/sendable-baggage.js';
import { OtlpProtoTraceExporter } from './otlp-proto-exporter.js';
import { keepTickShape } from './tick-shape.js';
import { errorMessage, errorText } from './errors.js';
import {
  BATCH_DEFAULTS,
  TracingConfigError,
  type ResolvedTracingConfig,
  type SamplerSpec,
} from './tracing-config.js';

/**
 * Every OpenTelemetry SDK object the package builds is built in this file, so a
 * move to the next SDK major touches one file.
 */

/** Where the SDK reports what it did; the Nest layer passes its Logger. */
export interface SdkLogger {
  log(message: string): void;
  warn(message: string): void;
}

// As early as the package loads: the GCs of an app's start are what drop the tick classes.
keepTickShape();

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

/** Exporters the package built from a shorthand (`'otlp'`...), as opposed to the application's. */
const builtExporters = new WeakSet<SpanExporter>();

/** Builds the exporter a shorthand names; `undefined` for `'none'`. */
export async function createExporter(
  name: ExporterName,
  config: Pick<ResolvedTracingConfig, 'otlpProtocol' | 'exportThread'>,
): Promise<SpanExporter | undefined> {
  const exporter = await buildExporter(name, config);
  if (exporter !== undefined) builtExporters.add(exporter);
  return exporter;
}

async function buildExporter(
  name: ExporterName,
  config: Pick<ResolvedTracingConfig, 'otlpProtocol' | 'exportThread'>,
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
      return new OtlpProtoTraceExporter(config.exportThread);
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

/**
 * A propagator that injects a span context only when it is valid. OpenTelemetry's Jaeger
 * propagator writes any span context it is given: a call made outside any span (the HTTP client
 * instrumentations inject the invalid one there) went out with an all-zero `uber-trace-id`,
 * which W3C's and B3's propagators never write. Baggage is still injected.
 */
function withValidSpanContext(inner: TextMapPropagator): TextMapPropagator {
  return {
    inject(ctx, carrier, setter) {
      const spanContext = trace.getSpanContext(ctx);
      const valid = spanContext === undefined || isSpanContextValid(spanContext);
      const sendable = withSendableBaggage(ctx, 'header-per-key');
      inner.inject(valid ? sendable : trace.deleteSpan(sendable), carrier, setter);
    },
    extract: (ctx, carrier, getter) => inner.extract(ctx, carrier, getter),
    fields: () => inner.fields(),
  };
}

/**
 * OpenTelemetry's W3C baggage propagator, injecting only what it can write
 * ({@link withSendableBaggage}).
 */
function sendableW3CBaggage(): TextMapPropagator {
  const inner = new W3CBaggagePropagator();
  return {
    inject: (ctx, carrier, setter) =>
      inner.inject(withSendableBaggage(ctx, 'w3c'), carrier, setter),
    extract: (ctx, carrier, getter) => inner.extract(ctx, carrier, getter),
    fields: () => inner.fields(),
  };
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
        propagators.push(sendableW3CBaggage());
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
        propagators.push(withValidSpanContext(new mod.JaegerPropagator()));
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
      return new OwnParentBasedSampler({ root: new AlwaysOnSampler() });
    case 'parentbased_always_off':
      return new OwnParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new OwnParentBasedSampler({ root: new TraceIdRatioBasedSampler(spec.ratio) });
  }
}

const FOLLOW_SAMPLED: SamplingResult = Object.freeze({
  decision: SamplingDecision.RECORD_AND_SAMPLED,
});
const FOLLOW_NOT_SAMPLED: SamplingResult = Object.freeze({ decision: SamplingDecision.NOT_RECORD });

/**
 * OpenTelemetry's ParentBasedSampler with its default delegates for a parent (follow its sampled
 * flag, remote or local), made by {@link createSampler}. A parent whose ids are known to be valid
 * is followed as it is: a span of the package's own tracer (its ids are valid when they are made),
 * or the remote parent the package's tracer checked just before asking (see
 * `isCheckedSpanContext`). ParentBasedSampler would check those ids again: two hex scans, ~1.3k
 * instructions for each child span, ~2k for a remote parent's sliced strings (callgrind). Any
 * other parent, and every call from elsewhere, goes through ParentBasedSampler.
 */
class OwnParentBasedSampler extends ParentBasedSampler {
  override shouldSample(
    ctx: Context,
    traceId: string,
    spanName: string,
    spanKind: SpanKind,
    attributes: Attributes,
    links: Link[],
  ): SamplingResult {
    const parent = trace.getSpanContext(ctx);
    if (parent !== undefined && isCheckedSpanContext(parent)) {
      return (parent.traceFlags & TraceFlags.SAMPLED) !== 0 ? FOLLOW_SAMPLED : FOLLOW_NOT_SAMPLED;
    }
    return super.shouldSample(ctx, traceId, spanName, spanKind, attributes, links);
  }
}

export function createResource(config: ResolvedTracingConfig): Resource {
  const explicit = { ...config.resourceAttributes };
  // serviceName, else resourceAttributes' service.name, else OTEL_SERVICE_NAME: options win.
  const serviceName = config.serviceNameGiven
    ? config.serviceName
    : (explicit[ATTR_SERVICE_NAME] ?? config.serviceName);
  if (serviceName !== undefined) explicit[ATTR_SERVICE_NAME] = serviceName;
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
  // Every setting given: OTEL_BSP_* are resolved (and invalid ones dropped) with the others, so
  // the SDK's processor reads no variable of its own.
  const settings = { ...BATCH_DEFAULTS, ...config.batch };
  return exporters.map((exporter) => {
    if (config.spanProcessor === 'simple') return new SimpleSpanProcessor(exporter);
    // The default exporter's spans are encoded as they end (same behaviour, less garbage).
    if (exporter instanceof OtlpProtoTraceExporter) {
      return new EncodingBatchSpanProcessor(exporter, settings);
    }
    return new BatchSpanProcessor(exporter, settings);
  });
}

let reportedExternalProvider = false;
let reportedSharedProvider = false;
let reportedSharedExport = false;
let reportedSecondModule = false;

/**
 * Hands every span to a list of processors that modules add and remove while
 * the provider lives: several Nest apps in one process (a gateway and a service
 * in one e2e test, two testing modules) then share the one global provider, and
 * each module's exporters see every span.
 */
class SharedSpanProcessor implements SpanProcessor {
  processors: SpanProcessor[] = [];

  onStart(span: Parameters<SpanProcessor['onStart']>[0], parentContext: Context): void {
    for (const processor of this.processors) processor.onStart(span, parentContext);
  }

  onEnding(span: Parameters<SpanProcessor['onStart']>[0]): void {
    for (const processor of this.processors) processor.onEnding?.(span);
  }

  onEnd(span: ReadableSpan): void {
    for (const processor of this.processors) processor.onEnd(span);
  }

  async forceFlush(): Promise<void> {
    await Promise.all(this.processors.map((processor) => processor.forceFlush()));
  }

  async shutdown(): Promise<void> {
    await Promise.all(this.processors.map((processor) => processor.shutdown()));
  }
}

/** A number for each exporter object of the application's that a module exports to. */
const exporterIds = new WeakMap<SpanExporter, number>();

/**
 * What a module exports to, as a key: two modules of one process with the same key would export
 * every span twice (each module's exporters get every span of the provider). Exporters the package
 * built from the same shorthands, with the same `OTEL_EXPORTER_*` environment, send alike; an exporter object
 * that replaced them (`overrideProvider(TRACING_SPAN_EXPORTER)` in a test) counts as itself.
 * Undefined (never the same) when the exporter or processor options are objects of the
 * application's, or for an in-memory exporter, which each module's own `TestSpans` and
 * `TRACING_SPAN_EXPORTER` read.
 */
function exportSettingsOf(
  config: ResolvedTracingConfig,
  exporters: readonly SpanExporter[],
): string | undefined {
  if (typeof config.spanProcessor !== 'string') return undefined;
  if (!config.exporters.every((e) => typeof e === 'string' && e !== 'memory')) return undefined;
  const objects = exporters.map((exporter) => {
    if (builtExporters.has(exporter)) return 0;
    let id = exporterIds.get(exporter);
    if (id === undefined) exporterIds.set(exporter, (id = nextExporterId++));
    return id;
  });
  // What the built exporters read from the environment as they were made (endpoints, headers
  // with a tenant's key, timeouts), which may change between two modules' starts.
  const environment = Object.keys(process.env)
    .filter((name) => name.startsWith('OTEL_EXPORTER_'))
    .sort()
    .map((name) => [name, process.env[name]]);
  return JSON.stringify([
    config.exporters,
    objects,
    environment,
    config.spanProcessor,
    config.batch,
    config.otlpProtocol,
    config.exportThread,
  ]);
}
let nextExporterId = 1;

/** The processors that export for every module with one export key, and how many use them. */
interface ExportGroup {
  readonly key: string;
  readonly processors: SpanProcessor[];
  users: number;
}

/** The provider this package registered globally, shared by the modules running in this process. */
interface SharedSdk {
  provider: NodeTracerProvider;
  /** Starts this package's own spans on `provider`'s settings (see {@link PackageTracer}). */
  tracer: PackageTracer;
  processor: SharedSpanProcessor;
  users: number;
  /** What this SDK registered: the last module out unregisters it. */
  owns: { context: boolean; propagation: boolean; diag: (() => void) | undefined };
  /** Per application (its module container), the export settings its modules run with. */
  apps: WeakMap<object, Set<string>>;
  /** The processors exporting for each export key ({@link exportSettingsOf}). */
  groups: Map<string, ExportGroup>;
}

function newGroup(shared: SharedSdk, key: string, processors: SpanProcessor[]): ExportGroup {
  const group: ExportGroup = { key, processors, users: 1 };
  shared.groups.set(key, group);
  return group;
}

type WithShared = typeof globalThis & { [SHARED_SDK]?: SharedSdk };

function sharedSdk(): SharedSdk | undefined {
  const shared = (globalThis as WithShared)[SHARED_SDK];
  // Someone may have reset the API since (trace.disable() in a test): then it is gone.
  return shared !== undefined && globalDelegate() === shared.provider ? shared : undefined;
}

/**
 * The running SDK of one module instance: its span processors, attached to the
 * provider this package registered globally (built by the first module to
 * start, released by the last to stop), or, when another SDK registered its
 * provider first, a handle that flushes that one on shutdown.
 */
export class TracingSdk {
  private shutdownPromise: Promise<void> | undefined;

  private constructor(
    /** The provider in use when it is this package's; undefined when disabled or another SDK is in charge. */
    readonly provider: NodeTracerProvider | undefined,
    readonly enabled: boolean,
    private readonly shutdownTimeoutMs: number,
    private readonly logger: SdkLogger,
    /** The processors this module built; they export only when it is the first of its group. */
    private readonly processors: readonly SpanProcessor[] = [],
    private readonly shared?: SharedSdk,
    /** The processors this module exports through, shared with modules exporting alike. */
    private readonly group?: ExportGroup,
  ) {}

  /** A handle that does nothing: tracing is off. */
  static disabled(logger: SdkLogger): TracingSdk {
    return new TracingSdk(undefined, false, 0, logger);
  }

  /**
   * Builds the provider and registers it, the context manager and the
   * propagators globally; or, when this package already did so in this
   * process, adds this module's processors to that provider.
   */
  static async start(
    config: ResolvedTracingConfig,
    exporters: SpanExporter[],
    logger: SdkLogger,
    app?: object,
  ): Promise<TracingSdk> {
    const propagator = await createPropagator(config.propagators);
    const spanProcessors = createSpanProcessors(config, exporters);
    const existing = sharedSdk();
    const exportKey = exportSettingsOf(config, exporters);
    if (existing !== undefined) {
      // A module whose exporters send as another's do (the same shorthands and settings, or the
      // same exporter objects) would have them receive every span a second time: it exports
      // through that module's processors, which stop with the last module using them. (In-memory
      // exporters never share: each module's TestSpans and TRACING_SPAN_EXPORTER read their own.)
      const known = app === undefined ? undefined : existing.apps.get(app);
      let group = exportKey === undefined ? undefined : existing.groups.get(exportKey);
      if (group !== undefined && known?.has(group.key) === true) {
        if (!reportedSecondModule) {
          reportedSecondModule = true;
          logger.warn(
            'TracingModule is imported more than once in this application (forRoot() in two ' +
              'modules): the later one adds no exporters, so that spans are not exported twice. ' +
              'Import it once; it is global unless isGlobal is false.',
          );
        }
      } else if (group !== undefined) {
        if (!reportedSharedExport) {
          reportedSharedExport = true;
          logger.log(
            'Another TracingModule already runs in this process with the same exporters: this ' +
              'one exports through them, so that spans are not exported twice, and shares its ' +
              'resource, sampler and propagators.',
          );
        }
      } else if (!reportedSharedProvider) {
        reportedSharedProvider = true;
        logger.log(
          'Another TracingModule already runs in this process: this one adds its exporters to ' +
            "that module's tracer provider, and shares its resource, sampler and propagators.",
        );
      }
      if (group === undefined) {
        existing.processor.processors.push(...spanProcessors);
        group = exportKey === undefined ? undefined : newGroup(existing, exportKey, spanProcessors);
      } else {
        group.users++;
      }
      if (app !== undefined && exportKey !== undefined) {
        if (known === undefined) existing.apps.set(app, new Set([exportKey]));
        else known.add(exportKey);
      }
      existing.users++;
      return new TracingSdk(
        existing.provider,
        true,
        config.shutdownTimeoutMs,
        logger,
        spanProcessors,
        existing,
        group,
      );
    }

    const processor = new SharedSpanProcessor();
    processor.processors.push(...spanProcessors);
    const settings = {
      resource: createResource(config),
      sampler: createSampler(config.sampler),
      idGenerator: new PooledIdGenerator(),
      spanLimits: config.spanLimits,
    };
    // Spans of other tracers on this provider (`trace.getTracer(...)` in an app) are the SDK's;
    // the package's own are PackageTracer's, on the same settings and processors.
    const provider = new NodeTracerProvider({ ...settings, spanProcessors: [processor] });
    const tracer = new PackageTracer(
      { name: TRACER_NAME, version: TRACER_VERSION },
      { ...settings, processor },
    );
    if (!trace.setGlobalTracerProvider(provider)) {
      if (!reportedExternalProvider) {
        reportedExternalProvider = true;
        logger.log(
          'A global OpenTelemetry tracer provider is already registered (for example by ' +
            '@opentelemetry/sdk-node); nestjs-tracing uses it and ignores its own exporter, ' +
            'sampler and propagator options, and its resource options (serviceName, ' +
            'serviceVersion, resourceAttributes).',
        );
      }
      await provider.shutdown();
      return new TracingSdk(undefined, true, config.shutdownTimeoutMs, logger);
    }
    // Enabled only once registered: the package's manager takes the promise hooks over from one
    // enabled before, which may still be the registered one (after a test's trace.disable()).
    const contextManager = createContextManager(config.contextManager);
    const ownsContext = context.setGlobalContextManager(contextManager);
    if (ownsContext) {
      contextManager.enable();
      keepTickShape();
    }
    const ownsPropagation = propagation.setGlobalPropagator(propagator);
    const unregisterDiag = registerDiagLogger(logger);
    const shared: SharedSdk = {
      provider,
      tracer,
      processor,
      users: 1,
      owns: { context: ownsContext, propagation: ownsPropagation, diag: unregisterDiag },
      apps: new WeakMap(
        app === undefined || exportKey === undefined ? [] : [[app, new Set([exportKey])]],
      ),
      groups: new Map(),
    };
    (globalThis as WithShared)[SHARED_SDK] = shared;
    const group = exportKey === undefined ? undefined : newGroup(shared, exportKey, spanProcessors);
    return new TracingSdk(
      provider,
      true,
      config.shutdownTimeoutMs,
      logger,
      spanProcessors,
      shared,
      group,
    );
  }

  /**
   * Exports every finished span now. Resolves once the exports are answered; one that failed
   * (the collector down) is logged as a warning, as at shutdown, never thrown at the caller.
   */
  async forceFlush(): Promise<void> {
    try {
      if (this.shared !== undefined) {
        const processors = this.group?.processors ?? this.processors;
        await Promise.all(processors.map((processor) => processor.forceFlush()));
      } else if (this.enabled) {
        await externalProvider()?.forceFlush();
      }
    } catch (error) {
      this.logger.warn(`Span export failed during forceFlush: ${failureText(error)}`);
    }
  }

  /**
   * Flushes and shuts this module's processors down within the shutdown
   * timeout; the last module to stop also shuts the provider down and
   * unregisters the globals. Safe to call twice.
   */
  shutdown(): Promise<void> {
    this.shutdownPromise ??= this.doShutdown();
    return this.shutdownPromise;
  }

  private async doShutdown(): Promise<void> {
    if (!this.enabled) return;
    const shared = this.shared;
    const { flush, stop } = this.leaveGroup();
    try {
      // Another SDK owns its own shutdown; flushing it keeps our last spans.
      const work =
        shared !== undefined
          ? this.flushThenShutdown(flush, stop)
          : (externalProvider()?.forceFlush() ?? Promise.resolve());
      const finished = await withTimeout(work, this.shutdownTimeoutMs);
      if (!finished) {
        this.logger.warn(
          `Span export did not finish within shutdownTimeoutMs (${this.shutdownTimeoutMs} ms); ` +
            'spans whose export was not answered may not have reached the collector. An ' +
            'exporter retries a collector that refuses connections or does not answer: is it ' +
            'running, at the endpoint configured?',
        );
      }
    } catch (error) {
      this.logger.warn(`Span export failed during shutdown: ${failureText(error)}`);
    } finally {
      if (shared !== undefined) {
        shared.processor.processors = shared.processor.processors.filter(
          (processor) => !stop.includes(processor),
        );
        shared.users--;
        if (shared.users === 0) this.release(shared);
      }
    }
  }

  /** The last module out shuts the provider down and unregisters what it registered. */
  private release(shared: SharedSdk): void {
    const global = globalThis as WithShared;
    if (global[SHARED_SDK] === shared) delete global[SHARED_SDK];
    // Its processors are all gone by now, so nothing is left to export.
    void shared.provider.shutdown().catch(() => undefined);
    if (globalDelegate() === shared.provider) trace.disable();
    if (shared.owns.propagation) propagation.disable();
    if (shared.owns.context) context.disable();
    shared.owns.diag?.();
  }

  /**
   * What this module's shutdown flushes and stops. It flushes the processors it exports through;
   * it stops its own, and its group's once no other module exports through them (the group's
   * first module may stop before the others). A module that joined a group never exported
   * through its own processors.
   */
  private leaveGroup(): { flush: readonly SpanProcessor[]; stop: readonly SpanProcessor[] } {
    const group = this.group;
    if (this.shared === undefined || group === undefined) {
      return { flush: this.processors, stop: this.processors };
    }
    group.users--;
    const own = group.processors === this.processors ? [] : this.processors;
    if (group.users > 0) return { flush: group.processors, stop: own };
    this.shared.groups.delete(group.key);
    return { flush: group.processors, stop: [...group.processors, ...own] };
  }

  /**
   * SimpleSpanProcessor#shutdown (sdk-trace 2.x) does not wait for exports in
   * flight, so each processor is flushed first. Flushing them one by one, not
   * through the provider (which swallows errors), lets a failed export reach
   * the shutdown warning.
   */
  private async flushThenShutdown(
    flush: readonly SpanProcessor[],
    stop: readonly SpanProcessor[],
  ): Promise<void> {
    try {
      await Promise.all(flush.map((processor) => processor.forceFlush()));
    } finally {
      await Promise.all(stop.map((processor) => processor.shutdown()));
    }
  }
}

function externalProvider(): { forceFlush(): Promise<void> } | undefined {
  const delegate = globalDelegate();
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

/** The context manager `contextManager` names; `'auto'` picks by what `AsyncLocalStorage` costs here. */
function createContextManager(name: ContextManagerName): ContextManager {
  const promiseHooks =
    name === 'promise-hooks' || (name === 'auto' && asyncLocalStorageUsesPromiseHooks());
  return promiseHooks ? new PromiseContextManager() : new AsyncLocalStorageContextManager();
}

/** A failed export as the log says it, with what the collector answered. */
function failureText(error: unknown): string {
  const { code, data } = (error ?? {}) as { code?: unknown; data?: unknown };
  return exportErrorText(errorMessage(error) ?? errorText(error), code, data);
}
