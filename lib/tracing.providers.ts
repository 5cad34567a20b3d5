import {
  Inject,
  Logger,
  Optional,
  type FactoryProvider,
  type InjectionToken,
  type OptionalFactoryDependency,
} from '@nestjs/common';
import { ModuleRef, ModulesContainer } from '@nestjs/core';
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';
import type {
  ExporterOption,
  ExporterProvider,
  TracingModuleOptions,
} from './interfaces/tracing-module-options.interface.js';
import {
  TracingConfigError,
  isExporterProvider,
  isSpanExporter,
  resolveTracingConfig,
  type ResolvedTracingConfig,
} from './sdk/tracing-config.js';
import { startHttpClientTracing } from './client/http-client-tracing.js';
import { startMicroservicesTracing } from './microservices/microservices-tracing.installer.js';
import { createExporter, TracingSdk } from './sdk/tracing-sdk.js';
import { TRACING_SDK, TRACING_SPAN_EXPORTER } from './tracing.constants.js';
import { TRACING_MODULE_OPTIONS } from './tracing.module-definition.js';

/** Internal token of the resolved, checked configuration. */
export const TRACING_CONFIG = Symbol.for('nestjs-tracing:config');
/** Internal token of the transport tracing (microservices, outbound HTTP) of one module. */
export const TRACING_TRANSPORTS = Symbol.for('nestjs-tracing:transports');

/** What the transports provider started; `stop()` undoes it, once. */
export interface TransportTracing {
  stop(): void;
}

export const logger = new Logger('TracingModule');

// Which providers exist never depends on the options: each one is a factory
// that reads the options, so forRoot and forRootAsync share one code path.

export const configProvider: FactoryProvider<ResolvedTracingConfig> = {
  provide: TRACING_CONFIG,
  useFactory: (options: TracingModuleOptions | undefined | null) => {
    // forRoot() always has an object; forRootAsync's factory or create() may return nothing (a
    // ConfigService key that is not set), which must not quietly mean the defaults.
    let given = options;
    if (given === undefined || given === null) {
      const message =
        `forRootAsync() got ${String(given)} for the options: its factory (or create()) must ` +
        'return an object of options, {} for the defaults.';
      // Where tracing is switched off (tests, CI), the configuration it would read is often
      // missing too: said, and started off.
      if (process.env.OTEL_SDK_DISABLED?.trim().toLowerCase() !== 'true') {
        throw new TracingConfigError(message);
      }
      logger.warn(`${message} Tracing is off (OTEL_SDK_DISABLED=true).`);
      given = {};
    }
    const config = resolveTracingConfig(given);
    for (const warning of config.warnings) logger.warn(warning);
    return config;
  },
  inject: [TRACING_MODULE_OPTIONS],
};

export const exporterProvider: FactoryProvider<SpanExporter[]> = {
  provide: TRACING_SPAN_EXPORTER,
  useFactory: async (config: ResolvedTracingConfig, moduleRef: ModuleRef) => {
    if (!config.enabled || typeof config.spanProcessor === 'object') return [];
    const exporters: SpanExporter[] = [];
    for (const entry of config.exporters) {
      for (const exporter of await resolveExporter(entry, config, moduleRef)) {
        exporters.push(exporter);
      }
    }
    return exporters;
  },
  inject: [TRACING_CONFIG, ModuleRef],
};

export const sdkProvider: FactoryProvider<TracingSdk> = {
  provide: TRACING_SDK,
  // The token may be overridden (a test module's `overrideProvider(TRACING_SPAN_EXPORTER)`) with
  // one exporter or a list of them.
  useFactory: async (config: ResolvedTracingConfig, exporters: unknown, app: ModulesContainer) =>
    config.enabled
      ? TracingSdk.start(
          config,
          exporterList(exporters, 'TRACING_SPAN_EXPORTER (when overridden)'),
          logger,
          app,
        )
      : TracingSdk.disabled(logger),
  inject: [TRACING_CONFIG, TRACING_SPAN_EXPORTER, ModulesContainer],
};

async function resolveExporter(
  entry: ExporterOption,
  config: ResolvedTracingConfig,
  moduleRef: ModuleRef,
): Promise<SpanExporter[]> {
  if (typeof entry === 'string') {
    const exporter = await createExporter(entry, config);
    return exporter === undefined ? [] : [exporter];
  }
  if (isExporterProvider(entry)) {
    return exporterList(
      await resolveProvider(entry, moduleRef),
      'the exporter provider (useClass / useFactory)',
    );
  }
  return [entry];
}

/**
 * Resolves `{ useClass }` / `{ useFactory, inject }` through Nest's own injector
 * (ModuleRef.create), so dependencies are found, and instantiated if need be,
 * exactly as for any provider of this module.
 */
async function resolveProvider(provider: ExporterProvider, moduleRef: ModuleRef): Promise<unknown> {
  if ('useClass' in provider) return moduleRef.create(provider.useClass);
  const tokens = provider.inject ?? [];
  class TracingExporterFactory {
    readonly values: unknown[];
    constructor(...values: unknown[]) {
      this.values = values;
    }
  }
  tokens.forEach((dependency, index) => {
    const optional = isOptionalDependency(dependency);
    const token = optional ? dependency.token : dependency;
    Inject(token)(TracingExporterFactory, undefined, index);
    if (optional && dependency.optional) Optional()(TracingExporterFactory, undefined, index);
  });
  Reflect.defineMetadata(
    'design:paramtypes',
    tokens.map(() => Object),
    TracingExporterFactory,
  );
  const deps = await moduleRef.create(TracingExporterFactory);
  return (provider.useFactory as (...args: unknown[]) => unknown)(...deps.values);
}

function isOptionalDependency(
  dependency: InjectionToken | OptionalFactoryDependency,
): dependency is OptionalFactoryDependency {
  return typeof dependency === 'object' && dependency !== null && 'token' in dependency;
}

/** One exporter or a list of them, as a list; anything else is a configuration error. */
function exporterList(value: unknown, what: string): SpanExporter[] {
  const list = Array.isArray(value) ? value : [value];
  list.forEach((exporter) => {
    if (!isSpanExporter(exporter)) {
      throw new TracingConfigError(
        `${what} must produce a SpanExporter (an object with export() and shutdown()) or an ` +
          'array of them.',
      );
    }
  });
  return list as SpanExporter[];
}

export const transportsProvider: FactoryProvider<TransportTracing> = {
  provide: TRACING_TRANSPORTS,
  // TRACING_SDK is injected so that the provider is registered before any transport is traced.
  useFactory: async (config: ResolvedTracingConfig, sdk: TracingSdk, modules: ModulesContainer) => {
    const stops: Array<() => void> = [];
    if (sdk.enabled && config.microservices.enabled) {
      const microservices = await startMicroservicesTracing(modules);
      stops.push(() => microservices.stop());
    }
    if (sdk.enabled && config.httpClient.enabled) stops.push(await startHttpClientTracing());
    return { stop: () => stops.splice(0).forEach((stop) => stop()) };
  },
  inject: [TRACING_CONFIG, TRACING_SDK, ModulesContainer],
};
