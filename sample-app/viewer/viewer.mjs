// A trace viewer for development: an OTLP/HTTP receiver (what the services' exporters send to on
// :4318) and a web page over the traces it keeps. Plain Node and files it serves itself, so the
// demo runs with no collector, no backend and no internet.
//
//   node sample-app/viewer/viewer.mjs [--port 4318] [--host 127.0.0.1] [--max-traces 200]
import { Buffer } from 'node:buffer';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { gunzip, inflate } from 'node:zlib';
import {
  EMPTY_PROTOBUF_RESPONSE,
  OtlpDecodeError,
  decodeJsonRequest,
  decodeProtobufRequest,
} from './otlp-decoder.mjs';
import { TraceStore, nanosToMillis } from './trace-store.mjs';

/** A batch of the JS exporter is a few hundred KB; this only stops a runaway client. */
const MAX_BODY_BYTES = 32 * 1024 * 1024;

/** The page's files: nothing else on disk is reachable. */
const PUBLIC_FILES = new Map([
  ['/', ['index.html', 'text/html; charset=utf-8']],
  ['/index.html', ['index.html', 'text/html; charset=utf-8']],
  ['/app.js', ['app.js', 'text/javascript; charset=utf-8']],
  ['/trace-layout.js', ['trace-layout.js', 'text/javascript; charset=utf-8']],
  ['/style.css', ['style.css', 'text/css; charset=utf-8']],
]);
const PUBLIC_DIR = new URL('./public/', import.meta.url);
const JSON_TYPE = 'application/json; charset=utf-8';

const decompress = { gzip: promisify(gunzip), deflate: promisify(inflate) };

class HttpError extends Error {
  constructor(status, message, headers = {}) {
    super(message);
    this.status = status;
    this.headers = headers;
  }
}

/**
 * Starts the viewer: `POST /v1/traces` takes OTLP/HTTP exports (protobuf or JSON, plain or
 * gzip), `/` serves the page, `/api/*` the JSON it reads.
 *
 * @param {{ port?: number, host?: string, maxTraces?: number, store?: TraceStore }} [options]
 *   `port` 0 picks a free port. `store` shares a store the caller made (then `maxTraces` is its).
 * @returns {Promise<{ url: string, port: number, store: TraceStore, close(): Promise<void> }>}
 */
export async function startViewer({
  port = 4318,
  host = '127.0.0.1',
  maxTraces = 200,
  store = new TraceStore({ maxTraces }),
} = {}) {
  const server = createServer((req, res) => {
    handle(req, res, store).catch((error) => {
      const [status, message, headers] = errorResponse(error);
      // The page and tests read JSON from /api; exporters log text.
      if (req.url?.startsWith('/api/')) {
        reply(res, status, JSON.stringify({ error: message }), JSON_TYPE, headers);
      } else {
        reply(res, status, `${message}\n`, 'text/plain; charset=utf-8', headers);
      }
    });
  });
  await new Promise((resolveListen, rejectListen) => {
    server.once('error', rejectListen);
    server.listen(port, host, () => {
      server.off('error', rejectListen);
      resolveListen();
    });
  });
  const address = /** @type {import('node:net').AddressInfo} */ (server.address());
  const urlHost = address.address.includes(':') ? `[${address.address}]` : address.address;
  let closing;
  return {
    url: `http://${urlHost}:${address.port}`,
    port: address.port,
    store,
    close() {
      // Exporters and browsers keep connections alive; without closing them `close` would wait
      // for them to time out.
      closing ??= new Promise((resolveClose) => {
        server.close(() => resolveClose());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

async function handle(req, res, store) {
  const { pathname } = new URL(req.url ?? '/', 'http://viewer');
  const method = req.method ?? 'GET';

  if (pathname === '/v1/traces') {
    allow(method, ['POST']);
    const json = requestFormat(req) === 'json';
    const spans = await readExport(req, json);
    store.add(spans);
    // An empty ExportTraceServiceResponse: every span accepted.
    if (json) return reply(res, 200, '{}', 'application/json');
    return reply(res, 200, Buffer.from(EMPTY_PROTOBUF_RESPONSE), 'application/x-protobuf');
  }

  if (pathname === '/api/traces') {
    allow(method, ['GET', 'DELETE']);
    if (method === 'DELETE') {
      store.clear();
      return reply(res, 204);
    }
    return replyJson(res, store.list().map(traceSummaryJson));
  }

  const traceMatch = /^\/api\/traces\/([^/]+)$/.exec(pathname);
  if (traceMatch) {
    allow(method, ['GET']);
    // Ids are hex: nothing to URL-decode, and any other text is simply not a trace here.
    const traceId = (traceMatch[1] ?? '').toLowerCase();
    const spans = store.get(traceId);
    if (spans.length === 0) throw new HttpError(404, `no trace ${traceId}`);
    return replyJson(res, { traceId, spans: spans.map(spanJson) });
  }

  if (pathname === '/api/service-map') {
    allow(method, ['GET']);
    return replyJson(res, store.serviceMap());
  }

  const file = PUBLIC_FILES.get(pathname);
  if (file) {
    allow(method, ['GET']);
    const [name, type] = file;
    return reply(res, 200, await readFile(new URL(name, PUBLIC_DIR)), type);
  }

  throw new HttpError(404, `not found: ${pathname}`);
}

/** HEAD goes with GET: node's http drops the body of a HEAD reply by itself. */
function allow(method, methods) {
  if (methods.includes(method) || (method === 'HEAD' && methods.includes('GET'))) return;
  const list = methods.includes('GET') ? [...methods, 'HEAD'] : methods;
  throw new HttpError(405, `${method} not allowed; use ${list.join(', ')}`, {
    allow: list.join(', '),
  });
}

/** The two encodings OTLP/HTTP defines, told apart by content-type as its specification says. */
function requestFormat(req) {
  const type = String(req.headers['content-type'] ?? '')
    .split(';')[0]
    .trim()
    .toLowerCase();
  if (type === 'application/json') return 'json';
  if (type === 'application/x-protobuf' || type === 'application/protobuf') return 'protobuf';
  throw new HttpError(
    415,
    `unsupported content-type "${type}"; send application/x-protobuf or application/json`,
  );
}

async function readExport(req, json) {
  const encoding = String(req.headers['content-encoding'] ?? 'identity')
    .trim()
    .toLowerCase();
  if (encoding !== 'identity' && !(encoding in decompress)) {
    throw new HttpError(415, `unsupported content-encoding "${encoding}"; send gzip or none`);
  }
  let body = await readBody(req);
  if (encoding !== 'identity') {
    try {
      body = await decompress[encoding](body, { maxOutputLength: MAX_BODY_BYTES });
    } catch (error) {
      throw new HttpError(400, `body is not valid ${encoding}: ${String(error)}`);
    }
  }
  return json ? decodeJsonRequest(body.toString('utf8')) : decodeProtobufRequest(body);
}

function readBody(req) {
  return new Promise((resolveBody, rejectBody) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.on('end', () => {
      if (size <= MAX_BODY_BYTES) resolveBody(Buffer.concat(chunks));
      else rejectBody(new HttpError(413, `body larger than ${MAX_BODY_BYTES} bytes`));
    });
    req.on('error', rejectBody);
  });
}

function errorResponse(error) {
  if (error instanceof HttpError) return [error.status, error.message, error.headers];
  if (error instanceof OtlpDecodeError) return [400, error.message, {}];
  console.error('viewer:', error);
  return [500, 'internal error', {}];
}

function reply(res, status, body, type, headers = {}) {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, {
    ...(type ? { 'content-type': type } : {}),
    // A development tool: what it serves is always the latest, never a cached copy.
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    ...headers,
  });
  res.end(body);
}

function replyJson(res, value) {
  reply(res, 200, JSON.stringify(value, jsonReplacer), JSON_TYPE);
}

/** Bytes attribute values go out in base64, as OTLP/JSON writes them. */
function jsonReplacer(key, value) {
  const raw = this[key];
  if (raw instanceof Uint8Array) return Buffer.from(raw).toString('base64');
  return typeof value === 'bigint' ? String(value) : value;
}

/** @param {import('./trace-store.mjs').TraceSummary} summary */
function traceSummaryJson(summary) {
  const { start: _start, end: _end, ...json } = summary;
  return json;
}

/** @param {import('./trace-store.mjs').StoredSpan} span */
function spanJson(span) {
  return {
    traceId: span.traceId,
    spanId: span.spanId,
    parentSpanId: span.parentSpanId,
    name: span.name,
    kind: span.kind,
    service: span.service,
    scope: span.scope,
    // Strings: past 2^53 a JSON number would lose the last digits.
    startTimeUnixNano: String(span.start),
    endTimeUnixNano: String(span.end),
    durationMs: nanosToMillis(span.end - span.start),
    attributes: span.attributes,
    events: span.events.map((event) => ({
      name: event.name,
      timeUnixNano: String(event.time),
      attributes: event.attributes,
    })),
    status: span.status,
  };
}

async function main() {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '4318' },
      host: { type: 'string', default: '127.0.0.1' },
      'max-traces': { type: 'string', default: '200' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(
      'Usage: node sample-app/viewer/viewer.mjs [--port 4318] [--host 127.0.0.1] [--max-traces 200]\n\n' +
        'Receives OTLP/HTTP trace exports on POST /v1/traces and shows them at the printed URL.',
    );
    return;
  }
  const port = Number(values.port);
  const maxTraces = Number(values['max-traces']);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`--port must be a port number (0 picks a free one), got "${values.port}"`);
  }
  if (!Number.isInteger(maxTraces) || maxTraces < 1) {
    throw new Error(`--max-traces must be a positive integer, got "${values['max-traces']}"`);
  }
  const viewer = await startViewer({ port, host: values.host, maxTraces });
  console.log(`viewer: ${viewer.url}`);
  const stop = () => {
    void viewer.close().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main().catch((error) => {
    const inUse = error?.code === 'EADDRINUSE';
    console.error(
      inUse
        ? `viewer: ${error.address}:${error.port} is in use (a collector or another viewer?); pick another with --port`
        : `viewer: ${error instanceof Error ? error.message : String(error)}`,
    );
    process.exitCode = 1;
  });
}
