import type { Attributes, TextMapPropagator } from '@opentelemetry/api';
import type { Sampler, SpanExporter, SpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { IncomingMessage } from 'node:http';
import type { InjectionToken, OptionalFactoryDependency, Type } from '@nestjs/common';

/** Exporter shorthands understood by the `exporter` option. */
export type ExporterName =
  'otlp' | 'otlp-http-json' | 'otlp-grpc' | 'zipkin' | 'console' | 'memory' | 'none';

/** Where the `'otlp'` exporter sends its `http/protobuf` requests from; see `exportThread`. */
export type ExportThread = 'worker' | 'main';

/** Which context manager the package registers; see `contextManager`. */
export type ContextManagerName = 'auto' | 'promise-hooks' | 'async-local-storage';

/** Propagator shorthands understood by the `propagators` option (and `OTEL_PROPAGATORS`). */
export type PropagatorName = 'tracecontext' | 'baggage' | 'b3' | 'b3multi' | 'jaeger' | 'none';

/**
 * An exporter built by Nest's dependency injection, so it can depend on other
 * providers such as `ConfigService`. Resolved once, at start-up.
 */
export type ExporterProvider =
  | { useClass: Type<SpanExporter> }
  | {
      // `any`, as in Nest's own FactoryProvider: an unannotated parameter of an inline factory
      // (`useFactory: (config) => ...`) is typed from here, and `never` made it unusable.
      useFactory: (
        // eslint-disable-next-line @typescript-eslint/no-explicit-any
        ...args: any[]
      ) => SpanExporter | SpanExporter[] | Promise<SpanExporter | SpanExporter[]>;
      inject?: Array<InjectionToken | OptionalFactoryDependency> | undefined;
    };

/** One exporter, in any of the accepted forms. */
export type ExporterOption = ExporterName | SpanExporter | ExporterProvider;

/** Settings of the default `BatchSpanProcessor`. */
export interface BatchProcessorOptions {
  /** Spans kept in memory while waiting for export; more are dropped. Default 2048. */
  maxQueueSize?: number | undefined;
  /** Spans sent in one export call. Default 512. */
  maxExportBatchSize?: number | undefined;
  /** Delay between two exports, in ms. Default 5000. */
  scheduledDelayMillis?: number | undefined;
  /** How long one export may take before it is abandoned, in ms. Default 30000. */
  exportTimeoutMillis?: number | undefined;
}

/** A path that gets no span: exact path, glob (`*` one segment, `**` any), RegExp or predicate. */
export type HttpIgnoreRule = string | RegExp | ((request: IncomingMessage) => boolean);

/** Options of inbound HTTP tracing. */
export interface HttpTracingOptions {
  /** Trace inbound HTTP requests at all. Default true. */
  enabled?: boolean | undefined;
  /** Requests whose path matches get no span (health checks, metrics scrapes). */
  ignore?: HttpIgnoreRule | HttpIgnoreRule[] | undefined;
  /** Request headers recorded as `http.request.header.<name>` (case-insensitive). */
  requestHeaders?: string[] | undefined;
  /** Response headers recorded as `http.response.header.<name>` (case-insensitive). */
  responseHeaders?: string[] | undefined;
  /** Add `traceresponse` and `Server-Timing: traceparent;desc=...` to responses. Default true. */
  traceResponse?: boolean | undefined;
}

/** Options of tracing over Nest's microservice transports (both directions). */
export interface MicroservicesTracingOptions {
  /**
   * Trace messages that Nest microservice servers process (gRPC, RabbitMQ, NATS, MQTT, Redis,
   * TCP, Kafka) and that `ClientProxy` clients and gRPC stubs send, carrying the context in each
   * transport's headers. Default true; without `@nestjs/microservices` installed there is
   * nothing to trace.
   */
  enabled?: boolean | undefined;
}

/** Options of outbound HTTP tracing (`fetch`, and Node's http/https as used by `@nestjs/axios`). */
export interface HttpClientTracingOptions {
  /**
   * Give outbound HTTP requests a CLIENT span and a `traceparent` header. Default true; left to
   * the other instrumentation when one already traces that client.
   */
  enabled?: boolean | undefined;
}

/**
 * Options of `TracingModule.forRoot()` / `forRootAsync()`. Every option is
 * optional; `OTEL_*` environment variables fill what is not set, and an explicit
 * option always wins over the environment.
 */
export interface TracingModuleOptions {
  /** `service.name` of the resource. Default: `OTEL_SERVICE_NAME`, else OpenTelemetry's `unknown_service:<process>`. */
  serviceName?: string | undefined;
  /** `service.version` of the resource. */
  serviceVersion?: string | undefined;
  /** Extra resource attributes (merged over `OTEL_RESOURCE_ATTRIBUTES`). */
  resourceAttributes?: Attributes | undefined;
  /** Where spans go. Default `OTEL_TRACES_EXPORTER`, else `'otlp'`. An array exports to each. */
  exporter?: ExporterOption | ExporterOption[] | undefined;
  /**
   * Where the `'otlp'` exporter (OTLP over `http/protobuf`, the default) sends its requests from:
   * `'worker'` (default), a worker thread of its own, started with the first export, that runs
   * OpenTelemetry's OTLP/HTTP exporter with the same `OTEL_EXPORTER_OTLP_*` settings; or
   * `'main'`, the application's thread. Spans are encoded on the application's thread either
   * way; only the finished request crosses. The worker takes Node's HTTP client off the
   * application's thread (3–12% less CPU there per traced request in the README's Performance
   * section) and adds 20–45 MB to the peak RSS: `'main'` suits a process held to one CPU or
   * short of memory. If the worker cannot start (a bundle without its file), the exporter falls
   * back to `'main'` with a warning. Other exporters run on the application's thread.
   */
  exportThread?: ExportThread | undefined;
  /**
   * How the active span follows the request through `await`, promises and timers:
   * - `'auto'` (default): `'promise-hooks'` where Node's `AsyncLocalStorage` runs on promise
   *   hooks (Node 20 and 22), `'async-local-storage'` where it does not (Node 24 and later);
   * - `'promise-hooks'`: the package's own manager on V8's promise hooks. The context follows
   *   promises, `await`, `setTimeout`, `setInterval`, `setImmediate`, `process.nextTick`,
   *   `queueMicrotask` (the globals, wrapped while it runs) and whatever `context.bind` binds,
   *   not the callbacks of Node's callback APIs (`fs.readFile(path, callback)`, socket
   *   events): on Node 20 it costs a fifth of what `AsyncLocalStorage` costs;
   * - `'async-local-storage'`: OpenTelemetry's `AsyncLocalStorageContextManager`, which also
   *   follows those callbacks. Choose it when code in a request relies on them, or when the app
   *   already runs `AsyncLocalStorage` on every request (then its hooks are paid for anyway).
   *
   * Not used when a context manager was registered before the module starts (by a `NodeSDK`,
   * say): that one stays.
   */
  contextManager?: ContextManagerName | undefined;
  /** `'batch'` (default), `'simple'`, or any `SpanProcessor` instance (then `exporter` is not used). */
  spanProcessor?: 'batch' | 'simple' | SpanProcessor | undefined;
  /** Settings of the batch processor (default: `OTEL_BSP_*`, else the SDK's defaults). */
  batch?: BatchProcessorOptions | undefined;
  /** A `Sampler`, or `{ ratio }` for parent-based ratio sampling. Default: parent-based always-on. */
  sampler?: Sampler | { ratio: number } | undefined;
  /** Propagators, by name or as instances. Default `OTEL_PROPAGATORS`, else tracecontext + baggage. */
  propagators?: Array<PropagatorName | TextMapPropagator> | undefined;
  /** Inbound HTTP tracing. */
  http?: HttpTracingOptions | undefined;
  /** Tracing over Nest's microservice transports, inbound and outbound. */
  microservices?: MicroservicesTracingOptions | undefined;
  /** Outbound HTTP tracing. */
  httpClient?: HttpClientTracingOptions | undefined;
  /** `false` turns tracing off: nothing is registered, decorators cost a no-op span. Default `!OTEL_SDK_DISABLED`. */
  enabled?: boolean | undefined;
  /** Time allowed to flush spans on application shutdown, in ms. Default 5000. */
  shutdownTimeoutMs?: number | undefined;
}

/** Extra, non-option settings of the module definition. */
export interface TracingModuleExtras {
  /** Register the module globally. Default true. */
  isGlobal?: boolean | undefined;
}
