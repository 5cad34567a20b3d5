// bench/rpc: Nest microservice throughput, untraced against traced (both
// sides with TracingModule.forRoot), over TCP and NATS (request/response,
// `send`) and RabbitMQ (events, `emit`). Server on the app core, client (the
// load) on the load core, each its own process; brokers are the machine's own.
import { connect } from 'node:net';
import {
  APP_CORE,
  BENCH_DIR,
  Child,
  cpuMicros,
  freePort,
  LOAD_CORE,
  memory,
  sinkDelta,
  startSink,
} from '../common/proc.mjs';
import { mb, median, num, ratio, table } from '../common/report.mjs';
import { VARIANTS } from './variants.mjs';

const SERVER = `${BENCH_DIR}rpc/server.mjs`;
const CLIENT = `${BENCH_DIR}rpc/client.mjs`;
const MIN_EXPORTED_SHARE = 0.25;

const TRANSPORTS = [
  { name: 'tcp', mode: 'send' },
  { name: 'nats', mode: 'send', broker: 4222 },
  { name: 'rmq', mode: 'emit', broker: 5672 },
];
const FULL_GC_NOTE =
  'Every process, in every variant, runs one full GC under load half-way through the warm-up: a ' +
  "Nest client keeps its pending replies in a Map, and once one of V8's full GCs has run under load " +
  "(which a long-running process does sooner or later), the Map's replaced hash tables keep each " +
  "request's objects alive until the next full GC, so the client's scavenges promote most of what it " +
  'allocates. Without it, a variant that happened to start no full GC in its measured window was ' +
  'measured in a state the others had left. `full GCs`: medians of the full GCs in the measured window.';

function reachable(port) {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, timeout: 1000 });
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
    socket.once('timeout', () => done(false));
  });
}

async function runOne({ transport, variant, round, sink, settings }) {
  const before = await sink.counts();
  const env = {
    BENCH_TRANSPORT: transport.name,
    BENCH_VARIANT: variant,
    BENCH_MODE: transport.mode,
    BENCH_PREFIX: `nestjs-tracing-bench.${process.pid}.${round}.${variant}.${transport.name}`,
    OTEL_EXPORTER_OTLP_ENDPOINT: sink.endpoint,
  };
  if (transport.name === 'tcp') env.BENCH_TCP_PORT = String(await freePort());
  const server = new Child(`rpc server ${transport.name}/${variant}`, SERVER, {
    core: APP_CORE,
    env,
    nodeArgs: ['--expose-gc'],
  });
  let client;
  let fullGc;
  try {
    await server.waitFor('ready', 60_000);
    client = new Child(`rpc client ${transport.name}/${variant}`, CLIENT, {
      core: LOAD_CORE,
      env,
      nodeArgs: ['--expose-gc'],
    });
    await client.waitFor('ready', 60_000);
    client.send({
      type: 'run',
      warmupSeconds: settings.warmupSeconds,
      seconds: settings.seconds,
      inFlight: settings.inFlight,
    });
    // One full GC on each side under load, half-way through the warm-up, in every variant: see
    // FULL_GC_NOTE.
    fullGc = setTimeout(() => {
      server.send({ type: 'gc' });
      client.send({ type: 'gc' });
    }, settings.warmupSeconds * 500);
    const window = settings.warmupSeconds + settings.seconds + 30;
    await client.waitFor('measuring', window * 1000);
    const s0 = {
      stats: await server.request('stats'),
      cpu: cpuMicros(server.pid),
      sinkCpu: cpuMicros(sink.child.pid),
      t: performance.now(),
    };
    const measured = await client.waitFor('measured', window * 1000);
    const s1 = {
      stats: await server.request('stats'),
      cpu: cpuMicros(server.pid),
      sinkCpu: cpuMicros(sink.child.pid),
      t: performance.now(),
    };
    const done = await client.waitFor('done', 60_000);
    if (done.fatal) throw new Error(`the client failed: ${done.fatal}`);
    const clientPeak = memory(client.pid).peak;
    const clientStop = await client.stop(20_000);
    const final = await server.request('stats');
    const serverPeak = memory(server.pid).peak;
    const serverStop = await server.stop(20_000);
    const delta = sinkDelta(before, await sink.counts());

    const field = transport.mode === 'emit' ? 'events' : 'handled';
    const serverMessages = s1.stats[field] - s0.stats[field];
    const rate =
      transport.mode === 'emit'
        ? (serverMessages * 1000) / (s1.t - s0.t)
        : measured.completed / measured.seconds;
    return {
      rate,
      serverCpuPerMessage: serverMessages > 0 ? (s1.cpu - s0.cpu) / serverMessages : undefined,
      clientCpuPerMessage:
        measured.completed > 0 ? measured.cpuMicros / measured.completed : undefined,
      sinkCpuPerMessage:
        serverMessages > 0 ? (s1.sinkCpu - s0.sinkCpu) / serverMessages : undefined,
      serverPeak,
      clientPeak,
      serverMajorGcs: s1.stats.majorGcs - s0.stats.majorGcs,
      clientMajorGcs: measured.majorGcs,
      issued: done.issued,
      errors: done.errors,
      firstError: done.firstError,
      handled: final[field],
      clientSpans: delta.byService['bench-rpc-client'] ?? 0,
      serverSpans: delta.byService['bench-rpc-server'] ?? 0,
      spanNames: delta.byName,
      killed: clientStop.killed || serverStop.killed,
    };
  } finally {
    clearTimeout(fullGc);
    await client?.stop(5000);
    await server.stop(5000);
  }
}

export async function run(settings, log) {
  const failures = [];
  const notes = [];
  const transports = [];
  for (const t of TRANSPORTS) {
    if (settings.transports && !settings.transports.includes(t.name)) continue;
    if (t.broker !== undefined && !(await reachable(t.broker))) {
      failures.push(
        `rpc ${t.name}: no broker on 127.0.0.1:${t.broker} (\`npm run services\` starts it); not measured.`,
      );
      continue;
    }
    transports.push(t);
  }
  const results = new Map();
  const variants = settings.variants ?? VARIANTS;
  const sink = await startSink();
  try {
    for (let round = 1; round <= settings.rounds; round++) {
      for (const transport of transports) {
        for (const variant of variants) {
          const k = `${transport.name} ${variant}`;
          log(`rpc round ${round}/${settings.rounds}: ${k}`);
          let r;
          try {
            r = await runOne({ transport, variant, round, sink, settings });
            check(k, round, variant, r, failures);
          } catch (error) {
            failures.push(`rpc ${k} (round ${round}): ${error.message}`);
            r = { error: true };
          }
          r.round = round;
          if (!results.has(k)) results.set(k, []);
          results.get(k).push(r);
        }
      }
    }
  } finally {
    await sink.stop();
  }

  const rows = [];
  for (const transport of transports) {
    const base = results.get(`${transport.name} untraced`) ?? [];
    for (const variant of variants) {
      const runs = (results.get(`${transport.name} ${variant}`) ?? []).filter((r) => !r.error);
      const ratios = runs.map((r) => {
        const b = base.find((x) => x.round === r.round && !x.error);
        return b ? r.rate / b.rate : undefined;
      });
      const perMessage = (side) =>
        variant.startsWith('traced')
          ? num(
              median(
                runs.map((r) => r[`${side}Spans`] / (side === 'client' ? r.issued : r.handled)),
              ),
              2,
            )
          : '–';
      rows.push([
        transport.name,
        transport.mode === 'emit'
          ? `emit, ${settings.inFlight} in flight`
          : `send, ${settings.inFlight} in flight`,
        variant,
        num(median(runs.map((r) => r.rate))),
        variant === 'untraced' ? '1.00×' : ratio(median(ratios)),
        num(median(runs.map((r) => r.serverCpuPerMessage))),
        num(median(runs.map((r) => r.clientCpuPerMessage))),
        num(median(runs.map((r) => r.sinkCpuPerMessage)), 1),
        mb(median(runs.map((r) => r.serverPeak))),
        mb(median(runs.map((r) => r.clientPeak))),
        `${num(median(runs.map((r) => r.serverMajorGcs)))} / ${num(median(runs.map((r) => r.clientMajorGcs)))}`,
        `${perMessage('client')} / ${perMessage('server')}`,
        runs.map((r) => num(r.rate)).join(' / ') || 'failed',
      ]);
      if (variant === 'traced' && runs[0]) {
        const names = Object.entries(runs[0].spanNames)
          .map(([n, c]) => `${n.replace(/nestjs-tracing-bench\.[^ ]*\./, '<run>.')} ×${num(c)}`)
          .join(', ');
        notes.push(`  ${transport.name} traced, spans received (first round): ${names}`);
      }
    }
  }
  return {
    title:
      'RPC: Nest microservices, untraced vs traced on both sides, ' +
      `${settings.warmupSeconds} s warm-up, ${settings.seconds} s measured`,
    tables: [
      table(
        [
          ['transport', 'l'],
          ['load', 'l'],
          ['variant', 'l'],
          ['msg/s (median)', 'r'],
          ['ratio vs untraced', 'r'],
          ['server CPU µs/msg', 'r'],
          ['client CPU µs/msg', 'r'],
          ['sink CPU µs/msg', 'r'],
          ['server peak RSS MB', 'r'],
          ['client peak RSS MB', 'r'],
          ['full GCs server / client', 'r'],
          ['spans/msg client / server', 'r'],
          ['msg/s per round', 'r'],
        ],
        rows,
      ),
    ],
    notes: [
      'msg/s: replies received per second for `send`; events the server handled per second for `emit` ' +
        "(the client keeps that many emits awaiting the broker's confirmation). Expected spans: 1 per message " +
        'on each side (CLIENT/PRODUCER, SERVER/CONSUMER). Brokers are shared system services, not pinned. ' +
        'With 2 cores the client (the load) and the sink share core 1: when the traced rate is bound by ' +
        'that core, the per-side CPU columns tell where the cost is.',
      FULL_GC_NOTE,
      ...notes,
    ],
    failures,
  };
}

function check(k, round, variant, r, failures) {
  if (r.errors > 0)
    failures.push(`rpc ${k} (round ${round}): ${r.errors} failed calls (${r.firstError}).`);
  if (r.killed) failures.push(`rpc ${k} (round ${round}): a process did not exit on SIGTERM.`);
  if (variant === 'traced/sampled-out') {
    if (r.clientSpans + r.serverSpans > 0) {
      failures.push(
        `rpc ${k} (round ${round}): ${r.clientSpans + r.serverSpans} spans exported with sampler ratio 0.`,
      );
    }
    return;
  }
  if (variant !== 'traced') return;
  for (const [side, spans, expected] of [
    ['client', r.clientSpans, r.issued],
    ['server', r.serverSpans, r.handled],
  ]) {
    if (spans < expected * MIN_EXPORTED_SHARE) {
      failures.push(
        `rpc ${k} (round ${round}): the ${side} exported ${spans} spans for ${expected} messages; ` +
          'a traced variant that does not export is not comparable.',
      );
    }
  }
}
