// bench/decorator: the cost of a span around a method, @Trace() against the
// hand-written tracer.startActiveSpan wrapper. One process on the app core.
import { BENCH_DIR, runWorker } from '../common/proc.mjs';
import { median, min, num, ratio, table } from '../common/report.mjs';

/** @Trace() on an async method should cost at most this much more than startActiveSpan. */
const TARGET = 1.1;

/**
 * The median of per-round ratios: a round runs every case back to back, so a machine that slows
 * down for a while slows both sides of one round's ratio (as the other benches' ratios against
 * the untraced run of the same round).
 */
function pairedRatio(traced, reference) {
  return median(traced.ns.map((ns, round) => ns / reference.ns[round]));
}

export async function run(settings, log) {
  const failures = [];
  log(`decorator: ${settings.rounds} rounds of ${settings.calls} calls per case`);
  const result = await runWorker(
    'decorator worker',
    `${BENCH_DIR}decorator/worker.mjs`,
    {
      type: 'run',
      calls: settings.calls,
      rounds: settings.rounds,
      warmupCalls: Math.min(settings.calls, 20_000),
    },
    { nodeArgs: ['--expose-gc'] },
  );

  const medianOf = new Map(result.cases.map((c) => [c.name, median(c.ns)]));
  const bare = (kind) => result.cases.find((c) => c.kind === kind && !c.hand && !c.traced);
  const hand = (kind) => result.cases.find((c) => c.kind === kind && c.hand);
  const traced = (kind) => result.cases.find((c) => c.kind === kind && c.traced);
  const rows = result.cases.map((c) => {
    const ns = medianOf.get(c.name);
    const base = bare(c.kind);
    const reference = c.traced ? hand(c.kind) : undefined;
    return [
      c.name,
      num(ns, 0),
      num(min(c.ns), 0),
      c === base ? '–' : num(ns - medianOf.get(base.name), 0),
      reference ? ratio(pairedRatio(c, reference)) : '–',
      c.ns.map((v) => num(v, 0)).join(' / '),
    ];
  });
  const asyncRatio = pairedRatio(traced('async'), hand('async'));
  if (result.exported < result.spansExpected) {
    failures.push(
      `decorator: the no-op exporter got ${result.exported} spans of ${result.spansExpected} started; ` +
        'spans were dropped or never ended.',
    );
  }
  return {
    title: `Decorator: ns per awaited call (${num(settings.calls)} calls × ${settings.rounds} interleaved rounds)`,
    tables: [
      table(
        [
          ['case', 'l'],
          ['ns/call (median)', 'r'],
          ['ns/call (min)', 'r'],
          ['over bare (ns)', 'r'],
          ['vs startActiveSpan', 'r'],
          ['ns/call per round', 'r'],
        ],
        rows,
      ),
    ],
    notes: [
      `@Trace() async / startActiveSpan async = ${asyncRatio.toFixed(3)}×, median of per-round ratios (target ≤ ${TARGET.toFixed(2)}×: ` +
        `${asyncRatio <= TARGET ? 'met' : 'NOT met'}).`,
      `Spans exported to the no-op exporter: ${num(result.exported)} of ${num(result.spansExpected)} started ` +
        '(BatchSpanProcessor defaults; NodeTracerProvider.register() with AsyncLocalStorage).',
      'Every call is awaited, sync ones included; the Observable cases subscribe with lastValueFrom(). ' +
        '"vs startActiveSpan" compares with the hand-written wrapper of the same kind.',
    ],
    failures,
  };
}
