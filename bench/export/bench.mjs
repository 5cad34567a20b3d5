// bench/export: the cost of encoding spans for OTLP/protobuf export, per span,
// OpenTelemetry's serializer against the package's writer. One process on the
// app core; interleaved rounds; the bench fails if the two write different bytes.
import { BENCH_DIR, runWorker } from '../common/proc.mjs';
import { median, num, ratio, table } from '../common/report.mjs';

export async function run(settings, log) {
  const failures = [];
  log(`export: ${settings.rounds} rounds of ${settings.iterations} batches per shape`);
  const result = await runWorker('export worker', `${BENCH_DIR}export/worker.mjs`, {
    type: 'run',
    rounds: settings.rounds,
    iterations: settings.iterations,
    warmup: Math.max(50, settings.iterations / 2),
  });
  const rows = result.cases.map((c) => {
    if (!c.identical) failures.push(`export ${c.name}: the two serializers wrote different bytes.`);
    const otel = median(c.otel);
    const ours = median(c.ours);
    return [
      c.name,
      num(c.bytesPerSpan, 0),
      num(otel, 0),
      num(ours, 0),
      ratio(ours / otel),
      c.identical ? 'yes' : 'NO',
      c.ours.map((v) => num(v, 0)).join(' / '),
    ];
  });
  return {
    title: `Export encoding: ns per span in a batch of ${result.batch} (${settings.rounds} interleaved rounds)`,
    tables: [
      table(
        [
          ['span shape', 'l'],
          ['bytes/span', 'r'],
          ['OpenTelemetry ns/span', 'r'],
          ['nestjs-tracing ns/span', 'r'],
          ['ratio', 'r'],
          ['same bytes', 'l'],
          ['nestjs-tracing ns/span per round', 'r'],
        ],
        rows,
      ),
    ],
    notes: [
      'OpenTelemetry: ProtobufTraceSerializer.serializeRequest (what @opentelemetry/exporter-trace-otlp-proto sends); ' +
        "nestjs-tracing: the writer behind exporter 'otlp' over http/protobuf. Encoding runs on the app's thread " +
        '(with the default batch processor, as each span ends), so it is part of the app CPU per request in the ' +
        'http and rpc tables.',
    ],
    failures,
  };
}
