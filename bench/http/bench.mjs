// bench/http: the same Nest app (./app.mjs) untraced and traced several ways,
// on Express and Fastify, one process per (round, platform, route, variant),
// measured with autocannon from another process. See ../README.md.
import { createRequire } from 'node:module';
import {
  APP_CORE,
  BENCH_DIR,
  Child,
  cpuMicros,
  LOAD_CORE,
  memory,
  sinkDelta,
  startSink,
} from '../common/proc.mjs';
import { mb, median, num, ratio, table } from '../common/report.mjs';

const APP = `${BENCH_DIR}http/app.mjs`;
const LOAD = `${BENCH_DIR}common/load-http.mjs`;
const REGISTER = `${BENCH_DIR}common/otel-register.mjs`;

/**
 * `spans`: how many spans one request produces, per platform and route (what
 * the sink receives when nothing is dropped). For nestjs-tracing that is the
 * SERVER span plus one per @Trace() method; for the NodeSDK variants it is what
 * their instrumentations make of this app (counted by the sink: HTTP SERVER
 * span, Express middleware and handler spans; Fastify hook, request and
 * handler spans), plus one per nestjs-otel @Span() method.
 */
export const VARIANTS = [
  { name: 'untraced' },
  { name: 'untraced+interceptor' },
  { name: 'untraced+context' },
  {
    name: 'hand-written',
    spans: { 'express /hello': 1, 'express /work': 1, 'fastify /hello': 1, 'fastify /work': 1 },
  },
  {
    name: 'nestjs-tracing',
    spans: { 'express /hello': 1, 'express /work': 4, 'fastify /hello': 1, 'fastify /work': 4 },
  },
  {
    // The same, with `exportThread: 'main'`: what sending from a worker thread saves.
    name: 'nestjs-tracing/main-thread',
    spans: { 'express /hello': 1, 'express /work': 4, 'fastify /hello': 1, 'fastify /work': 4 },
  },
  {
    name: 'otel-sdk',
    register: true,
    spans: { 'express /hello': 5, 'express /work': 5, 'fastify /hello': 11, 'fastify /work': 11 },
  },
  {
    name: 'nestjs-otel',
    register: true,
    package: 'nestjs-otel',
    spans: { 'express /hello': 6, 'express /work': 9, 'fastify /hello': 11, 'fastify /work': 14 },
  },
];

/**
 * A traced run that exported less than this share of the spans it produced fails the bench: it
 * exports next to nothing, so it is not comparable. Above it, drops are the BatchSpanProcessor's
 * own behaviour under load (its queue was full) and are shown, not failed.
 */
export const MIN_EXPORTED_SHARE = 0.25;
/** Below this share of exported spans, the table marks the run as dropping spans. */
const DROP_MARK_SHARE = 0.95;

function installed(pkg) {
  try {
    createRequire(import.meta.url).resolve(pkg);
    return true;
  } catch {
    return false;
  }
}

/** The variants `settings.variants` picks (all by default) whose packages are installed. */
export function selectVariants(settings, notes) {
  return VARIANTS.filter((v) => {
    if (settings.variants && !settings.variants.includes(v.name)) return false;
    if (v.package && !installed(v.package)) {
      notes.push(`${v.name}: left out, the package '${v.package}' is not installed.`);
      return false;
    }
    return true;
  });
}

/** Starts the app of `variant` on the app core, exporting to `sink` as `serviceName`. */
export function startApp(variant, platform, sink, serviceName, label = platform) {
  return new Child(`app ${variant.name}/${label}`, APP, {
    core: APP_CORE,
    nodeArgs: variant.register ? ['--import', REGISTER] : [],
    env: {
      BENCH_VARIANT: variant.name,
      BENCH_PLATFORM: platform,
      BENCH_SERVICE_NAME: serviceName,
      OTEL_EXPORTER_OTLP_ENDPOINT: sink.endpoint,
    },
  });
}

async function runOne({ variant, platform, route, sink, settings }) {
  const before = await sink.counts();
  const app = startApp(variant, platform, sink, `bench-http-${variant.name}`, platform + route);
  let load;
  try {
    const { port } = await app.waitFor('ready', 60_000);
    load = new Child('autocannon', LOAD, { core: LOAD_CORE });
    await load.waitFor('ready');
    load.send({
      type: 'run',
      url: `http://127.0.0.1:${port}${route}`,
      connections: settings.connections,
      warmupSeconds: settings.warmupSeconds,
      seconds: settings.seconds,
      pid: app.pid,
    });
    await load.waitFor('measuring', (settings.warmupSeconds + 60) * 1000);
    const sinkCpuBefore = cpuMicros(sink.child.pid);
    const result = await load.waitFor('result', (settings.seconds + 60) * 1000);
    const sinkCpu = cpuMicros(sink.child.pid) - sinkCpuBefore;
    if (result.error) throw new Error(`autocannon failed: ${result.error}`);
    const { peak } = memory(app.pid);
    const stopped = await app.stop(20_000);
    const delta = sinkDelta(before, await sink.counts());
    const m = result.measured;
    const requests = (result.warmup?.requests ?? 0) + m.requests;
    return {
      rps: m.rps,
      p50: m.p50,
      p99: m.p99,
      peakRss: peak,
      cpuPerRequest: m.requests > 0 ? result.appCpuMicros / m.requests : undefined,
      sinkCpuPerRequest: m.requests > 0 ? sinkCpu / m.requests : undefined,
      requests,
      bad: m.errors + m.non2xx + (result.warmup?.errors ?? 0) + (result.warmup?.non2xx ?? 0),
      spans: delta.spans,
      spanNames: delta.byName,
      spansPerRequest: requests > 0 ? delta.spans / requests : undefined,
      stopped,
    };
  } finally {
    await load?.stop(5000);
    await app.stop(5000);
  }
}

export async function run(settings, log) {
  const failures = [];
  const notes = [];
  const variants = selectVariants(settings, notes);
  const platforms = settings.platforms ?? ['express', 'fastify'];
  const routes = ['/hello', '/work'];
  const results = new Map(); // key → array of per-round results
  const key = (p, r, v) => `${p} ${r} ${v}`;

  const sink = await startSink();
  try {
    for (let round = 1; round <= settings.rounds; round++) {
      for (const platform of platforms) {
        for (const route of routes) {
          for (const variant of variants) {
            const k = key(platform, route, variant.name);
            log(`http round ${round}/${settings.rounds}: ${platform} ${route} ${variant.name}`);
            let r;
            try {
              r = await runOne({ variant, platform, route, sink, settings });
            } catch (error) {
              failures.push(`http ${k} (round ${round}): ${error.message}`);
              r = { error: true };
            }
            r.round = round;
            if (!r.error) checkRun(k, round, variant.spans?.[`${platform} ${route}`], r, failures);
            if (!results.has(k)) results.set(k, []);
            results.get(k).push(r);
          }
        }
      }
    }
  } finally {
    await sink.stop();
  }

  const rows = [];
  const spanNotes = new Set();
  for (const platform of platforms) {
    for (const route of routes) {
      const baseline = results.get(key(platform, route, 'untraced')) ?? [];
      for (const variant of variants) {
        const runs = (results.get(key(platform, route, variant.name)) ?? []).filter(
          (r) => !r.error,
        );
        const ratios = runs.map((r) => {
          const base = baseline.find((b) => b.round === r.round && !b.error);
          return base ? r.rps / base.rps : undefined;
        });
        const min = variant.spans?.[`${platform} ${route}`];
        const spansPerRequest = median(runs.map((r) => r.spansPerRequest));
        if (min !== undefined && runs[0]) {
          const names = Object.entries(runs[0].spanNames)
            .sort((a, b) => b[1] - a[1])
            .map(([n, c]) => `${n} ×${num(c / runs[0].requests, 2)}`)
            .join(', ');
          spanNotes.add(`${platform} ${route} ${variant.name}: ${names || 'no spans'}`);
        }
        rows.push([
          platform,
          route,
          variant.name,
          num(median(runs.map((r) => r.rps))),
          variant.name === 'untraced' ? '1.00×' : ratio(median(ratios)),
          num(median(runs.map((r) => r.p50)), 0),
          num(median(runs.map((r) => r.p99)), 0),
          mb(median(runs.map((r) => r.peakRss))),
          num(median(runs.map((r) => r.cpuPerRequest)), 0),
          min === undefined ? '–' : num(median(runs.map((r) => r.sinkCpuPerRequest)), 0),
          min === undefined
            ? '–'
            : `${num(spansPerRequest, 2)} / ${min}` +
              (spansPerRequest < min * DROP_MARK_SHARE
                ? ` (${num((1 - spansPerRequest / min) * 100)}% dropped)`
                : ''),
          runs.map((r) => num(r.rps)).join(' / ') || 'failed',
        ]);
      }
    }
  }
  const columns = [
    ['platform', 'l'],
    ['route', 'l'],
    ['variant', 'l'],
    ['req/s (median)', 'r'],
    ['ratio vs untraced', 'r'],
    ['p50 ms', 'r'],
    ['p99 ms', 'r'],
    ['peak RSS MB', 'r'],
    ['app CPU µs/req', 'r'],
    ['sink CPU µs/req', 'r'],
    ['spans/req exported / produced', 'r'],
    ['req/s per round', 'r'],
  ];
  return {
    title:
      `HTTP: Nest 12 app, autocannon -c ${settings.connections}, ` +
      `${settings.warmupSeconds} s warm-up, ${settings.seconds} s measured`,
    tables: [table(columns, rows)],
    notes: [
      ...notes,
      'Spans: "exported / produced" per request over the app\'s whole life (warm-up included). ' +
        'Fewer exported than produced means the BatchSpanProcessor dropped spans (its 2048-span queue ' +
        `was full); a traced run exporting under ${MIN_EXPORTED_SHARE * 100}% of what it produces fails the bench.`,
      'Spans exported per request, by name (first round):',
      ...[...spanNotes].map((n) => `  ${n}`),
    ],
    failures,
  };
}

function checkRun(k, round, min, r, failures) {
  if (r.bad > 0) failures.push(`http ${k} (round ${round}): ${r.bad} errors or non-2xx responses.`);
  if (r.stopped.killed)
    failures.push(`http ${k} (round ${round}): the app did not exit on SIGTERM.`);
  if (min === undefined) return;
  const expected = r.requests * min;
  if (r.spans < expected * MIN_EXPORTED_SHARE) {
    failures.push(
      `http ${k} (round ${round}): exported ${r.spans} spans for ${r.requests} requests ` +
        `(expected at least ${expected}); a variant that does not export is not comparable.`,
    );
  }
}
