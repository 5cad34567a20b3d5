import {
  Inject,
  Module,
  Optional,
  type DynamicModule,
  type FactoryProvider,
  type MiddlewareConsumer,
  type NestModule,
  type OnApplicationShutdown,
  type OnModuleInit,
} from '@nestjs/common';
import { HttpAdapterHost, ModulesContainer } from '@nestjs/core';
import { responsesClosed } from './http/http-server-tracer.js';
import { installHttpTracing } from './http/http-tracing.installer.js';
import { followAsyncEventListeners } from './sdk/event-emitter-context.js';
import { promiseContextEnabled } from './sdk/promise-context-manager.js';
import {
  describeValue,
  TracingConfigError,
  type ResolvedTracingConfig,
} from './sdk/tracing-config.js';
import type { TracingSdk } from './sdk/tracing-sdk.js';
import { TraceService } from './services/trace.service.js';
import { TRACING_SDK, TRACING_SPAN_EXPORTER } from './tracing.constants.js';
import {
  ASYNC_OPTIONS_TYPE,
  ConfigurableModuleClass,
  OPTIONS_TYPE,
  TRACING_MODULE_OPTIONS,
} from './tracing.module-definition.js';
import {
  configProvider,
  exporterProvider,
  logger,
  sdkProvider,
  transportsProvider,
  TRACING_CONFIG,
  TRACING_TRANSPORTS,
  type TransportTracing,
} from './tracing.providers.js';

/**
 * Distributed tracing for a Nest application: owns the OpenTelemetry SDK
 * (provider, exporter, sampler, propagators) for the application's lifetime,
 * traces inbound HTTP requests, messages over every Nest microservice transport in both
 * directions, and outbound HTTP calls, and serves `@Trace()` and `TraceService`.
 * Global by default.
 *
 * @example
 * ```ts
 * @Module({ imports: [TracingModule.forRoot({ serviceName: 'orders' })] })
 * export class AppModule {}
 * ```
 */
@Module({
  providers: [configProvider, exporterProvider, sdkProvider, transportsProvider, TraceService],
  exports: [TraceService, TRACING_SPAN_EXPORTER, TRACING_SDK],
})
export class TracingModule
  extends ConfigurableModuleClass
  implements NestModule, OnModuleInit, OnApplicationShutdown
{
  private stopFollowingEvents: (() => void) | undefined;

  constructor(
    @Inject(TRACING_SDK) private readonly sdk: TracingSdk,
    @Inject(TRACING_CONFIG) private readonly config: ResolvedTracingConfig,
    @Inject(TRACING_TRANSPORTS) private readonly transports: TransportTracing,
    private readonly modules: ModulesContainer,
    @Optional() private readonly adapterHost?: HttpAdapterHost,
  ) {
    super();
  }

  /** Options may be left out entirely: everything then comes from `OTEL_*` or defaults. */
  static override forRoot(options: typeof OPTIONS_TYPE = {}): DynamicModule {
    // Checked here as well as where the options are resolved: Nest's module builder spreads
    // them first, which throws a TypeError on null and turns a string into its characters.
    if (!isOptionsObject(options)) {
      throw new TracingConfigError(
        'forRoot() takes an object of options, e.g. forRoot({ serviceName: "orders" }).',
      );
    }
    checkIsGlobal(options);
    return super.forRoot(options);
  }

  static override forRootAsync(options: typeof ASYNC_OPTIONS_TYPE): DynamicModule {
    const given = isOptionsObject(options)
      ? ['useFactory', 'useClass', 'useExisting'].filter(
          (key) => (options as Record<string, unknown>)[key] !== undefined,
        ).length
      : 0;
    // Nest's builder takes useFactory (or useExisting) over useClass when several are given.
    if (given === 0) {
      throw new TracingConfigError(
        'forRootAsync() takes an object with one of useFactory, useClass or useExisting, e.g. ' +
          'forRootAsync({ useFactory: (config) => ({ serviceName: config.get("SERVICE") }), inject: [ConfigService] }).',
      );
    }
    checkIsGlobal(options);
    const dynamic = super.forRootAsync(options);
    if (options.useFactory === undefined) checkOptionsFactory(dynamic, options);
    return dynamic;
  }

  /** Runs before routes are registered: the time to hook into the HTTP adapter. */
  configure(_consumer: MiddlewareConsumer): void {
    const adapter = this.adapterHost?.httpAdapter;
    if (!this.sdk.enabled || !this.config.http.enabled || adapter === undefined) return;
    if (!installHttpTracing(adapter, this.config.http)) {
      logger.warn(
        `The HTTP adapter '${adapter.getType?.() ?? 'unknown'}' has no request hook; inbound HTTP requests are not traced.`,
      );
    }
  }

  /**
   * Every provider exists, and `@OnEvent` listeners are registered only at bootstrap: the time to
   * let async ones keep the emitter's context (see `followAsyncEventListeners`).
   */
  onModuleInit(): void {
    if (this.sdk.enabled && promiseContextEnabled() && this.stopFollowingEvents === undefined) {
      this.stopFollowingEvents = followAsyncEventListeners(this.modules);
    }
  }

  /** After the HTTP server and microservices have closed: export what is left, then release the globals. */
  async onApplicationShutdown(): Promise<void> {
    this.stopFollowingEvents?.();
    this.stopFollowingEvents = undefined;
    if (this.sdk.enabled) await responsesClosed();
    this.transports.stop();
    await this.sdk.shutdown();
  }
}

/**
 * `useClass` and `useExisting` name a provider whose `create()` returns the options. Without one,
 * Nest's builder fails with `optionsFactory[...] is not a function`: the instance is checked when
 * it is resolved (a class field holding a function counts, which its prototype does not show).
 */
function checkOptionsFactory(dynamic: DynamicModule, options: typeof ASYNC_OPTIONS_TYPE): void {
  // Nest's builder injects `useExisting` when both are given.
  const given = options.useExisting !== undefined ? 'useExisting' : 'useClass';
  const target: unknown = options.useExisting ?? options.useClass;
  const name = typeof target === 'function' ? target.name || 'the class' : describeValue(target);
  const provider = dynamic.providers?.find(
    (p): p is FactoryProvider =>
      typeof p === 'object' &&
      'provide' in p &&
      p.provide === TRACING_MODULE_OPTIONS &&
      'useFactory' in p,
  );
  if (provider === undefined) return;
  const build = provider.useFactory as (...args: unknown[]) => unknown;
  provider.useFactory = (factory: unknown, ...rest: unknown[]) => {
    if (typeof (factory as { create?: unknown } | null | undefined)?.create !== 'function') {
      throw new TracingConfigError(
        `forRootAsync({ ${given}: ${name} }): ${name} has no create() method; it must return ` +
          'the options (or a Promise of them).',
      );
    }
    return build(factory, ...rest);
  };
}

function isOptionsObject(value: unknown): value is object {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `isGlobal`, which Nest's module builder takes as it is: a string would pass as true. */
function checkIsGlobal(options: object): void {
  const isGlobal = (options as { isGlobal?: unknown }).isGlobal;
  if (isGlobal !== undefined && typeof isGlobal !== 'boolean') {
    throw new TracingConfigError(`isGlobal must be true or false, got ${describeValue(isGlobal)}.`);
  }
}
