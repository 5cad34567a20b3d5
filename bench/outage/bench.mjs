// bench/outage: the nestjs-tracing app (bench/http/app.mjs, Express, GET /hello)
// under load while its collector is healthy, refusing connections, or hanging
// (accepts, never answers). Throughput and p99 against the healthy run, RSS
// sampled every second, and how long SIGTERM → exit takes.
import {
  APP_CORE,
  BENCH_DIR,
  Child,
  freePort,
  LOAD_CORE,
  memory,
  sampleRss,
  sinkDelta,
  startSink,
} from '../common/proc.mjs';
import { max, mb, median, num, ratio, table } from '../common/report.mjs';

const APP = `${BENCH_DIR}http/app.mjs`;
const LOAD = `${BENCH_DIR}common/load-http.mjs`;
const MODES = ['healthy', 'refused', 'hanging'];

async function endpointFor(mode, sink) {
  if (mode === 'healthy') return sink.endpoint;
  if (mode === 'hanging') return sink.hangEndpoint;
  return `http://127.0.0.1:${await freePort()}`; // nothing listens there
}

async function runOne({ mode, sink, settings }) {
  const before = await sink.counts();
  const app = new Child(`outage app (${mode})`, APP, {
    core: APP_CORE,
    env: {
      BENCH_VARIANT: 'nestjs-tracing',
      BENCH_PLATFORM: 'express',
      BENCH_SERVICE_NAME: 'bench-outage',
      OTEL_EXPORTER_OTLP_ENDPOINT: await endpointFor(mode, sink),
    },
  });
  let load;
  let sampler;
  let stopHeap = () => undefined;
  try {
    const { port } = await app.waitFor('ready', 60_000);
    sampler = sampleRss(app.pid, 1000);
    const heap = [];
    const heapTimer = setInterval(() => {
      app.request('memory', {}, 5000).then(
        (m) => heap.push({ t: Date.now(), used: m.heapUsed }),
        () => undefined,
      );
    }, 1000);
    stopHeap = () => clearInterval(heapTimer);
    load = new Child('autocannon', LOAD, { core: LOAD_CORE });
    await load.waitFor('ready');
    load.send({
      type: 'run',
      url: `http://127.0.0.1:${port}/hello`,
      connections: settings.connections,
      warmupSeconds: settings.warmupSeconds,
      seconds: settings.seconds,
      pid: app.pid,
    });
    await load.waitFor('measuring', (settings.warmupSeconds + 60) * 1000);
    const measureStart = Date.now();
    const first = { t: measureStart, rss: memory(app.pid).rss };
    const result = await load.waitFor('result', (settings.seconds + 60) * 1000);
    const all = sampler.stop();
    stopHeap();
    const heapWindow = heap.filter((h) => h.t >= measureStart);
    // The first sample of the measured window is taken as it starts.
    const samples = [first, ...all.filter((s) => s.t > measureStart)];
    if (result.error) throw new Error(`autocannon failed: ${result.error}`);
    const stopped = await app.stop(60_000);
    const delta = sinkDelta(before, await sink.counts());
    const after = await sink.counts();
    const m = result.measured;
    return {
      rps: m.rps,
      p50: m.p50,
      p99: m.p99,
      bad: m.errors + m.non2xx,
      requests: (result.warmup?.requests ?? 0) + m.requests,
      rssIdle: all[0]?.rss,
      heapStart: heapWindow[0]?.used,
      heapMax: max(heapWindow.map((h) => h.used)),
      heapEnd: heapWindow.at(-1)?.used,
      rssStart: samples[0]?.rss,
      rssMax: max(samples.map((s) => s.rss)),
      rssEnd: samples.at(-1)?.rss,
      samples: samples.length,
      shutdownMs: stopped.ms,
      killed: stopped.killed,
      spans: delta.spans,
      hangAccepted: after.hangAccepted - before.hangAccepted,
    };
  } finally {
    sampler?.stop();
    stopHeap();
    await load?.stop(5000);
    await app.stop(5000);
  }
}

export async function run(settings, log) {
  const failures = [];
  const results = new Map(MODES.map((m) => [m, []]));
  const sink = await startSink({ hang: true });
  try {
    for (let round = 1; round <= settings.rounds; round++) {
      for (const mode of MODES) {
        log(`outage round ${round}/${settings.rounds}: collector ${mode}`);
        try {
          const r = await runOne({ mode, sink, settings });
          r.round = round;
          results.get(mode).push(r);
          if (r.bad > 0)
            failures.push(`outage ${mode} (round ${round}): ${r.bad} errors or non-2xx responses.`);
          if (r.killed)
            failures.push(
              `outage ${mode} (round ${round}): the app did not exit within 60 s of SIGTERM.`,
            );
          if (mode === 'healthy' && r.spans < r.requests * 0.5) {
            failures.push(
              `outage healthy (round ${round}): exported ${r.spans} spans for ${r.requests} requests; not comparable.`,
            );
          }
          if (mode === 'hanging' && r.hangAccepted === 0) {
            failures.push(
              `outage hanging (round ${round}): the exporter never connected to the hanging collector.`,
            );
          }
        } catch (error) {
          failures.push(`outage ${mode} (round ${round}): ${error.message}`);
        }
      }
    }
  } finally {
    await sink.stop();
  }

  const healthy = results.get('healthy');
  const against = (r, field) => {
    const h = healthy.find((x) => x.round === r.round);
    return h ? r[field] / h[field] : undefined;
  };
  const rows = MODES.map((mode) => {
    const runs = results.get(mode);
    const growth = runs.map((r) => r.rssEnd - r.rssStart);
    return [
      mode,
      num(median(runs.map((r) => r.rps))),
      mode === 'healthy' ? '1.00×' : ratio(median(runs.map((r) => against(r, 'rps')))),
      num(median(runs.map((r) => r.p99))),
      mode === 'healthy' ? '1.00×' : ratio(median(runs.map((r) => against(r, 'p99')))),
      mb(median(runs.map((r) => r.rssIdle))),
      `${mb(median(runs.map((r) => r.rssStart)))} / ${mb(median(runs.map((r) => r.rssMax)))} / ${mb(
        median(runs.map((r) => r.rssEnd)),
      )}`,
      `${median(growth) >= 0 ? '+' : ''}${mb(median(growth))}`,
      `${mb(median(runs.map((r) => r.heapStart)))} / ${mb(median(runs.map((r) => r.heapMax)))} / ${mb(
        median(runs.map((r) => r.heapEnd)),
      )}`,
      num(median(runs.map((r) => r.shutdownMs)) / 1000, 1),
      mode === 'healthy'
        ? `${num(median(runs.map((r) => r.spans / r.requests)), 2)} spans/req`
        : mode === 'hanging'
          ? `${num(median(runs.map((r) => r.hangAccepted)))} connections accepted, never answered`
          : 'connection refused',
    ];
  });
  return {
    title: `Outage: nestjs-tracing, Express GET /hello, collector healthy / refusing / hanging (${settings.seconds} s load)`,
    tables: [
      table(
        [
          ['collector', 'l'],
          ['req/s (median)', 'r'],
          ['vs healthy', 'r'],
          ['p99 ms', 'r'],
          ['p99 vs healthy', 'r'],
          ['RSS MB idle', 'r'],
          ['RSS MB start / max / end', 'r'],
          ['RSS end − start MB', 'r'],
          ['heap used MB start / max / end', 'r'],
          ['SIGTERM → exit s', 'r'],
          ['collector saw', 'l'],
        ],
        rows,
      ),
    ],
    notes: [
      'RSS: "idle" when the app is ready, before any load; then sampled every second over the measured ' +
        'window (after the warm-up): its first sample, its maximum, its last. The span queue and the ' +
        'exports in flight are bounded, so RSS should stay flat whatever the collector does. Heap used ' +
        '(process.memoryUsage(), asked over IPC every second) tells heap growth between GCs from a leak.',
    ],
    failures,
  };
}
