// The sample shop traced end to end in one terminal: builds the package and the sample, checks
// which brokers are up, starts the trace viewer (an OTLP/HTTP receiver on :4318 with a web page)
// and the six services, sends a few orders, and prints each order's trace as a tree. Plain Node
// on purpose: it must run with nothing but the package's own dev dependencies.
// `node sample-app/demo.mjs --help` lists the flags.
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { createServer, STATUS_CODES } from 'node:http';
import { createRequire } from 'node:module';
import { connect } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { clearTimeout, setTimeout } from 'node:timers';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs, stripVTControlCharacters } from 'node:util';
import { startViewer } from './viewer/viewer.mjs';

const HELP = `Usage: node sample-app/demo.mjs [options]   (npm run demo -- [options])

Builds the package and the sample shop, starts the trace viewer (OTLP/HTTP on 127.0.0.1:4318,
web page on the same port) and the shop's services, sends a few orders (one fine, one invalid,
one whose payment fails, one slow) and prints their traces; then keeps printing new traces until
Ctrl-C. With OTEL_EXPORTER_OTLP_ENDPOINT set (Jaeger, Tempo, a collector), spans go there
instead and the viewer stays off.

  --once             exit after the scripted orders' traces are printed (exit 1 if one is missing)
  --no-orders        send nothing: start everything and wait (for your own requests)
  --no-build         use the existing dist/ and sample-app/dist/
  --free-ports       let every service and the viewer take a free port (for tests)
  --logs             show the services' own log lines
  -h, --help         show this help

Environment: PORT (gateway, default 3000), VIEWER_PORT (default 4318), ORDERS_PORT (orders'
gRPC port, default 50051) or ORDERS_GRPC_URL, PAYMENTS_PORT, PAYMENTS_FAIL_RATE / PAYMENTS_SLOW_RATE (0..1: share of charges that fail or are
slow unasked), RABBITMQ_URL, NATS_URL, MQTT_URL.`;

const { values: flags } = parseArgs({
  options: {
    once: { type: 'boolean', default: false },
    'no-orders': { type: 'boolean', default: false },
    'no-build': { type: 'boolean', default: false },
    'free-ports': { type: 'boolean', default: false },
    logs: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (flags.help) {
  console.log(HELP);
  process.exit(0);
}

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const mainOf = (service) =>
  fileURLToPath(new URL(`./dist/apps/${service}/src/main.js`, import.meta.url));
/** How long to wait for a scripted order's trace to be complete. */
const TRACE_TIMEOUT_MS = 20_000;
/** A trace is taken as complete once no span of it has arrived for this long. */
const QUIET_MS = 700;
const BAR_WIDTH = 32;

// https://no-color.org: colours only for a terminal, and never when NO_COLOR is set.
const colour = process.stdout.isTTY === true && !process.env.NO_COLOR;
const paint = (open, close) => (text) =>
  colour && text ? `\x1b[${open}m${text}\x1b[${close}m` : text;
const bold = paint(1, 22);
const dim = paint(2, 22);
const red = paint(31, 39);
const green = paint(32, 39);
const yellow = paint(33, 39);
const cyan = paint(36, 39);

const say = (text = '') => console.log(text);
const step = (text) => say(dim(`› ${text}`));

/** The brokers the shop uses, who needs each, and where it listens by default. */
const BROKERS = [
  {
    name: 'rabbitmq',
    label: 'RabbitMQ',
    env: 'RABBITMQ_URL',
    url: 'amqp://127.0.0.1:5672',
    needed: ['inventory'],
  },
  {
    name: 'nats',
    label: 'NATS',
    env: 'NATS_URL',
    url: 'nats://127.0.0.1:4222',
    needed: ['notifications'],
  },
  {
    name: 'mqtt',
    label: 'Mosquitto (MQTT)',
    env: 'MQTT_URL',
    url: 'mqtt://127.0.0.1:1883',
    needed: ['audit'],
  },
];
/** Started in this order: each one's callees are up before it. */
const SERVICES = ['payments', 'inventory', 'audit', 'notifications', 'orders', 'gateway'];

/** What runs so far: what `fail` and Ctrl-C have to stop. */
const running = { services: new Map(), viewer: undefined, stopping: false };

/** Stops whatever runs and exits 1 with a message. */
async function fail(message, details) {
  console.error(red(`✗ ${message}`));
  if (details) console.error(details);
  await stopAll();
  process.exit(1);
}

// ---------------------------------------------------------------------------------------------
// Build

async function build() {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const steps = [
    ['npm run build', 'npm', ['run', 'build']],
    ['tsc -p sample-app/tsconfig.json', process.execPath, [tsc, '-p', 'sample-app/tsconfig.json']],
  ];
  for (const [label, command, args] of steps) {
    step(`building: ${label}`);
    // npm is a .cmd script on Windows, which spawn only runs through a shell.
    const result = spawnSync(command, args, {
      cwd: ROOT,
      encoding: 'utf8',
      shell: process.platform === 'win32',
    });
    if (result.status !== 0) {
      await fail(`${label} failed`, `${result.stdout ?? ''}${result.stderr ?? result.error ?? ''}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Ports and brokers

async function freePort() {
  const probe = createServer();
  await new Promise((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address();
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

async function isPortFree(port) {
  const probe = createServer();
  return new Promise((resolve) => {
    probe.once('error', () => resolve(false));
    probe.listen(port, () => probe.close(() => resolve(true)));
  });
}

/** The port asked for, or a free one when `--free-ports` is given or the default is taken. */
async function choosePort(envName, fallback, label) {
  if (process.env[envName] !== undefined) return Number(process.env[envName]);
  if (flags['free-ports']) return freePort();
  if (await isPortFree(fallback)) return fallback;
  const port = await freePort();
  step(`port ${fallback} is taken; ${label} listens on ${port} instead`);
  return port;
}

function reachable(url) {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect({ host: hostname, port: Number(port) });
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
    socket.setTimeout(1500, () => done(false));
  });
}

// ---------------------------------------------------------------------------------------------
// Rendering

/** A trace as a tree: one line per span, children under their parent in start order. */
function renderTrace(spans) {
  const ids = new Set(spans.map((s) => s.spanId));
  const byStart = [...spans].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const children = new Map();
  const roots = [];
  for (const span of byStart) {
    // A parent that never arrived (a caller outside the demo) makes the span a root here.
    if (ids.has(span.parentSpanId)) {
      children.set(span.parentSpanId, [...(children.get(span.parentSpanId) ?? []), span]);
    } else {
      roots.push(span);
    }
  }

  const rows = [];
  const walk = (span, prefix, childPrefix) => {
    rows.push({ span, prefix });
    const kids = children.get(span.spanId) ?? [];
    kids.forEach((kid, i) => {
      const last = i === kids.length - 1;
      walk(kid, childPrefix + (last ? '└─ ' : '├─ '), childPrefix + (last ? '   ' : '│  '));
    });
  };
  for (const root of roots) walk(root, '', '');

  const traceStart = byStart[0].start;
  const traceEnd = spans.reduce((end, s) => (s.end > end ? s.end : end), traceStart);
  const total = Number(traceEnd - traceStart) || 1;
  const nameWidth = Math.max(...rows.map((r) => r.prefix.length + r.span.name.length));
  const serviceWidth = Math.max(...rows.map((r) => r.span.service.length));

  return rows.map(({ span, prefix }) => {
    const failed = span.status.code === 'ERROR';
    const mark = failed ? red : (text) => text;
    const name = mark(span.name) + ' '.repeat(nameWidth - prefix.length - span.name.length);
    const kind = span.kind.padEnd(8);
    const ms = `${(Number(span.end - span.start) / 1e6).toFixed(1)} ms`.padStart(10);
    const error = failed ? `  ${red(`✗ ${span.status.message || 'error'}`)}` : '';
    const bar = renderBar(span, traceStart, total, failed);
    return `  ${dim(prefix)}${name}  ${cyan(span.service.padEnd(serviceWidth))}  ${kind}  ${bar}${ms}${error}`;
  });
}

/** Where the span sits in the trace's timeline, scaled to the trace's total duration. */
function renderBar(span, traceStart, total, failed) {
  const offset = Math.min(
    BAR_WIDTH - 1,
    Math.floor((Number(span.start - traceStart) / total) * BAR_WIDTH),
  );
  const length = Math.max(
    1,
    Math.min(BAR_WIDTH - offset, Math.round((Number(span.end - span.start) / total) * BAR_WIDTH)),
  );
  const filled = '█'.repeat(length);
  return (
    dim('·'.repeat(offset)) +
    (failed ? red(filled) : green(filled)) +
    dim('·'.repeat(BAR_WIDTH - offset - length))
  );
}

function renderStatus(status) {
  const text = `${status} ${STATUS_CODES[status] ?? ''}`.trim();
  return status >= 500 ? red(text) : status >= 400 ? yellow(text) : green(text);
}

/** The heading of a trace nobody in this script asked for, from its HTTP SERVER span if any. */
function headingOf(spans) {
  const root =
    spans.find((s) => s.kind === 'server' && s.attributes['http.request.method']) ?? spans[0];
  const { 'http.request.method': method, 'url.path': path } = root.attributes;
  const status = root.attributes['http.response.status_code'];
  const what = method && path ? `${method} ${path}` : root.name;
  return `${bold(what)}${status ? ` → ${renderStatus(status)}` : ''}`;
}

function printTrace(heading, traceId, spans, viewerUrl) {
  const services = [...new Set(spans.map((s) => s.service))].join(', ');
  say(
    `▶ ${heading}  ${dim(`trace ${traceId} · ${spans.length} ${spans.length === 1 ? 'span' : 'spans'} · ${services}`)}`,
  );
  for (const line of renderTrace(spans)) say(line);
  if (viewerUrl) say(`  ${dim(`${viewerUrl}/#/traces/${traceId}`)}`);
  say();
}

// ---------------------------------------------------------------------------------------------
// Services

/** Starts one service and resolves once it logs that it is ready. */
async function startService(name, env) {
  const child = spawn(process.execPath, [mainOf(name)], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const service = { name, child, tail: [] };
  running.services.set(name, service);
  const ready = new Promise((resolve, reject) => {
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream }).on('line', (line) => {
        service.tail.push(line);
        if (service.tail.length > 40) service.tail.shift();
        if (flags.logs) say(`${dim(`${name.padEnd(13)} │`)} ${line}`);
        if (/\b(ready|listening on)\b/.test(stripVTControlCharacters(line))) resolve();
      });
    }
    child.once('exit', (code, signal) =>
      reject(new Error(`${name} exited (${signal ?? `code ${code}`}) before it was ready`)),
    );
    setTimeout(() => reject(new Error(`${name} did not start within 30 s`)), 30_000).unref();
  });
  try {
    await ready;
  } catch (error) {
    await fail(error.message, service.tail.join('\n'));
  }
  child.on('exit', (code, signal) => {
    if (running.stopping) return;
    void fail(`${name} exited (${signal ?? `code ${code}`})`, service.tail.join('\n'));
  });
  return service;
}

/** SIGTERM, as an orchestrator would: a service closes and exports its last spans. */
async function stopService({ child }) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

async function stopAll() {
  running.stopping = true;
  // Callers first: the gateway, then the services it calls, so nothing calls a stopped one.
  for (const name of [...SERVICES].reverse()) {
    const service = running.services.get(name);
    if (service !== undefined) await stopService(service);
  }
  await running.viewer?.close();
}

// ---------------------------------------------------------------------------------------------
// The scripted orders

const ORDERS = [
  {
    method: 'POST',
    path: () => '/orders',
    body: { sku: 'book', qty: 2 },
    expect: 201,
    what: 'an order',
  },
  {
    method: 'POST',
    path: () => '/orders',
    body: { sku: 'book', qty: 0 },
    expect: 400,
    what: 'invalid input: no other service is called',
  },
  {
    method: 'POST',
    path: () => '/orders?fail=1',
    body: { sku: 'lamp', qty: 1 },
    expect: 502,
    what: 'the payment fails: see where',
  },
  {
    method: 'POST',
    path: () => '/orders?slow=1',
    body: { sku: 'pen', qty: 10 },
    expect: 201,
    what: 'the payment is slow: see which step',
  },
  { method: 'GET', path: (orderId) => `/orders/${orderId}`, expect: 200, what: 'read it back' },
  { method: 'GET', path: () => '/orders/999', expect: 404, what: 'an order that does not exist' },
];

async function sendOrders(base) {
  const sent = [];
  let orderId;
  for (const { method, path, body, expect, what } of ORDERS) {
    const url = path(orderId ?? '1');
    const init = body
      ? { method, body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }
      : { method };
    const response = await fetch(`${base}${url}`, init).catch((error) =>
      fail(`${method} ${url} failed: ${error.message}`),
    );
    const reply = await response.json().catch(() => undefined);
    if (method === 'POST' && response.ok && reply?.id) orderId ??= reply.id;
    // `traceresponse: 00-<trace id>-<span id>-<flags>`, added by the module to every response.
    const traceId = response.headers.get('traceresponse')?.split('-')[1];
    const status = response.status;
    const heading =
      `${bold(`${method} ${url}`)}${body ? ` ${JSON.stringify(body)}` : ''} → ${renderStatus(status)}` +
      (status === expect ? '' : red(` (expected ${expect})`)) +
      `  ${dim(what)}`;
    sent.push({ heading, traceId, ok: status === expect });
  }
  return sent;
}

/** Resolves once the trace has its HTTP root and no span of it arrived for QUIET_MS. */
async function waitForTrace(store, traceId, deadline) {
  let last = -1;
  let quietSince = Date.now();
  while (Date.now() < deadline) {
    const spans = store.get(traceId);
    const rooted = spans.some((s) => s.kind === 'server' && s.attributes['http.request.method']);
    if (spans.length !== last) {
      last = spans.length;
      quietSince = Date.now();
    } else if (rooted && Date.now() - quietSince >= QUIET_MS) {
      return true;
    }
    await sleep(50);
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Main

if (!flags['no-build']) await build();
for (const service of SERVICES) {
  if (!existsSync(mainOf(service))) {
    await fail(`${mainOf(service)} does not exist: run without --no-build to build it.`);
  }
}

const external =
  process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
const env = {
  ...process.env,
  // The batch processor exports every 5 s by default; a demo should not make anyone wait.
  OTEL_BSP_SCHEDULE_DELAY: process.env.OTEL_BSP_SCHEDULE_DELAY ?? '200',
};
if (!colour) env.NO_COLOR = '1';

// `npm run demo` forwards Ctrl-C's SIGINT to a process that the terminal already sent it to:
// one stop is enough, and a second signal must not cut the services' flush short.
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, async () => {
    if (running.stopping) return;
    say();
    step('stopping the services (their last spans are flushed on the way out)');
    await stopAll();
    process.exit(0);
  });
}

const brokers = [];
for (const broker of BROKERS) {
  const url = process.env[broker.env] ?? broker.url;
  if (await reachable(url)) {
    brokers.push(broker.name);
  } else {
    say(
      yellow(
        `! ${broker.label} is not reachable at ${url}: ${broker.needed.join(', ')} will not run`,
      ) + dim(' (start it with `npm run services`, or set ' + broker.env + ')'),
    );
  }
}
env.SHOP_BROKERS = brokers.join(',');
const skipped = new Set(BROKERS.filter((b) => !brokers.includes(b.name)).flatMap((b) => b.needed));

let viewerUrl;
if (external === undefined) {
  const port = await choosePort('VIEWER_PORT', 4318, 'the viewer');
  try {
    running.viewer = await startViewer({ port });
  } catch (error) {
    if (error.code !== 'EADDRINUSE') throw error;
    await fail(
      `Port ${port} on 127.0.0.1 is already in use, probably by a collector or Jaeger.\n` +
        `  To send the demo's spans there instead, run:\n` +
        `    OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:${port} npm run demo\n` +
        `  or free the port to use the demo's own viewer.`,
    );
  }
  viewerUrl = running.viewer.url;
  env.OTEL_EXPORTER_OTLP_ENDPOINT = viewerUrl;
  step(`trace viewer on ${viewerUrl} (receives OTLP on ${viewerUrl}/v1/traces)`);
} else {
  step(`spans go to ${external}, as the environment says; the viewer is off`);
}

env.PORT = String(await choosePort('PORT', 3000, 'the gateway'));
env.PAYMENTS_PORT = String(await choosePort('PAYMENTS_PORT', 3001, 'payments'));
env.ORDERS_GRPC_URL ??= `127.0.0.1:${await choosePort('ORDERS_PORT', 50051, 'orders')}`;
if (flags['free-ports']) env.INVENTORY_QUEUE ??= `shop-inventory-${process.pid}`;

for (const name of SERVICES) {
  if (skipped.has(name)) continue;
  step(`starting ${name}`);
  await startService(name, env);
}
const base = `http://localhost:${env.PORT}`;
say(
  `${green('✓')} the shop runs: gateway on ${bold(base)}${viewerUrl ? `, viewer on ${bold(viewerUrl)}` : ''}`,
);
say();

let allGood = true;
if (!flags['no-orders']) {
  const sent = await sendOrders(base);
  allGood = sent.every((r) => r.ok);
  if (external !== undefined) {
    for (const { heading, traceId } of sent) say(`▶ ${heading}  ${dim(`trace ${traceId}`)}`);
    say();
    say(`These traces are in the backend behind ${external}; look them up by id,`);
    say(`e.g. in Jaeger: http://localhost:16686/trace/${sent[0]?.traceId ?? '<trace id>'}`);
    say();
  } else {
    const { store } = running.viewer;
    const deadline = Date.now() + TRACE_TIMEOUT_MS;
    for (const { heading, traceId } of sent) {
      if (traceId === undefined) {
        say(`▶ ${heading}  ${red('✗ no traceresponse header: is tracing on?')}\n`);
        allGood = false;
      } else if (await waitForTrace(store, traceId, deadline)) {
        printTrace(heading, traceId, store.get(traceId), viewerUrl);
      } else {
        say(
          `▶ ${heading}  ${red(`✗ trace ${traceId} did not arrive within ${TRACE_TIMEOUT_MS / 1000} s`)}\n`,
        );
        allGood = false;
      }
    }
  }
}

if (flags.once) {
  await stopAll();
  process.exit(allGood ? 0 : 1);
}

if (running.viewer !== undefined) {
  // Live: every trace that completes from now on is printed, whoever sent the request.
  const { store } = running.viewer;
  const printed = new Set(store.list().map((t) => t.traceId));
  store.on('spans', (traceIds) => {
    for (const id of traceIds) {
      if (printed.has(id)) continue;
      printed.add(id);
      void waitForTrace(store, id, Date.now() + TRACE_TIMEOUT_MS).then((complete) => {
        if (complete) printTrace(headingOf(store.get(id)), id, store.get(id), viewerUrl);
      });
    }
  });
}

say(
  bold(
    viewerUrl
      ? 'Open the viewer for the waterfall and the service map, or send more orders:'
      : `The spans go to ${process.env.OTEL_EXPORTER_OTLP_ENDPOINT ?? 'your collector'}. Send more orders:`,
  ),
);
if (viewerUrl) say(`  ${viewerUrl}`);
say(
  `  curl -X POST ${base}/orders -H 'content-type: application/json' -d '{"sku":"book","qty":1}'`,
);
say(
  `  curl -X POST '${base}/orders?fail=1' -H 'content-type: application/json' -d '{"sku":"pen","qty":3}'`,
);
say(`  curl ${base}/orders/1`);
say(dim(viewerUrl ? 'Ctrl-C stops the shop and the viewer.' : 'Ctrl-C stops the shop.'));
say();
