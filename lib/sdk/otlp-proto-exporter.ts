import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import type { ExportThread } from '../interfaces/tracing-module-options.interface.js';
import { OtlpExportThread } from './otlp-export-thread.js';
import { createOtlpProtoHttpDelegate } from './otlp-http-delegate.js';
import { serializeSpans, type EncodedSpanBatch } from './otlp-span-serializer.js';

/** An encoded request; `length` is what OpenTelemetry's exporter metrics count (spans). */
interface EncodedRequest {
  body: Uint8Array;
  length: number;
}

/**
 * The `'otlp'` exporter over `http/protobuf`: OpenTelemetry's OTLP/HTTP exporter (the same
 * delegate, transport, retries, compression and `OTEL_EXPORTER_OTLP_*` configuration as
 * `@opentelemetry/exporter-trace-otlp-proto`), with the request body encoded by
 * {@link serializeSpans}, which writes the same bytes in a third of the time, and sent from a
 * worker thread ({@link OtlpExportThread}) unless `thread` is `'main'`.
 */
export class OtlpProtoTraceExporter implements SpanExporter {
  private readonly thread: OtlpExportThread | undefined = undefined;
  /** The delegate on the app's thread: `thread: 'main'`, or the worker could not be used. */
  private delegate: ReturnType<typeof createInProcessDelegate> | undefined;
  private isShutdown = false;

  constructor(thread: ExportThread = 'worker') {
    // Either way the settings are the environment's as it is now, as OpenTelemetry's exporter
    // reads them when it is made (a fallback to this thread reads it when it happens).
    if (thread === 'worker') {
      this.thread = new OtlpExportThread({ ...process.env }, (body, spans, done) =>
        this.sendInProcess(body, spans, done),
      );
    } else {
      this.delegate = createInProcessDelegate();
    }
  }

  export(spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
    this.send(serializeSpans(spans), spans.length, resultCallback);
  }

  /** Sends spans the batch processor encoded as they ended. */
  exportEncoded(batch: EncodedSpanBatch, resultCallback: (result: ExportResult) => void): void {
    this.send(batch.serialize(), batch.length, resultCallback);
  }

  async forceFlush(): Promise<void> {
    await this.thread?.flush();
    await this.delegate?.forceFlush();
  }

  async shutdown(): Promise<void> {
    this.isShutdown = true;
    await this.thread?.shutdown();
    await this.delegate?.shutdown();
  }

  private send(body: Uint8Array, spans: number, done: (result: ExportResult) => void): void {
    if (this.isShutdown) {
      done({ code: ExportResultCode.FAILED, error: new Error('The exporter is shut down') });
    } else if (this.thread !== undefined) {
      this.thread.send(body, spans, done);
    } else {
      this.sendInProcess(body, spans, done);
    }
  }

  private sendInProcess(body: Uint8Array, spans: number, done: (result: ExportResult) => void) {
    this.delegate ??= createInProcessDelegate();
    this.delegate.export({ body, length: spans }, done);
  }
}

function createInProcessDelegate() {
  return createOtlpProtoHttpDelegate((request: EncodedRequest) => request.body);
}
