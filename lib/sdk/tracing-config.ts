import type { Attributes, TextMapPropagator } from '@opentelemetry/api';
import { parseKeyPairsIntoRecord } from '@opentelemetry/core';
import type {
  Sampler,
  SpanExporter,
  SpanLimits,
  SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import type {
  BatchProcessorOptions,
  ContextManagerName,
  ExporterName,
  ExporterOption,
  ExporterProvider,
  ExportThread,
  HttpIgnoreRule,
  PropagatorName,
  TracingModuleOptions,
} from '../interfaces/tracing-module-options.interface.js';

/** OTLP wire protocols, as `OTEL_EXPORTER_OTLP_PROTOCOL` names them. */
export type OtlpProtocol = 'http/protobuf' | 'http/json' | 'grpc';

/** What the sampler option or `OTEL_TRACES_SAMPLER` asked for. */
export type SamplerSpec =
  | { type: 'instance'; sampler: Sampler }
  | {
      type:
        | 'always_on'
        | 'always_off'
        | 'traceidratio'
        | 'parentbased_always_on'
        | 'parentbased_always_off'
        | 'parentbased_traceidratio';
      ratio: number;
    };

/** The options after defaults and the environment are applied, and everything is checked. */
export interface ResolvedTracingConfig {
  enabled: boolean;
  serviceName: string | undefined;
  /** Whether `serviceName` came from the options (else from `OTEL_SERVICE_NAME`, or none). */
  serviceNameGiven: boolean;
  serviceVersion: string | undefined;
  resourceAttributes: Attributes;
  exporters: ExporterOption[];
  otlpProtocol: OtlpProtocol;
  exportThread: ExportThread;
  contextManager: ContextManagerName;
  spanProcessor: 'batch' | 'simple' | SpanProcessor;
  batch: BatchProcessorOptions;
  sampler: SamplerSpec;
  propagators: Array<PropagatorName | TextMapPropagator>;
  http: ResolvedHttpConfig;
  microservices: { enabled: boolean };
  httpClient: { enabled: boolean };
  shutdownTimeoutMs: number;
  /** Span limits: OpenTelemetry's defaults, or the `OTEL_*_LIMIT` variables. */
  spanLimits: Readonly<Required<SpanLimits>>;
  /** Environment values that were ignored, to be logged once. */
  warnings: string[];
}

export interface ResolvedHttpConfig {
  enabled: boolean;
  ignore: HttpIgnoreRule[];
  requestHeaders: string[];
  responseHeaders: string[];
  traceResponse: boolean;
}

/** Thrown for options that cannot work; the message names the option and what is allowed. */
export class TracingConfigError extends Error {
  constructor(message: string) {
    super(`nestjs-tracing: ${message}`);
    this.name = 'TracingConfigError';
  }
}

export const EXPORTER_NAMES: readonly ExporterName[] = [
  'otlp',
  'otlp-http-json',
  'otlp-grpc',
  'zipkin',
  'console',
  'memory',
  'none',
];
export const PROPAGATOR_NAMES: readonly PropagatorName[] = [
  'tracecontext',
  'baggage',
  'b3',
  'b3multi',
  'jaeger',
  'none',
];
const OPTION_KEYS: ReadonlyArray<keyof TracingModuleOptions> = [
  'serviceName',
  'serviceVersion',
  'resourceAttributes',
  'exporter',
  'exportThread',
  'contextManager',
  'spanProcessor',
  'batch',
  'sampler',
  'propagators',
  'http',
  'microservices',
  'httpClient',
  'enabled',
  'shutdownTimeoutMs',
];
const HTTP_KEYS = ['enabled', 'ignore', 'requestHeaders', 'responseHeaders', 'traceResponse'];
const BATCH_KEYS: ReadonlyArray<keyof BatchProcessorOptions> = [
  'maxQueueSize',
  'maxExportBatchSize',
  'scheduledDelayMillis',
  'exportTimeoutMillis',
];
const ENV_SAMPLERS = [
  'always_on',
  'always_off',
  'traceidratio',
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
] as const;
const OTLP_PROTOCOLS: readonly OtlpProtocol[] = ['http/protobuf', 'http/json', 'grpc'];
const DEFAULT_SHUTDOWN_TIMEOUT_MS = 5000;

type Env = Record<string, string | undefined>;

/**
 * Resolves the module's options against the `OTEL_*` environment. Explicit
 * options win. An invalid option throws (the application should not start
 * half-configured); an invalid environment value is ignored with a warning, as
 * the OpenTelemetry specification asks of SDKs.
 */
export function resolveTracingConfig(
  options: TracingModuleOptions | undefined,
  env: Env = process.env,
): ResolvedTracingConfig {
  const opts: TracingModuleOptions = options ?? {};
  if (typeof opts !== 'object' || opts === null || Array.isArray(opts)) {
    throw new TracingConfigError(
      'options must be an object, e.g. forRoot({ serviceName: "orders" }).',
    );
  }
  checkKnownKeys(opts, OPTION_KEYS, 'options');
  const warnings: string[] = [];

  const enabled = resolveEnabled(opts, env, warnings);
  checkEnvResourceAttributes(env, warnings);
  const givenName = optionalString(opts.serviceName, 'serviceName');
  const serviceName = givenName ?? nonEmpty(env.OTEL_SERVICE_NAME);
  const serviceVersion = optionalString(opts.serviceVersion, 'serviceVersion');
  const resourceAttributes = resolveResourceAttributes(opts.resourceAttributes);
  const spanProcessor = resolveSpanProcessor(opts);
  const exporters = resolveExporters(opts, env, warnings);
  const otlpProtocol = resolveOtlpProtocol(env, warnings);
  const exportThread = resolveExportThread(opts.exportThread);
  const contextManager = resolveContextManager(opts.contextManager);
  const batch = resolveBatch(opts.batch, env, warnings, spanProcessor === 'batch');
  const sampler = resolveSampler(opts.sampler, env, warnings);
  const propagators = resolvePropagators(opts.propagators, env, warnings);
  const http = resolveHttp(opts.http);
  const microservices = resolveSwitch(opts.microservices, 'microservices');
  const httpClient = resolveSwitch(opts.httpClient, 'httpClient');
  const shutdownTimeoutMs = resolveShutdownTimeout(opts.shutdownTimeoutMs);
  const spanLimits = resolveSpanLimits(env, warnings);
  if (spanProcessor === 'simple' && usesOtlp(exporters)) {
    // OpenTelemetry's OTLP exporters refuse more than 30 exports in flight; one per span gets
    // there under the lightest load, and the refused spans are lost.
    warnings.push(
      "spanProcessor 'simple' sends every span to the OTLP exporter on its own, which refuses more than 30 exports at once: under load, spans are lost. Use 'batch' (the default) outside tests.",
    );
  }
  if (opts.batch !== undefined && spanProcessor !== 'batch') {
    warnings.push(
      "batch settings apply to the batch span processor only; with spanProcessor 'simple' or a processor of your own they are ignored.",
    );
  }
  checkEnvEndpoints(env, exporters, otlpProtocol, warnings);
  checkEnvExportSettings(env, exporters, warnings);

  return {
    enabled,
    serviceName,
    serviceNameGiven: givenName !== undefined,
    serviceVersion,
    resourceAttributes,
    exporters,
    otlpProtocol,
    exportThread,
    contextManager,
    spanProcessor,
    batch,
    sampler,
    propagators,
    http,
    microservices,
    httpClient,
    shutdownTimeoutMs,
    spanLimits,
    warnings,
  };
}

function resolveEnabled(opts: TracingModuleOptions, env: Env, warnings: string[]): boolean {
  if (opts.enabled !== undefined) {
    if (typeof opts.enabled !== 'boolean') {
      throw new TracingConfigError(`enabled must be true or false, got ${describe(opts.enabled)}.`);
    }
    return opts.enabled;
  }
  // A boolean variable is true only when it says so; anything but 'false' or nothing is said.
  const disabled = env.OTEL_SDK_DISABLED?.trim().toLowerCase() ?? '';
  if (disabled !== 'true' && disabled !== 'false' && disabled !== '') {
    warnings.push(
      `OTEL_SDK_DISABLED value '${env.OTEL_SDK_DISABLED}' is neither 'true' nor 'false'; taken as false.`,
    );
  }
  return disabled !== 'true';
}

/** The longest key or value OpenTelemetry's resource detector takes from the variable. */
const MAX_ENV_RESOURCE_LENGTH = 255;

/**
 * OpenTelemetry's resource detector reads `OTEL_RESOURCE_ATTRIBUTES` and drops a malformed value
 * whole, saying so only at debug level. Checked here by the specification's rules (key=value
 * pairs separated by commas, `,` and `=` percent-encoded, at most 255 characters each), so that
 * the drop is logged as a warning like any other invalid `OTEL_*` value.
 */
function checkEnvResourceAttributes(env: Env, warnings: string[]): void {
  const raw = env.OTEL_RESOURCE_ATTRIBUTES;
  if (raw === undefined) return;
  for (const entry of raw.split(',')) {
    if (entry.trim() === '') continue;
    const parts = entry.split('=');
    let valid = parts.length === 2 && parts[0]!.trim() !== '';
    if (valid) {
      try {
        valid = parts.every(
          (part) => decodeURIComponent(part.trim()).length <= MAX_ENV_RESOURCE_LENGTH,
        );
      } catch {
        valid = false;
      }
    }
    if (!valid) {
      warnings.push(
        `OTEL_RESOURCE_ATTRIBUTES entry '${entry}' is not a key=value pair (percent-encode ',' and '=', at most ${MAX_ENV_RESOURCE_LENGTH} characters each); the whole variable is ignored.`,
      );
      return;
    }
  }
}

function resolveResourceAttributes(value: unknown): Attributes {
  if (value === undefined) return {};
  if (!isPlainObject(value)) {
    throw new TracingConfigError(
      `resourceAttributes must be an object of attribute values, got ${describe(value)}.`,
    );
  }
  // An undefined value is no attribute, as OpenTelemetry's `Attributes` has it: one read from a
  // variable that is not set (`{ 'deployment.environment.name': process.env.DEPLOY_ENV }`).
  const attributes: Attributes = {};
  for (const [key, v] of Object.entries(value)) {
    if (v === undefined) continue;
    if (!isAttributeValue(v)) {
      throw new TracingConfigError(
        `resourceAttributes.${key} must be a string, number, boolean or an array of one of those, got ${describe(v)}.`,
      );
    }
    attributes[key] = v as Attributes[string];
  }
  return attributes;
}

function resolveSpanProcessor(opts: TracingModuleOptions): 'batch' | 'simple' | SpanProcessor {
  const value: unknown = opts.spanProcessor;
  if (value === undefined) return 'batch';
  if (value === 'batch' || value === 'simple') return value;
  if (isSpanProcessor(value)) {
    if (opts.exporter !== undefined) {
      throw new TracingConfigError(
        'set either spanProcessor (a SpanProcessor instance, which exports by itself) or exporter, not both. ' +
          "To keep the module's exporter, use spanProcessor: 'batch' or 'simple'.",
      );
    }
    return value;
  }
  throw new TracingConfigError(
    `spanProcessor must be 'batch', 'simple' or a SpanProcessor instance, got ${describe(value)}.`,
  );
}

function resolveExporters(
  opts: TracingModuleOptions,
  env: Env,
  warnings: string[],
): ExporterOption[] {
  if (opts.exporter !== undefined) {
    const list = Array.isArray(opts.exporter) ? opts.exporter : [opts.exporter];
    if (list.length === 0) {
      throw new TracingConfigError(
        "exporter must not be an empty array; use 'none' to export nothing.",
      );
    }
    list.forEach((entry, i) =>
      checkExporter(entry, Array.isArray(opts.exporter) ? `exporter[${i}]` : 'exporter'),
    );
    if (list.length > 1 && list.includes('none')) {
      throw new TracingConfigError(
        "exporter 'none' exports nothing and cannot be combined with other exporters; use it alone, or leave it out.",
      );
    }
    return list;
  }
  // 'otlp' here means OTLP in whatever protocol OTEL_EXPORTER_OTLP_PROTOCOL says.
  return envList<ExporterName>(env, 'OTEL_TRACES_EXPORTER', EXPORTER_NAMES, ['otlp'], warnings);
}

function checkExporter(entry: unknown, label: string): asserts entry is ExporterOption {
  if (typeof entry === 'string') {
    if (!(EXPORTER_NAMES as readonly string[]).includes(entry)) {
      throw new TracingConfigError(
        `${label} '${entry}' is unknown; use one of ${EXPORTER_NAMES.map((n) => `'${n}'`).join(', ')}, ` +
          'a SpanExporter instance, or { useClass } / { useFactory, inject }.',
      );
    }
    return;
  }
  if (isSpanExporter(entry)) return;
  if (isExporterProvider(entry)) {
    if ('useClass' in entry && typeof entry.useClass !== 'function') {
      throw new TracingConfigError(
        `${label}.useClass must be a class, got ${describe(entry.useClass)}.`,
      );
    }
    if ('useFactory' in entry) {
      if (typeof entry.useFactory !== 'function') {
        throw new TracingConfigError(
          `${label}.useFactory must be a function, got ${describe(entry.useFactory)}.`,
        );
      }
      if (entry.inject !== undefined && !Array.isArray(entry.inject)) {
        throw new TracingConfigError(`${label}.inject must be an array of injection tokens.`);
      }
    }
    return;
  }
  throw new TracingConfigError(
    `${label} must be an exporter name, a SpanExporter (with export() and shutdown()), ` +
      `or { useClass } / { useFactory, inject }; got ${describe(entry)}.`,
  );
}

/**
 * The OTLP/HTTP exporters read the endpoint variables themselves: one without an `http://` or
 * `https://` scheme (`localhost:4318`) fails every export, and one that is no URL at all is
 * dropped with a message only OpenTelemetry's diag logger shows. Said at start-up instead.
 */
function checkEnvEndpoints(
  env: Env,
  exporters: readonly ExporterOption[],
  protocol: OtlpProtocol,
  warnings: string[],
): void {
  const otlpHttp =
    exporters.includes('otlp-http-json') || (exporters.includes('otlp') && protocol !== 'grpc');
  if (!otlpHttp) return;
  for (const key of ['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', 'OTEL_EXPORTER_OTLP_ENDPOINT']) {
    const raw = nonEmpty(env[key])?.trim();
    if (raw === undefined) continue;
    // The traces endpoint, when set, is the one spans go to: the general one may serve others.
    if (key === 'OTEL_EXPORTER_OTLP_ENDPOINT' && nonEmpty(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)) {
      return;
    }
    let scheme: string | undefined;
    try {
      scheme = new URL(raw).protocol;
    } catch {
      scheme = undefined;
    }
    if (scheme !== 'http:' && scheme !== 'https:') {
      warnings.push(
        `${key} value '${withoutCredentials(raw)}' is not an http:// or https:// URL, so the OTLP exporter cannot send spans there (e.g. http://localhost:4318).`,
      );
    }
  }
}

/** An endpoint as a log may show it: credentials before the host (`user:password@`) left out. */
function withoutCredentials(endpoint: string): string {
  // Up to the last `@` before the path, as a URL parser splits it (a password may hold `@`).
  return endpoint.replace(/^([^/]*\/\/)?[^/?#]*@/, '$1REDACTED@');
}

/**
 * The OTLP exporters' other variables, which they read themselves (in their constructors, before
 * the module's diag logger is registered) and, when a value is invalid, ignore: said at
 * start-up instead. A header entry that is not `key=value` (read with OpenTelemetry's own
 * parser) is dropped without a word to anyone. Header values are never repeated (they hold
 * credentials).
 */
function checkEnvExportSettings(
  env: Env,
  exporters: readonly ExporterOption[],
  warnings: string[],
): void {
  if (!usesOtlp(exporters)) return;
  for (const prefix of ['OTEL_EXPORTER_OTLP_TRACES_', 'OTEL_EXPORTER_OTLP_']) {
    const compression = nonEmpty(env[`${prefix}COMPRESSION`])?.trim();
    if (compression !== undefined && compression !== 'gzip' && compression !== 'none') {
      warnings.push(
        `${prefix}COMPRESSION value '${compression}' is not gzip or none; the exporter ignores it.`,
      );
    }
    const timeout = nonEmpty(env[`${prefix}TIMEOUT`])?.trim();
    if (timeout !== undefined) {
      const ms = Number(timeout);
      if (!Number.isFinite(ms) || ms <= 0) {
        warnings.push(
          `${prefix}TIMEOUT value '${timeout}' is not a number of milliseconds above 0; the exporter ignores it.`,
        );
      }
    }
    const headers = nonEmpty(env[`${prefix}HEADERS`]);
    if (headers === undefined) continue;
    const entries = headers.split(',').filter((entry) => entry.trim() !== '');
    const bad = entries.flatMap((entry, i) =>
      Object.keys(parseKeyPairsIntoRecord(entry)).length === 1 ? [] : [i + 1],
    );
    if (bad.length > 0) {
      warnings.push(
        `${prefix}HEADERS has ${bad.length === 1 ? 'an entry' : 'entries'} that ${bad.length === 1 ? 'is' : 'are'} not key=value (${bad.join(', ')} of ${entries.length}), which the exporter drops.`,
      );
    }
  }
}

/** Whether one of the exporters is an OTLP one, of any protocol. */
function usesOtlp(exporters: readonly ExporterOption[]): boolean {
  return exporters.some((e) => e === 'otlp' || e === 'otlp-http-json' || e === 'otlp-grpc');
}

function resolveOtlpProtocol(env: Env, warnings: string[]): OtlpProtocol {
  for (const key of ['OTEL_EXPORTER_OTLP_TRACES_PROTOCOL', 'OTEL_EXPORTER_OTLP_PROTOCOL']) {
    const raw = nonEmpty(env[key])?.trim().toLowerCase();
    if (raw === undefined) continue;
    if ((OTLP_PROTOCOLS as readonly string[]).includes(raw)) return raw as OtlpProtocol;
    warnings.push(`${key} value '${raw}' is not one of ${OTLP_PROTOCOLS.join(', ')}; ignored.`);
  }
  return 'http/protobuf';
}

/** The environment variable behind each batch setting an option leaves out. */
const BATCH_ENV: Readonly<Record<keyof BatchProcessorOptions, string>> = {
  maxQueueSize: 'OTEL_BSP_MAX_QUEUE_SIZE',
  maxExportBatchSize: 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE',
  scheduledDelayMillis: 'OTEL_BSP_SCHEDULE_DELAY',
  exportTimeoutMillis: 'OTEL_BSP_EXPORT_TIMEOUT',
};
/** OpenTelemetry's BatchSpanProcessor defaults, for every setting neither option nor variable sets. */
export const BATCH_DEFAULTS: Readonly<Required<BatchProcessorOptions>> = {
  maxQueueSize: 2048,
  maxExportBatchSize: 512,
  scheduledDelayMillis: 5000,
  exportTimeoutMillis: 30000,
};

/** OpenTelemetry's default span limits. */
export const DEFAULT_SPAN_LIMITS: Readonly<Required<SpanLimits>> = Object.freeze({
  attributeCountLimit: 128,
  attributeValueLengthLimit: Infinity,
  eventCountLimit: 128,
  linkCountLimit: 128,
  attributePerEventCountLimit: 128,
  attributePerLinkCountLimit: 128,
});

/**
 * The variables of each span limit that OpenTelemetry's SDK for JavaScript reads (with the
 * specification's names for the per-event and per-link counts as well): the span-specific one
 * first, then the general one.
 */
const SPAN_LIMIT_ENV: ReadonlyArray<[keyof SpanLimits, string[]]> = [
  ['attributeCountLimit', ['OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT', 'OTEL_ATTRIBUTE_COUNT_LIMIT']],
  [
    'attributeValueLengthLimit',
    ['OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT', 'OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT'],
  ],
  ['eventCountLimit', ['OTEL_SPAN_EVENT_COUNT_LIMIT']],
  ['linkCountLimit', ['OTEL_SPAN_LINK_COUNT_LIMIT']],
  [
    'attributePerEventCountLimit',
    ['OTEL_SPAN_ATTRIBUTE_PER_EVENT_COUNT_LIMIT', 'OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT'],
  ],
  [
    'attributePerLinkCountLimit',
    ['OTEL_SPAN_ATTRIBUTE_PER_LINK_COUNT_LIMIT', 'OTEL_LINK_ATTRIBUTE_COUNT_LIMIT'],
  ],
];

/**
 * The span limits: the first valid variable of each, else the default. The same limits hold for
 * the package's spans and for the SDK's on the module's provider.
 */
function resolveSpanLimits(env: Env, warnings: string[]): Readonly<Required<SpanLimits>> {
  const limits: Required<SpanLimits> = { ...DEFAULT_SPAN_LIMITS };
  for (const [key, names] of SPAN_LIMIT_ENV) {
    // A value length of 0 would keep nothing of any string: at least 1.
    const min = key === 'attributeValueLengthLimit' ? 1 : 0;
    for (const name of names) {
      const raw = nonEmpty(env[name])?.trim();
      if (raw === undefined) continue;
      const n = Number(raw);
      if ((Number.isInteger(n) && n >= min) || n === Infinity) {
        limits[key] = n;
        break;
      }
      warnings.push(`${name} value '${raw}' is not an integer >= ${min}; ignored.`);
    }
  }
  return Object.freeze(limits);
}

/** `used`: the batch processor runs (else the settings are only checked; a warning says so). */
function resolveBatch(
  value: unknown,
  env: Env,
  warnings: string[],
  used: boolean,
): BatchProcessorOptions {
  if (value !== undefined && !isPlainObject(value)) {
    throw new TracingConfigError(`batch must be an object, got ${describe(value)}.`);
  }
  const given = value ?? {};
  checkKnownKeys(given, BATCH_KEYS, 'batch');
  const batch: BatchProcessorOptions = {};
  for (const key of BATCH_KEYS) {
    const v = given[key];
    const min = key === 'scheduledDelayMillis' ? 0 : 1;
    if (v === undefined) {
      // OTEL_BSP_* are read only for a batch processor that runs.
      if (!used) continue;
      const raw = nonEmpty(env[BATCH_ENV[key]])?.trim();
      if (raw === undefined) continue;
      const n = Number(raw);
      if (Number.isInteger(n) && n >= min) batch[key] = n;
      else warnings.push(`${BATCH_ENV[key]} value '${raw}' is not an integer >= ${min}; ignored.`);
      continue;
    }
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
      throw new TracingConfigError(
        `batch.${key} must be an integer >= ${min}, got ${describe(v)}.`,
      );
    }
    batch[key] = v;
  }
  const queueSize = batch.maxQueueSize ?? BATCH_DEFAULTS.maxQueueSize;
  const batchSize = batch.maxExportBatchSize ?? BATCH_DEFAULTS.maxExportBatchSize;
  if (batchSize > queueSize) {
    if (given.maxExportBatchSize !== undefined && given.maxQueueSize !== undefined) {
      throw new TracingConfigError(
        `batch.maxExportBatchSize (${batch.maxExportBatchSize}) must not exceed batch.maxQueueSize (${batch.maxQueueSize}).`,
      );
    }
    // One of them came from the environment or is the default: held to the queue, as the SDK does.
    // (The default batch too: a queue smaller than a batch could never fill one.)
    if (used) {
      warnings.push(
        `The batch size (${batchSize}) exceeds the span queue (${queueSize}); ` +
          `batches are ${queueSize} spans.`,
      );
    }
    batch.maxExportBatchSize = queueSize;
  }
  return batch;
}

function resolveSampler(value: unknown, env: Env, warnings: string[]): SamplerSpec {
  if (value !== undefined) {
    if (isSampler(value)) return { type: 'instance', sampler: value };
    if (isPlainObject(value) && 'ratio' in value) {
      checkKnownKeys(value, ['ratio'], 'sampler');
      const ratio = value.ratio;
      if (typeof ratio !== 'number' || !(ratio >= 0 && ratio <= 1)) {
        throw new TracingConfigError(
          `sampler.ratio must be a number from 0 to 1, got ${describe(ratio)}.`,
        );
      }
      return { type: 'parentbased_traceidratio', ratio };
    }
    throw new TracingConfigError(
      `sampler must be a Sampler (with shouldSample()) or { ratio: 0..1 }, got ${describe(value)}.`,
    );
  }
  const name = nonEmpty(env.OTEL_TRACES_SAMPLER)?.trim().toLowerCase();
  let type: (typeof ENV_SAMPLERS)[number] = 'parentbased_always_on';
  if (name !== undefined) {
    if ((ENV_SAMPLERS as readonly string[]).includes(name)) {
      type = name as (typeof ENV_SAMPLERS)[number];
    } else {
      warnings.push(
        `OTEL_TRACES_SAMPLER value '${name}' is not supported (use ${ENV_SAMPLERS.join(', ')}); using parentbased_always_on.`,
      );
    }
  }
  let ratio = 1;
  if (type === 'traceidratio' || type === 'parentbased_traceidratio') {
    const arg = nonEmpty(env.OTEL_TRACES_SAMPLER_ARG)?.trim();
    if (arg !== undefined) {
      const parsed = Number(arg);
      if (Number.isFinite(parsed) && parsed >= 0 && parsed <= 1) {
        ratio = parsed;
      } else {
        warnings.push(
          `OTEL_TRACES_SAMPLER_ARG value '${arg}' is not a number from 0 to 1; using 1.`,
        );
      }
    }
  }
  return { type, ratio };
}

function resolvePropagators(
  value: unknown,
  env: Env,
  warnings: string[],
): Array<PropagatorName | TextMapPropagator> {
  if (value !== undefined) {
    if (!Array.isArray(value)) {
      throw new TracingConfigError(
        `propagators must be an array of names (${PROPAGATOR_NAMES.join(', ')}) or TextMapPropagator instances, got ${describe(value)}.`,
      );
    }
    value.forEach((p: unknown, i) => {
      if (typeof p === 'string') {
        if (!(PROPAGATOR_NAMES as readonly string[]).includes(p)) {
          throw new TracingConfigError(
            `propagators[${i}] '${p}' is unknown; use one of ${PROPAGATOR_NAMES.join(', ')} or a TextMapPropagator instance.`,
          );
        }
      } else if (!isPropagator(p)) {
        throw new TracingConfigError(
          `propagators[${i}] must be a propagator name or a TextMapPropagator (inject, extract, fields), got ${describe(p)}.`,
        );
      }
    });
    if (value.length > 1 && value.includes('none')) {
      throw new TracingConfigError(
        "propagators 'none' propagates nothing and cannot be combined with other propagators; use it alone, or leave it out.",
      );
    }
    return dedupe(value as Array<PropagatorName | TextMapPropagator>);
  }
  return envList<PropagatorName>(
    env,
    'OTEL_PROPAGATORS',
    PROPAGATOR_NAMES,
    ['tracecontext', 'baggage'],
    warnings,
  );
}

/**
 * A comma-separated list of names from the environment: unknown names are
 * ignored with a warning, `none` wins over everything, an empty result means
 * the default.
 */
function envList<T extends string>(
  env: Env,
  key: string,
  allowed: readonly T[],
  fallback: T[],
  warnings: string[],
): T[] {
  const fromEnv = nonEmpty(env[key]);
  if (fromEnv === undefined) return fallback;
  const names: T[] = [];
  for (const raw of fromEnv.split(',')) {
    const name = raw.trim().toLowerCase();
    if (name === '') continue;
    if ((allowed as readonly string[]).includes(name)) {
      names.push(name as T);
    } else {
      warnings.push(
        `${key} value '${name}' is not supported (use ${allowed.join(', ')}); ignored.`,
      );
    }
  }
  if ((names as string[]).includes('none')) return ['none' as T];
  return names.length > 0 ? dedupe(names) : fallback;
}

function resolveHttp(value: unknown): ResolvedHttpConfig {
  const http: ResolvedHttpConfig = {
    enabled: true,
    ignore: [],
    requestHeaders: [],
    responseHeaders: [],
    traceResponse: true,
  };
  if (value === undefined) return http;
  if (!isPlainObject(value)) {
    throw new TracingConfigError(`http must be an object, got ${describe(value)}.`);
  }
  checkKnownKeys(value, HTTP_KEYS, 'http');
  for (const key of ['enabled', 'traceResponse'] as const) {
    const v = value[key];
    if (v === undefined) continue;
    if (typeof v !== 'boolean') {
      throw new TracingConfigError(`http.${key} must be true or false, got ${describe(v)}.`);
    }
    http[key] = v;
  }
  if (value.ignore !== undefined) {
    const rules: unknown[] = Array.isArray(value.ignore) ? value.ignore : [value.ignore];
    rules.forEach((rule, i) => {
      const ok =
        (typeof rule === 'string' && rule.startsWith('/')) ||
        rule instanceof RegExp ||
        typeof rule === 'function';
      if (!ok) {
        throw new TracingConfigError(
          `http.ignore[${i}] must be a path starting with '/' (globs allowed: /health/*, /internal/**), ` +
            `a RegExp or a function (request) => boolean; got ${describe(rule)}.`,
        );
      }
    });
    http.ignore = rules as HttpIgnoreRule[];
  }
  for (const key of ['requestHeaders', 'responseHeaders'] as const) {
    const v = value[key];
    if (v === undefined) continue;
    if (!Array.isArray(v)) {
      throw new TracingConfigError(
        `http.${key} must be an array of header names, e.g. ['x-request-id'], got ${describe(v)}.`,
      );
    }
    v.forEach((h: unknown, i) => {
      if (typeof h !== 'string' || !/^[!#$%&'*+.^_`|~0-9a-z-]+$/i.test(h)) {
        throw new TracingConfigError(
          `http.${key} must be an array of header names, e.g. ['x-request-id']: http.${key}[${i}] is ${describe(h)}.`,
        );
      }
    });
    http[key] = dedupe((v as string[]).map((h) => h.toLowerCase()));
  }
  return http;
}

/** An option group whose only key is `enabled` (default true). */
function resolveSwitch(value: unknown, label: string): { enabled: boolean } {
  if (value === undefined) return { enabled: true };
  if (!isPlainObject(value)) {
    throw new TracingConfigError(
      `${label} must be an object such as { enabled: false }, got ${describe(value)}.`,
    );
  }
  checkKnownKeys(value, ['enabled'], label);
  if (value.enabled !== undefined && typeof value.enabled !== 'boolean') {
    throw new TracingConfigError(
      `${label}.enabled must be true or false, got ${describe(value.enabled)}.`,
    );
  }
  return { enabled: value.enabled ?? true };
}

const CONTEXT_MANAGERS: ReadonlyArray<ContextManagerName> = [
  'auto',
  'promise-hooks',
  'async-local-storage',
];
function resolveContextManager(value: unknown): ContextManagerName {
  if (value === undefined) return 'auto';
  if (CONTEXT_MANAGERS.includes(value as ContextManagerName)) return value as ContextManagerName;
  throw new TracingConfigError(
    `contextManager must be 'auto', 'promise-hooks' or 'async-local-storage', got ${describe(value)}.`,
  );
}

function resolveExportThread(value: unknown): ExportThread {
  if (value === undefined) return 'worker';
  if (value === 'worker' || value === 'main') return value;
  throw new TracingConfigError(`exportThread must be 'worker' or 'main', got ${describe(value)}.`);
}

function resolveShutdownTimeout(value: unknown): number {
  if (value === undefined) return DEFAULT_SHUTDOWN_TIMEOUT_MS;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new TracingConfigError(
      `shutdownTimeoutMs must be a number of milliseconds >= 0, got ${describe(value)}.`,
    );
  }
  return value;
}

function checkKnownKeys(value: object, allowed: readonly string[], label: string): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) {
      const near = allowed.find((a) => editDistance(a.toLowerCase(), key.toLowerCase()) <= 2);
      throw new TracingConfigError(
        `${label} has an unknown key '${key}'` +
          (near ? ` (did you mean '${near}'?)` : '') +
          `; allowed: ${allowed.join(', ')}.`,
      );
    }
  }
}

/** Levenshtein distance, for "did you mean" on misspelt option names. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current[j] = Math.min(
        (previous[j] as number) + 1,
        (current[j - 1] as number) + 1,
        substitution,
      );
    }
    previous = current;
  }
  return previous[b.length] as number;
}

function optionalString(value: unknown, label: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.trim() === '') {
    throw new TracingConfigError(`${label} must be a non-empty string, got ${describe(value)}.`);
  }
  return value;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value !== undefined && value.trim() !== '' ? value : undefined;
}

function dedupe<T>(values: T[]): T[] {
  return [...new Set(values)];
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isAttributeValue(value: unknown): boolean {
  const scalar = (v: unknown) =>
    typeof v === 'string' ||
    typeof v === 'boolean' ||
    (typeof v === 'number' && Number.isFinite(v));
  return scalar(value) || (Array.isArray(value) && value.every((v) => v == null || scalar(v)));
}

function hasMethods(value: unknown, ...names: string[]): boolean {
  return (
    typeof value === 'object' &&
    value !== null &&
    names.every((n) => typeof (value as Record<string, unknown>)[n] === 'function')
  );
}

export function isSpanExporter(value: unknown): value is SpanExporter {
  return hasMethods(value, 'export', 'shutdown');
}

export function isSpanProcessor(value: unknown): value is SpanProcessor {
  return hasMethods(value, 'onStart', 'onEnd', 'forceFlush', 'shutdown');
}

export function isExporterProvider(value: unknown): value is ExporterProvider {
  return isPlainObject(value) && ('useClass' in value || 'useFactory' in value);
}

function isSampler(value: unknown): value is Sampler {
  return hasMethods(value, 'shouldSample');
}

function isPropagator(value: unknown): value is TextMapPropagator {
  return hasMethods(value, 'inject', 'extract', 'fields');
}

/** A value as an error message names it. */
function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `'${value}'`;
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'object') return `an object (${value.constructor?.name ?? 'Object'})`;
  if (typeof value === 'symbol') return value.toString();
  return `${value as string | number | boolean | bigint | undefined}`;
}

export { describe as describeValue };
