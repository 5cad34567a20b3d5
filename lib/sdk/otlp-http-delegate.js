// @ts-check
// Plain JavaScript so that Node can start it as a worker from the source tree as well as from
// dist/ (tsc copies it with its declarations): the export worker imports it.
import {
  convertLegacyHttpOptions,
  createOtlpHttpExportDelegate,
} from '@opentelemetry/otlp-exporter-base/node-http';
import {
  ProtobufTraceSerializer,
  TraceExporterMetricsHelper,
} from '@opentelemetry/otlp-transformer';

/**
 * OpenTelemetry's OTLP/HTTP export delegate for traces over `http/protobuf`: the transport,
 * retries, compression, timeout, concurrency limit and the `OTEL_EXPORTER_OTLP_*` settings of
 * `@opentelemetry/exporter-trace-otlp-proto`, read from `process.env`, with the request body
 * written by `serializeRequest` and responses parsed by OpenTelemetry's serializer.
 *
 * @template Items
 * @param {(items: Items) => Uint8Array | undefined} serializeRequest
 */
export function createOtlpProtoHttpDelegate(serializeRequest) {
  return createOtlpHttpExportDelegate(
    convertLegacyHttpOptions({}, 'TRACES', 'v1/traces', {
      'Content-Type': 'application/x-protobuf',
    }),
    {
      serializeRequest,
      deserializeResponse: (data) => ProtobufTraceSerializer.deserializeResponse(data),
    },
    // `otel.component.type` of OpenTelemetry's own OTLP/HTTP span exporter.
    'otlp_http_span_exporter',
    // Counts items by `length`, which the batches given here have too.
    /** @type {never} */ (TraceExporterMetricsHelper),
    undefined,
  );
}
