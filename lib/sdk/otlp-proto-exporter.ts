import { OTLPExporterBase } from '@opentelemetry/otlp-exporter-base';
import {
  convertLegacyHttpOptions,
  createOtlpHttpExportDelegate,
} from '@opentelemetry/otlp-exporter-base/node-http';
import {
  ProtobufTraceSerializer,
  TraceExporterMetricsHelper,
  type IExportTraceServiceResponse,
  type ISerializer,
} from '@opentelemetry/otlp-transformer';
import type { ExportResult } from '@opentelemetry/core';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import { EncodedSpanBatch, serializeSpans } from './otlp-span-serializer.js';

type Items = ReadableSpan[] | EncodedSpanBatch;

/**
 * Requests encoded by our serializer (or already encoded, by the batch processor that encodes
 * spans as they end), responses parsed by OpenTelemetry's.
 */
const serializer: ISerializer<Items, IExportTraceServiceResponse> = {
  serializeRequest: (items) =>
    items instanceof EncodedSpanBatch ? items.serialize() : serializeSpans(items),
  deserializeResponse: (data) => ProtobufTraceSerializer.deserializeResponse(data),
};

/**
 * The `'otlp'` exporter over `http/protobuf`: OpenTelemetry's OTLP/HTTP exporter (the same
 * delegate, transport, retries, compression and `OTEL_EXPORTER_OTLP_*` configuration as
 * `@opentelemetry/exporter-trace-otlp-proto`), with the request body encoded by
 * {@link serializeSpans}, which writes the same bytes in a third of the time.
 */
export class OtlpProtoTraceExporter extends OTLPExporterBase<Items> implements SpanExporter {
  constructor() {
    super(
      createOtlpHttpExportDelegate(
        convertLegacyHttpOptions({}, 'TRACES', 'v1/traces', {
          'Content-Type': 'application/x-protobuf',
        }),
        serializer,
        // `otel.component.type` of OpenTelemetry's own OTLP/HTTP span exporter.
        'otlp_http_span_exporter',
        // Counts items by `length`, which a batch of encoded spans has too.
        TraceExporterMetricsHelper as never,
        undefined,
      ),
    );
  }

  /** Sends spans the batch processor encoded as they ended. */
  exportEncoded(batch: EncodedSpanBatch, resultCallback: (result: ExportResult) => void): void {
    this.export(batch, resultCallback);
  }
}
