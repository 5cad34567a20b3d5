export { TracingModule } from './tracing.module.js';
export { TRACING_MODULE_OPTIONS } from './tracing.module-definition.js';
export { TRACING_SPAN_EXPORTER, TRACING_SDK, TRACER_NAME } from './tracing.constants.js';
export type {
  BatchProcessorOptions,
  ContextManagerName,
  ExporterName,
  ExporterOption,
  ExporterProvider,
  ExportThread,
  HttpClientTracingOptions,
  HttpIgnoreRule,
  HttpTracingOptions,
  MicroservicesTracingOptions,
  PropagatorName,
  TracingModuleExtras,
  TracingModuleOptions,
} from './interfaces/tracing-module-options.interface.js';
export { TracingConfigError } from './sdk/tracing-config.js';
export type { TracingSdk } from './sdk/tracing-sdk.js';
export { Trace } from './decorators/trace.decorator.js';
export type { TraceOptions } from './decorators/trace.decorator.js';
export { Traceable } from './decorators/traceable.decorator.js';
export type { TraceableOptions } from './decorators/traceable.decorator.js';
export { NoTrace } from './decorators/no-trace.decorator.js';
export { TraceService } from './services/trace.service.js';
export type { StartActiveSpanOptions } from './services/trace.service.js';
