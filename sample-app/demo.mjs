// The sample app traced end to end in one terminal: builds the package and the sample, starts a
// small OTLP/HTTP receiver and the gateway, sends a few orders, and prints each request's trace
// as a tree. Plain Node on purpose: it must run with nothing but the package's own dev
// dependencies. `node sample-app/demo.mjs --help` lists the flags.
import { Buffer } from 'node:buffer';
import { spawn, spawnSync } from 'node:child_process';
import { EventEmitter, once } from 'node:events';
import { existsSync } from 'node:fs';
import { createServer, STATUS_CODES } from 'node:http';
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { clearTimeout, setTimeout } from 'node:timers';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs, stripVTControlCharacters } from 'node:util';
import { gunzipSync } from 'node:zlib';
import protobuf from 'protobufjs/minimal.js';

const HELP = `Usage: node sample-app/demo.mjs [options]

Builds the package and the sample app, starts an OTLP receiver on 127.0.0.1:4318 and the
gateway, sends a few orders and prints their traces; then keeps printing new traces until Ctrl-C.
With OTEL_EXPORTER_OTLP_ENDPOINT set, spans go there instead (Jaeger, a collector...).

  --once             exit after the first traces are printed (exit code 1 if any is missing)
  --no-build         use the existing dist/ and sample-app/dist/
  --logs             show the gateway's own log lines
  --otlp-port <n>    port of the built-in receiver (default 4318; 0 picks a free one)
  -h, --help         show this help

Environment: PORT (gateway port; default 3000, or a free one if 3000 is taken).`;

const { values: flags } = parseArgs({
  options: {
    once: { type: 'boolean', default: false },
    'no-build': { type: 'boolean', default: false },
    logs: { type: 'boolean', default: false },
    'otlp-port': { type: 'string', default: '4318' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (flags.help) {
  console.log(HELP);
  process.exit(0);
}

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const GATEWAY_MAIN = fileURLToPath(new URL('./dist/gateway/src/main.js', import.meta.url));
/** How long to wait for the spans of the scripted requests. */
const TRACE_TIMEOUT_MS = 15_000;
/** Spans of one trace may come in more than one export: a short pause lets stragglers arrive. */
const SETTLE_MS = 250;
const BAR_WIDTH = 32;
// OTLP Span.SpanKind and Status.StatusCode.
const KINDS = ['unspecified', 'internal', 'server', 'client', 'producer', 'consumer'];
const KIND_SERVER = 2;
const KIND_CONSUMER = 5;
const STATUS_ERROR = 2;

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

/** What runs so far: what `fail` and Ctrl-C have to stop. */
const running = { gateway: undefined, receiver: undefined, stopping: false };

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
// OTLP receiver: what a collector does with POST /v1/traces, reduced to keeping the spans.

/** The spans received so far, by trace id; emits 'spans' with the trace ids each export touched. */
class TraceStore extends EventEmitter {
  traces = new Map();

  add(spans) {
    const touched = new Set();
    for (const span of spans) {
      const trace = this.traces.get(span.traceId) ?? [];
      trace.push(span);
      this.traces.set(span.traceId, trace);
      touched.add(span.traceId);
    }
    this.emit('spans', [...touched]);
  }

  get(traceId) {
    return this.traces.get(traceId) ?? [];
  }

  /**
   * Whether the span that started the trace in this process has arrived: a root, or a SERVER or
   * CONSUMER span continuing a caller's trace. It ends last, so its children came before it or in
   * the same export.
   */
  isComplete(traceId) {
    const spans = this.get(traceId);
    const ids = new Set(spans.map((s) => s.spanId));
    return spans.some(
      (s) =>
        s.parentSpanId === '' ||
        ((s.kind === KIND_SERVER || s.kind === KIND_CONSUMER) && !ids.has(s.parentSpanId)),
    );
  }
}

async function startReceiver(store, port) {
  const server = createServer((req, res) => {
    if (req.method !== 'POST' || req.url?.split('?')[0] !== '/v1/traces') {
      res.writeHead(404).end();
      return;
    }
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      const json = String(req.headers['content-type']).includes('json');
      try {
        let body = Buffer.concat(chunks);
        if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
        store.add(json ? decodeJson(JSON.parse(body.toString('utf8'))) : decodeProtobuf(body));
        // An empty ExportTraceServiceResponse: every span accepted.
        res.writeHead(200, {
          'content-type': json ? 'application/json' : 'application/x-protobuf',
        });
        res.end(json ? '{}' : undefined);
      } catch (error) {
        res.writeHead(400, { 'content-type': 'text/plain' }).end(String(error));
      }
    });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  return { server, url: `http://127.0.0.1:${server.address().port}` };
}

/**
 * Decodes an ExportTraceServiceRequest by walking its fields, reading only what the tree needs
 * (field numbers from opentelemetry-proto's trace.proto and common.proto).
 */
function decodeProtobuf(body) {
  const spans = [];
  readMessage(body, {
    // ExportTraceServiceRequest.resource_spans
    1: (r) => {
      let service = 'unknown';
      const scopeSpans = [];
      readMessage(r.bytes(), {
        // ResourceSpans.resource → Resource.attributes
        1: (rr) => {
          const attributes = {};
          readMessage(rr.bytes(), { 1: (ar) => readKeyValue(ar.bytes(), attributes) });
          service = String(attributes['service.name'] ?? service);
        },
        2: (rr) => scopeSpans.push(rr.bytes()),
      });
      // The resource may come after the spans on the wire, so the spans are read last.
      for (const bytes of scopeSpans) {
        readMessage(bytes, { 2: (sr) => spans.push(decodeSpan(sr.bytes(), service)) });
      }
    },
  });
  return spans;
}

function decodeSpan(bytes, service) {
  const span = newSpan(service);
  readMessage(bytes, {
    1: (r) => (span.traceId = hex(r.bytes())),
    2: (r) => (span.spanId = hex(r.bytes())),
    4: (r) => (span.parentSpanId = hex(r.bytes())),
    5: (r) => (span.name = r.string()),
    6: (r) => (span.kind = r.int32()),
    7: (r) => (span.start = readFixed64(r)),
    8: (r) => (span.end = readFixed64(r)),
    9: (r) => readKeyValue(r.bytes(), span.attributes),
    15: (r) =>
      readMessage(r.bytes(), {
        2: (sr) => (span.status.message = sr.string()),
        3: (sr) => (span.status.code = sr.int32()),
      }),
  });
  return span;
}

/** KeyValue: key = 1, value = 2 (AnyValue: string 1, bool 2, int 3, double 4; others skipped). */
function readKeyValue(bytes, into) {
  let key = '';
  let value;
  readMessage(bytes, {
    1: (r) => (key = r.string()),
    2: (r) =>
      readMessage(r.bytes(), {
        1: (vr) => (value = vr.string()),
        2: (vr) => (value = vr.bool()),
        // int64: a Long when the `long` package is installed, a number otherwise.
        3: (vr) => (value = Number(String(vr.int64()))),
        4: (vr) => (value = vr.double()),
      }),
  });
  into[key] = value;
}

/** Calls the handler of each field present; fields without one are skipped. */
function readMessage(bytes, handlers) {
  const reader = protobuf.Reader.create(bytes);
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    const handle = handlers[tag >>> 3];
    if (handle) handle(reader);
    else reader.skipType(tag & 7);
  }
}

/** Nanoseconds since the epoch exceed 2^53: read both halves into a BigInt to keep them exact. */
function readFixed64(reader) {
  const low = reader.fixed32();
  const high = reader.fixed32();
  return (BigInt(high) << 32n) | BigInt(low);
}

const hex = (bytes) => Buffer.from(bytes).toString('hex');

/** OTLP/JSON: ids in hex, 64-bit integers as strings. */
function decodeJson(request) {
  const spans = [];
  for (const resourceSpans of request.resourceSpans ?? []) {
    const resource = jsonAttributes(resourceSpans.resource?.attributes);
    const service = String(resource['service.name'] ?? 'unknown');
    for (const scopeSpans of resourceSpans.scopeSpans ?? []) {
      for (const s of scopeSpans.spans ?? []) {
        spans.push({
          ...newSpan(service),
          traceId: s.traceId,
          spanId: s.spanId,
          parentSpanId: s.parentSpanId ?? '',
          name: s.name,
          kind: s.kind ?? 0,
          start: BigInt(s.startTimeUnixNano ?? 0),
          end: BigInt(s.endTimeUnixNano ?? 0),
          attributes: jsonAttributes(s.attributes),
          status: { code: s.status?.code ?? 0, message: s.status?.message ?? '' },
        });
      }
    }
  }
  return spans;
}

function jsonAttributes(list = []) {
  const attributes = {};
  for (const { key, value = {} } of list) {
    attributes[key] =
      value.stringValue ??
      value.boolValue ??
      (value.intValue === undefined ? value.doubleValue : Number(value.intValue));
  }
  return attributes;
}

function newSpan(service) {
  return {
    service,
    traceId: '',
    spanId: '',
    parentSpanId: '',
    name: '',
    kind: 0,
    start: 0n,
    end: 0n,
    attributes: {},
    status: { code: 0, message: '' },
  };
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
    // A parent that never arrived (a caller in another process) makes the span a root here.
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
    const failed = span.status.code === STATUS_ERROR;
    const mark = failed ? red : (text) => text;
    const name = mark(span.name) + ' '.repeat(nameWidth - prefix.length - span.name.length);
    const kind = (KINDS[span.kind] ?? String(span.kind)).padEnd(8);
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
  const root = spans.find((s) => s.kind === KIND_SERVER) ?? spans[0];
  const { 'http.request.method': method, 'url.path': path } = root.attributes;
  const status = root.attributes['http.response.status_code'];
  const what = method && path ? `${method} ${path}` : root.name;
  return `${bold(what)}${status ? ` → ${renderStatus(status)}` : ''}`;
}

function printTrace(heading, traceId, spans) {
  say(`▶ ${heading}  ${dim(`trace ${traceId}`)}`);
  for (const line of renderTrace(spans)) say(line);
  say();
}

// ---------------------------------------------------------------------------------------------
// Gateway

async function isPortFree(port) {
  const probe = createServer();
  return new Promise((resolve) => {
    probe.once('error', () => resolve(false));
    probe.listen(port, () => probe.close(() => resolve(true)));
  });
}

/** Starts the gateway and resolves with its port once it logs that it listens. */
async function startGateway(env) {
  const child = spawn(process.execPath, [GATEWAY_MAIN], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.gateway = child;
  // Kept to explain a crash; shown as they come with --logs.
  const tail = [];
  const listening = new Promise((resolve, reject) => {
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream }).on('line', (line) => {
        tail.push(line);
        if (tail.length > 40) tail.shift();
        if (flags.logs) say(`${dim('gateway │')} ${line}`);
        // Nest colours its logs; the port is the digits at the end of the URL.
        const match = /listening on \S*:(\d+)$/.exec(stripVTControlCharacters(line));
        if (match) resolve(Number(match[1]));
      });
    }
    child.once('exit', (code, signal) =>
      reject(new Error(`the gateway exited (${signal ?? `code ${code}`}) before listening`)),
    );
    setTimeout(() => reject(new Error('the gateway did not start within 20 s')), 20_000).unref();
  });
  try {
    return { child, tail, port: await listening };
  } catch (error) {
    return fail(error.message, tail.join('\n'));
  }
}

/** SIGTERM, as an orchestrator would: the gateway closes and exports its last spans. */
async function stopGateway(child) {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

async function stopAll() {
  running.stopping = true;
  await stopGateway(running.gateway);
  // The exporter keeps its connection alive, and close() alone would wait for it.
  running.receiver?.closeAllConnections();
  await new Promise((resolve) => (running.receiver ? running.receiver.close(resolve) : resolve()));
}

// ---------------------------------------------------------------------------------------------
// The scripted requests

const REQUESTS = [
  { method: 'POST', path: () => '/orders', body: { sku: 'book', qty: 2 }, expect: 201 },
  { method: 'POST', path: () => '/orders', body: { sku: 'book', qty: 0 }, expect: 400 },
  { method: 'POST', path: () => '/orders?fail=1', body: { sku: 'lamp', qty: 1 }, expect: 500 },
  { method: 'POST', path: () => '/orders?slow=1', body: { sku: 'pen', qty: 10 }, expect: 201 },
  { method: 'GET', path: (orderId) => `/orders/${orderId}`, expect: 200 },
  { method: 'GET', path: () => '/orders/999', expect: 404 },
];

async function sendRequests(base) {
  const sent = [];
  let orderId;
  for (const { method, path, body, expect } of REQUESTS) {
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
      (status === expect ? '' : red(` (expected ${expect})`));
    sent.push({ heading, traceId, ok: status === expect });
  }
  return sent;
}

// ---------------------------------------------------------------------------------------------
// Main

if (!flags['no-build']) await build();
if (!existsSync(GATEWAY_MAIN)) {
  await fail(`${GATEWAY_MAIN} does not exist: run without --no-build to build it.`);
}

const external =
  process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
const store = new TraceStore();
const env = {
  ...process.env,
  // The batch processor exports every 5 s by default; a demo should not make anyone wait.
  OTEL_BSP_SCHEDULE_DELAY: process.env.OTEL_BSP_SCHEDULE_DELAY ?? '200',
};
if (!colour) env.NO_COLOR = '1';

if (external === undefined) {
  const otlpPort = Number(flags['otlp-port']);
  try {
    const receiver = await startReceiver(store, otlpPort);
    running.receiver = receiver.server;
    env.OTEL_EXPORTER_OTLP_ENDPOINT = receiver.url;
    step(`OTLP receiver on ${receiver.url}/v1/traces`);
  } catch (error) {
    if (error.code !== 'EADDRINUSE') throw error;
    await fail(
      `Port ${otlpPort} on 127.0.0.1 is already in use, probably by a collector or Jaeger.\n` +
        `  To send the demo's spans there instead, run:\n` +
        `    OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:${otlpPort} npm run demo\n` +
        `  or free the port (or pass --otlp-port 0) to use the demo's own receiver.`,
    );
  }
} else {
  step(`spans go to ${external}, as the environment says; the built-in receiver is off`);
}

let port = process.env.PORT === undefined ? 3000 : Number(process.env.PORT);
if (process.env.PORT === undefined && !(await isPortFree(port))) {
  step('port 3000 is taken; the gateway listens on a free port instead');
  port = 0;
}
const gateway = await startGateway({ ...env, PORT: String(port) });
const base = `http://localhost:${gateway.port}`;
step(`gateway on ${base}; sending ${REQUESTS.length} requests`);
say();

gateway.child.on('exit', (code, signal) => {
  if (running.stopping) return;
  void fail(`the gateway exited (${signal ?? `code ${code}`})`, gateway.tail.join('\n'));
});
// `npm run demo` forwards Ctrl-C's SIGINT to a process that the terminal already sent it to:
// one stop is enough, and a second signal must not cut the gateway's flush short.
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, async () => {
    if (running.stopping) return;
    say();
    step('stopping the gateway (its last spans are flushed on the way out)');
    await stopAll();
    process.exit(0);
  });
}

const sent = await sendRequests(base);
let allGood = sent.every((r) => r.ok);

if (external !== undefined) {
  for (const { heading, traceId } of sent) say(`▶ ${heading}  ${dim(`trace ${traceId}`)}`);
  say();
  say(`These traces are in the backend behind ${external}; look them up by id,`);
  say(`e.g. in Jaeger: http://localhost:16686/trace/${sent[0]?.traceId ?? '<trace id>'}`);
  say();
} else {
  const expected = sent.map((r) => r.traceId).filter((id) => id !== undefined);
  const deadline = Date.now() + TRACE_TIMEOUT_MS;
  while (!expected.every((id) => store.isComplete(id)) && Date.now() < deadline) await sleep(50);
  await sleep(SETTLE_MS);
  for (const { heading, traceId } of sent) {
    if (traceId === undefined) {
      say(`▶ ${heading}  ${red('✗ no traceresponse header: is tracing on?')}\n`);
      allGood = false;
    } else if (store.isComplete(traceId)) {
      printTrace(heading, traceId, store.get(traceId));
    } else {
      say(
        `▶ ${heading}  ${red(`✗ trace ${traceId} did not arrive within ${TRACE_TIMEOUT_MS / 1000} s`)}\n`,
      );
      allGood = false;
    }
  }
}

if (flags.once) {
  await stopAll();
  process.exit(allGood ? 0 : 1);
}

// Live: every trace that completes from now on is printed, whoever sent the request.
const printed = new Set(sent.map((r) => r.traceId));
const printWhenComplete = (traceIds) => {
  for (const id of traceIds) {
    if (printed.has(id) || !store.isComplete(id)) continue;
    printed.add(id);
    setTimeout(() => printTrace(headingOf(store.get(id)), id, store.get(id)), SETTLE_MS);
  }
};
store.on('spans', printWhenComplete);
printWhenComplete([...store.traces.keys()]);

say(
  bold(
    external === undefined
      ? 'Watching for new traces. Send more requests, for example:'
      : `The gateway keeps sending its spans to ${external}. Send more requests, for example:`,
  ),
);
say(
  `  curl -X POST localhost:${gateway.port}/orders -H 'content-type: application/json' -d '{"sku":"book","qty":1}'`,
);
say(
  `  curl -X POST 'localhost:${gateway.port}/orders?slow=1' -H 'content-type: application/json' -d '{"sku":"pen","qty":3}'`,
);
say(`  curl localhost:${gateway.port}/orders/1`);
say(dim('Ctrl-C stops the gateway and the demo.'));
say();
