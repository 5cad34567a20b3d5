import { Module, type DynamicModule } from '@nestjs/common';
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { TracingModule } from '../tracing.module.js';
import { TRACING_SPAN_EXPORTER } from '../tracing.constants.js';
import type { TracingModuleOptions } from '../interfaces/tracing-module-options.interface.js';
import { TestSpans } from './test-spans.js';

/** Options of the testing module: the module's options, minus where spans go. */
export type TracingTestingOptions = Omit<
  TracingModuleOptions,
  'exporter' | 'spanProcessor' | 'enabled'
>;

/**
 * `TracingModule` set up for tests: spans go to memory through a simple
 * (synchronous) processor, 100% sampled, and `TestSpans` is injectable. It
 * traces even when `OTEL_SDK_DISABLED=true` (often set in CI to keep real
 * exports off). Each
 * compiled testing module has its own exporter, and closing the app releases
 * OpenTelemetry's globals for the next one.
 *
 * @example
 * ```ts
 * const moduleRef = await Test.createTestingModule({
 *   imports: [TracingTestingModule.forRoot(), OrdersModule],
 * }).compile();
 * const spans = moduleRef.get(TestSpans);
 * ```
 */
@Module({})
export class TracingTestingModule {
  static forRoot(options: TracingTestingOptions = {}): DynamicModule {
    return {
      module: TracingTestingModule,
      global: true,
      imports: [
        TracingModule.forRoot({
          serviceName: 'test',
          sampler: { ratio: 1 },
          ...options,
          exporter: 'memory',
          spanProcessor: 'simple',
          // Tests trace even where CI sets OTEL_SDK_DISABLED to keep real exports off.
          enabled: true,
        }),
      ],
      providers: [
        {
          provide: TestSpans,
          useFactory: (exporters: SpanExporter[]) => {
            const memory = exporters.find(
              (e): e is InMemorySpanExporter => e instanceof InMemorySpanExporter,
            );
            return new TestSpans(memory ?? new InMemorySpanExporter());
          },
          inject: [TRACING_SPAN_EXPORTER],
        },
      ],
      exports: [TestSpans],
    };
  }
}
