// The variants of bench/rpc, apart from ./common.mjs so that the driver can list them without
// loading a side's modules or reading a side's BENCH_VARIANT.

/**
 * The variants, each on both sides:
 * - `untraced`: the Nest apps alone;
 * - `untraced+context`: OpenTelemetry's `AsyncLocalStorageContextManager` alone, no span (the
 *   floor of a tracer built on OpenTelemetry's context for Node);
 * - `untraced+own-context`: the context manager `forRoot` registers by default, alone, no span
 *   (on Node 20 and 22 the package's own, on V8's promise hooks; elsewhere the same
 *   `AsyncLocalStorage` one): the floor the package itself stands on;
 * - `traced`: `TracingModule.forRoot` with its defaults;
 * - `traced/sampled-out`: the same with `sampler: { ratio: 0 }`: every message carries the context
 *   and gets a span that records nothing and is not exported (what an app sampling a few percent
 *   pays for most of its messages).
 */
export const VARIANTS = [
  'untraced',
  'untraced+context',
  'untraced+own-context',
  'traced',
  'traced/sampled-out',
];
