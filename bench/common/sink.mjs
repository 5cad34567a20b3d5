// The bench's collector: a small OTLP/HTTP trace receiver on a free loopback
// port. It counts the spans it receives (per service.name and per span name),
// decoding protobuf by reflection against ./otlp-trace.proto, and serves the
// counts at GET /count. With --hang it also opens a second port that accepts
// TCP connections and never answers (the "hanging collector" of bench/outage).
//
// Run as a child of the bench driver: reports its ports over IPC.
import { createServer as createHttpServer } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { gunzipSync, inflateSync } from 'node:zlib';
import protobuf from 'protobufjs';

const schema = protobuf.loadSync(fileURLToPath(new URL('./otlp-trace.proto', import.meta.url)));
const ExportTraceServiceRequest = schema.lookupType('benchsink.ExportTraceServiceRequest');

const counts = {
  spans: 0,
  requests: 0,
  rejected: 0,
  bytes: 0,
  byService: {},
  byName: {},
  /** Connections the hanging port accepted, and how many it holds open now. */
  hangAccepted: 0,
  hangOpen: 0,
};

function add(service, name) {
  counts.spans++;
  const s = service ?? '(none)';
  counts.byService[s] = (counts.byService[s] ?? 0) + 1;
  counts.byName[name] = (counts.byName[name] ?? 0) + 1;
}

function serviceOf(resource) {
  for (const kv of resource?.attributes ?? []) {
    if (kv.key === 'service.name') return kv.value?.stringValue ?? kv.value?.string_value;
  }
  return undefined;
}

function countProtobuf(body) {
  const request = ExportTraceServiceRequest.decode(body);
  for (const rs of request.resourceSpans) {
    const service = serviceOf(rs.resource);
    for (const ss of rs.scopeSpans) for (const span of ss.spans) add(service, span.name);
  }
}

function countJson(body) {
  const request = JSON.parse(body.toString('utf8'));
  for (const rs of request.resourceSpans ?? []) {
    const service = serviceOf(rs.resource);
    for (const ss of rs.scopeSpans ?? [])
      for (const span of ss.spans ?? []) add(service, span.name);
  }
}

function decompress(body, encoding) {
  if (encoding === 'gzip') return gunzipSync(body);
  if (encoding === 'deflate') return inflateSync(body);
  return body;
}

const server = createHttpServer((req, res) => {
  if (req.method === 'GET' && req.url === '/count') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ ...counts, hangOpen: hung.size }));
    return;
  }
  if (req.method !== 'POST' || req.url !== '/v1/traces') {
    // Anything else an SDK might send (metrics, logs) is accepted and ignored.
    req.resume();
    req.on('end', () => {
      res.writeHead(req.method === 'POST' ? 200 : 404);
      res.end();
    });
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const json = String(req.headers['content-type'] ?? '').includes('json');
    try {
      const body = decompress(Buffer.concat(chunks), req.headers['content-encoding']);
      counts.bytes += body.length;
      if (json) countJson(body);
      else countProtobuf(body);
      counts.requests++;
      res.writeHead(200, { 'content-type': json ? 'application/json' : 'application/x-protobuf' });
      res.end(json ? '{}' : undefined);
    } catch (error) {
      counts.rejected++;
      res.writeHead(400, { 'content-type': 'text/plain' });
      res.end(String(error?.message ?? error));
    }
  });
});

// Accepts, reads and discards, never writes: an exporter waits for its timeout.
const hung = new Set();
const hang = process.argv.includes('--hang')
  ? createTcpServer((socket) => {
      hung.add(socket);
      counts.hangAccepted++;
      socket.on('error', () => undefined);
      socket.on('close', () => hung.delete(socket));
      socket.resume();
    })
  : undefined;

const listen = (s) =>
  new Promise((resolve) => s.listen(0, '127.0.0.1', () => resolve(s.address().port)));

const port = await listen(server);
const hangPort = hang === undefined ? undefined : await listen(hang);

function stop() {
  for (const socket of hung) socket.destroy();
  hang?.close();
  server.close();
  server.closeAllConnections?.();
  if (process.connected) process.disconnect();
}
process.on('SIGTERM', stop);
process.on('disconnect', stop);
process.send?.({ type: 'ready', port, hangPort });
