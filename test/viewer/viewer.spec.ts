import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { OTLPTraceExporter as HttpJsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as HttpProtoExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { startViewer, type Viewer } from '../../sample-app/viewer/viewer.mjs';
import {
  FakeService,
  at,
  buildShop,
  encode,
  exportShop,
  nanos,
  postExport,
  postRaw,
  type Shop,
} from './otlp-fixtures.js';

const VIEWER_SCRIPT = fileURLToPath(new URL('../../sample-app/viewer/viewer.mjs', import.meta.url));
const PUBLIC_DIR = new URL('../../sample-app/viewer/public/', import.meta.url);

async function getJson(viewer: Viewer, path: string): Promise<any> {
  const response = await fetch(`${viewer.url}${path}`);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^application\/json/);
  return response.json();
}

const byId = (spans: any[]) => new Map<string, any>(spans.map((s) => [s.spanId, s]));

describe('trace viewer: OTLP/HTTP receiver and JSON API', () => {
  let viewer: Viewer;
  let shop: Shop;

  beforeAll(async () => {
    viewer = await startViewer({ port: 0 });
  });
  beforeEach(() => {
    shop = buildShop();
  });
  afterEach(async () => {
    await shop.shutdown();
    await fetch(`${viewer.url}/api/traces`, { method: 'DELETE' });
  });
  afterAll(() => viewer.close());

  it('listens on 127.0.0.1 at the port it reports', () => {
    expect(viewer.url).toBe(`http://127.0.0.1:${viewer.port}`);
    expect(viewer.port).toBeGreaterThan(0);
  });

  it('accepts protobuf and JSON, plain and gzip, with an empty ExportTraceServiceResponse', async () => {
    const responses = await exportShop(viewer.url, shop);
    const answers = await Promise.all(
      responses.map(async (r) => ({
        status: r.status,
        type: r.headers.get('content-type'),
        body: Buffer.from(await r.arrayBuffer()).toString('utf8'),
      })),
    );
    // gateway protobuf, orders JSON, billing protobuf+gzip, inventory JSON+gzip
    expect(answers).toEqual([
      { status: 200, type: 'application/x-protobuf', body: '' },
      { status: 200, type: 'application/json', body: '{}' },
      { status: 200, type: 'application/x-protobuf', body: '' },
      { status: 200, type: 'application/json', body: '{}' },
    ]);
    expect(viewer.store.size).toBe(2);
  });

  it('lists traces newest first: root span, services, span count, duration, error', async () => {
    await exportShop(viewer.url, shop);
    const list = await getJson(viewer, '/api/traces');
    expect(list.map((t: any) => t.traceId)).toEqual([shop.stockTraceId, shop.checkoutTraceId]);

    const [stock, checkout] = list;
    expect(stock).toMatchObject({
      rootName: 'GET /stock/:sku',
      rootService: 'gateway',
      services: ['gateway', 'inventory', 'orders'],
      spanCount: 5,
      error: true,
    });
    expect(stock.durationMs).toBeCloseTo(30, 2);
    expect(checkout).toMatchObject({
      rootName: 'POST /orders',
      rootService: 'gateway',
      services: ['gateway', 'orders', 'billing'],
      spanCount: 6,
      error: true,
    });
    expect(checkout.durationMs).toBeCloseTo(40, 2);
    // Milliseconds since the epoch, as Date takes them.
    expect(checkout.startTime).toBeCloseTo(
      Number(BigInt(nanos(shop.times.checkoutStart)) / 1_000_000n),
      0,
    );
    expect(Object.keys(checkout).sort()).toEqual([
      'durationMs',
      'error',
      'rootName',
      'rootService',
      'services',
      'spanCount',
      'startTime',
      'traceId',
    ]);
  });

  it('gives one trace: ids, parents, kinds, services, exact times, attributes, events, status', async () => {
    await exportShop(viewer.url, shop);
    const { ids } = shop;
    // Ids in any case: links pasted from elsewhere may be upper case.
    const trace = await getJson(viewer, `/api/traces/${shop.checkoutTraceId.toUpperCase()}`);
    expect(trace.traceId).toBe(shop.checkoutTraceId);
    expect(trace.spans).toHaveLength(6);
    for (const span of trace.spans) expect(span.traceId).toBe(shop.checkoutTraceId);
    // By start time.
    expect(trace.spans.map((s: any) => s.spanId)).toEqual([
      ids.checkout,
      ids.createCall,
      ids.create,
      ids.insert,
      ids.publish,
      ids.charge,
    ]);

    const spans = byId(trace.spans);
    const shape = (id: string) => {
      const { parentSpanId, name, kind, service, scope } = spans.get(id);
      return { parentSpanId, name, kind, service, scope };
    };
    expect(shape(ids.checkout)).toEqual({
      parentSpanId: '',
      name: 'POST /orders',
      kind: 'server',
      service: 'gateway',
      scope: 'gateway-scope',
    });
    expect(shape(ids.createCall)).toMatchObject({ parentSpanId: ids.checkout, kind: 'client' });
    expect(shape(ids.create)).toMatchObject({
      parentSpanId: ids.createCall,
      kind: 'server',
      service: 'orders',
      scope: 'orders-scope',
    });
    expect(shape(ids.insert)).toMatchObject({ parentSpanId: ids.create, kind: 'internal' });
    expect(shape(ids.publish)).toMatchObject({ parentSpanId: ids.create, kind: 'producer' });
    expect(shape(ids.charge)).toMatchObject({
      parentSpanId: ids.publish,
      kind: 'consumer',
      service: 'billing',
    });

    const root = spans.get(ids.checkout);
    expect(root.startTimeUnixNano).toBe(nanos(shop.times.checkoutStart));
    expect(root.endTimeUnixNano).toBe(nanos(shop.times.checkoutEnd));
    // Past 2^53: a double could not have kept the last digits.
    expect(BigInt(root.startTimeUnixNano)).toBeGreaterThan(BigInt(Number.MAX_SAFE_INTEGER));
    expect(root.startTimeUnixNano.endsWith('000007')).toBe(true);
    expect(root.durationMs).toBeCloseTo(40, 2);
    expect(root.attributes).toEqual(shop.rootAttributes);
    expect(root.events).toEqual([]);
    expect(root.status).toEqual({ code: 'UNSET', message: '' });

    const charge = spans.get(ids.charge);
    expect(charge.status).toEqual({ code: 'ERROR', message: 'card declined' });
    expect(charge.attributes).toEqual({
      'messaging.system': 'rabbitmq',
      'messaging.operation.type': 'process',
    });
    expect(charge.events).toEqual([
      {
        name: 'exception',
        timeUnixNano: nanos(shop.times.eventTime),
        attributes: {
          'exception.type': 'TypeError',
          'exception.message': 'card declined',
          'exception.stacktrace': shop.declined.stack,
        },
      },
    ]);
  });

  it("takes exports from OpenTelemetry's own OTLP/HTTP exporters, protobuf and JSON, gzip", async () => {
    const { gateway, orders } = shop.services;
    const sent: [ReadableSpan[], HttpJsonExporter | HttpProtoExporter][] = [
      // What the services send by default: protobuf to the standard path.
      [gateway.spans(), new HttpProtoExporter({ url: `${viewer.url}/v1/traces` })],
      [
        orders.spans(),
        new HttpJsonExporter({ url: `${viewer.url}/v1/traces`, compression: 'gzip' as any }),
      ],
    ];
    for (const [spans, exporter] of sent) {
      const result = await new Promise<ExportResult>((resolve) => exporter.export(spans, resolve));
      expect(result).toEqual({ code: ExportResultCode.SUCCESS });
      await exporter.shutdown();
    }
    const trace = await getJson(viewer, `/api/traces/${shop.checkoutTraceId}`);
    expect(trace.spans.map((s: any) => s.service).sort()).toEqual([
      'gateway',
      'gateway',
      'orders',
      'orders',
      'orders',
    ]);
  });

  it('decodes protobuf and JSON, plain and gzip, to the same spans', async () => {
    const all = Object.values(shop.services).flatMap((s) => s.spans());
    const seen: unknown[] = [];
    for (const encoding of ['protobuf', 'json'] as const) {
      for (const gzip of [false, true]) {
        const response = await postExport(viewer.url, all, { encoding, gzip });
        expect(response.status).toBe(200);
        seen.push(
          await Promise.all([
            getJson(viewer, `/api/traces/${shop.checkoutTraceId}`),
            getJson(viewer, `/api/traces/${shop.stockTraceId}`),
          ]),
        );
        await fetch(`${viewer.url}/api/traces`, { method: 'DELETE' });
      }
    }
    expect(seen).toHaveLength(4);
    for (const result of seen.slice(1)) expect(result).toEqual(seen[0]);
  });

  it('keeps key-value lists, bytes, empty arrays and non-ASCII text in attributes', async () => {
    const service = new FakeService('kv');
    const span = service.start('odd values', SpanKind.INTERNAL, at(5));
    span.end(at(6));
    const [finished] = service.spans();
    // The SDK only records primitive attributes; OTLP carries any value, which exporters of
    // other languages (and log bridges) do send.
    const odd = Object.create(finished!, {
      attributes: {
        value: {
          'app.map': { a: 'x', n: 3, nested: { ok: true } },
          'app.raw': new Uint8Array([0, 1, 254, 255]),
          'app.none': [],
          'app.text': 'ünïcødé ✓',
        },
      },
    }) as ReadableSpan;
    const results = [];
    for (const encoding of ['protobuf', 'json'] as const) {
      expect((await postExport(viewer.url, [odd], { encoding })).status).toBe(200);
      const trace = await getJson(viewer, `/api/traces/${finished!.spanContext().traceId}`);
      results.push(trace.spans[0].attributes);
      await fetch(`${viewer.url}/api/traces`, { method: 'DELETE' });
    }
    expect(results[0]).toEqual({
      'app.map': { a: 'x', n: 3, nested: { ok: true } },
      'app.raw': Buffer.from([0, 1, 254, 255]).toString('base64'),
      'app.none': [],
      'app.text': 'ünïcødé ✓',
    });
    expect(results[1]).toEqual(results[0]);
    await service.shutdown();
  });

  it('accepts OTLP/JSON as other SDKs write it: int64 as strings, enums by name', async () => {
    const traceId = 'ab'.repeat(16);
    const body = JSON.stringify({
      resourceSpans: [
        {
          resource: { attributes: [{ key: 'service.name', value: { stringValue: 'py' } }] },
          scopeSpans: [
            {
              scope: { name: 'manual' },
              spans: [
                {
                  traceId,
                  spanId: 'cd'.repeat(8),
                  parentSpanId: '',
                  name: 'job',
                  kind: 'SPAN_KIND_CONSUMER',
                  startTimeUnixNano: '1700000000000000001',
                  endTimeUnixNano: '1700000000500000001',
                  attributes: [
                    { key: 'big', value: { intValue: '1099511627777' } },
                    { key: 'nan', value: { doubleValue: 'NaN' } },
                  ],
                  status: { code: 'STATUS_CODE_OK' },
                },
              ],
            },
          ],
        },
      ],
    });
    expect((await postRaw(viewer.url, body, { 'content-type': 'application/json' })).status).toBe(
      200,
    );
    const [span] = (await getJson(viewer, `/api/traces/${traceId}`)).spans;
    expect(span).toMatchObject({
      service: 'py',
      kind: 'consumer',
      startTimeUnixNano: '1700000000000000001',
      endTimeUnixNano: '1700000000500000001',
      durationMs: 500,
      attributes: { big: 2 ** 40 + 1, nan: null },
      status: { code: 'OK', message: '' },
    });
  });

  it('maps which service calls which, over which transport, with calls and errors', async () => {
    await exportShop(viewer.url, shop);
    const map = await getJson(viewer, '/api/service-map');
    expect(map.edges).toEqual([
      { from: 'gateway', to: 'inventory', transport: 'nats', calls: 1, errors: 1 },
      { from: 'gateway', to: 'orders', transport: 'grpc', calls: 2, errors: 0 },
      { from: 'orders', to: 'billing', transport: 'rabbitmq', calls: 1, errors: 1 },
    ]);
    expect(map.nodes).toEqual([
      { service: 'billing', spans: 1, errors: 1 },
      { service: 'gateway', spans: 5, errors: 0 },
      { service: 'inventory', spans: 1, errors: 1 },
      { service: 'orders', spans: 4, errors: 0 },
    ]);
  });

  it('names a hop http by its method, else by what the caller says, else unknown', async () => {
    const web = new FakeService('web');
    const api = new FakeService('api');
    const worker = new FakeService('worker');
    const page = web.start('load page', SpanKind.CLIENT, at(0));
    const handler = api.start('GET /items', SpanKind.SERVER, at(1), page, {
      'http.request.method': 'GET',
    });
    // The server span's attributes say how *it* was reached, not how it reached the job.
    const job = worker.start('job', SpanKind.INTERNAL, at(2), handler);
    job.end(at(3));
    // An uninstrumented consumer: the producer still names the broker.
    const send = api.start('items send', SpanKind.PRODUCER, at(4), handler, {
      'messaging.system': 'kafka',
    });
    const consume = worker.start('items consume', SpanKind.CONSUMER, at(5), send);
    consume.end(at(6));
    send.end(at(6));
    handler.setStatus({ code: SpanStatusCode.ERROR });
    handler.end(at(7));
    page.end(at(8));
    await Promise.all(
      [web, api, worker].map((s) => postExport(viewer.url, s.spans(), { encoding: 'json' })),
    );
    const map = await getJson(viewer, '/api/service-map');
    // The failed handler counts against the hop into it and the hop out of it; not the
    // producer's hop, where neither side failed.
    expect(map.edges).toEqual([
      { from: 'api', to: 'worker', transport: 'kafka', calls: 1, errors: 0 },
      { from: 'api', to: 'worker', transport: 'unknown', calls: 1, errors: 1 },
      { from: 'web', to: 'api', transport: 'http', calls: 1, errors: 1 },
    ]);
    await Promise.all([web, api, worker].map((s) => s.shutdown()));
  });

  it('rejects what is not an export, and adds nothing from it', async () => {
    const protobuf = { 'content-type': 'application/x-protobuf' };
    const json = { 'content-type': 'application/json' };
    const good = encode(shop.services.gateway.spans(), 'json');
    const cases: [string, Uint8Array | string, Record<string, string>, number, RegExp][] = [
      ['truncated protobuf', Buffer.from([0x0a, 0xff]), protobuf, 400, /ExportTraceServiceRequest/],
      ['not JSON', '{"resourceSpans": [', json, 400, /not JSON/],
      ['a JSON array', '[]', json, 400, /expected a JSON object/],
      [
        'a bad trace id',
        Buffer.from(good).toString('utf8').replace(shop.checkoutTraceId, 'abc'),
        json,
        400,
        /invalid trace id/,
      ],
      ['gzip that is not', good, { ...json, 'content-encoding': 'gzip' }, 400, /gzip/],
      ['text/plain', good, { 'content-type': 'text/plain' }, 415, /content-type/],
      ['brotli', gzipSync(good), { ...json, 'content-encoding': 'br' }, 415, /content-encoding/],
    ];
    for (const [what, body, headers, status, message] of cases) {
      const response = await postRaw(viewer.url, body, headers);
      expect({ what, status: response.status }).toEqual({ what, status });
      expect(await response.text()).toMatch(message);
    }
    // The bad trace id was one span among good ones: the whole export is refused.
    expect(await getJson(viewer, '/api/traces')).toEqual([]);
  });

  it('answers 404 for unknown paths and traces, 405 for other methods', async () => {
    const status = async (path: string, method = 'GET') => {
      const response = await fetch(`${viewer.url}${path}`, { method });
      return { path, method, status: response.status, allow: response.headers.get('allow') };
    };
    expect(await status('/v1/metrics', 'POST')).toMatchObject({ status: 404 });
    expect(await status('/nope')).toMatchObject({ status: 404 });
    expect(await status('/api/traces/' + 'ef'.repeat(16))).toMatchObject({ status: 404 });
    expect(await status('/v1/traces')).toMatchObject({ status: 405, allow: 'POST' });
    expect(await status('/api/traces', 'POST')).toMatchObject({
      status: 405,
      allow: 'GET, DELETE, HEAD',
    });
    const missing = await fetch(`${viewer.url}/api/traces/${'ef'.repeat(16)}`);
    expect(await missing.json()).toEqual({ error: `no trace ${'ef'.repeat(16)}` });
  });

  it('clears on DELETE /api/traces', async () => {
    await exportShop(viewer.url, shop);
    expect(await getJson(viewer, '/api/traces')).toHaveLength(2);
    expect((await fetch(`${viewer.url}/api/traces`, { method: 'DELETE' })).status).toBe(204);
    expect(await getJson(viewer, '/api/traces')).toEqual([]);
    expect(await getJson(viewer, '/api/service-map')).toEqual({ nodes: [], edges: [] });
  });

  it('serves the page and every file it references, none from elsewhere', async () => {
    const page = await fetch(`${viewer.url}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const html = await page.text();
    const references = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    expect(references).toEqual(expect.arrayContaining(['app.js', 'style.css']));
    for (const reference of references.filter((r) => !r.startsWith('data:'))) {
      const response = await fetch(new URL(reference, `${viewer.url}/`));
      expect({ reference, status: response.status }).toEqual({ reference, status: 200 });
    }
    // app.js imports its helper module: the viewer must serve it too.
    const app = await (await fetch(`${viewer.url}/app.js`)).text();
    for (const [, module] of app.matchAll(/from '\.\/([^']+)'/g)) {
      expect((await fetch(`${viewer.url}/${module}`)).status).toBe(200);
    }
    // No CDN, no web font: the only URL in the page's files is SVG's namespace name.
    for (const file of ['index.html', 'app.js', 'trace-layout.js', 'style.css']) {
      const text = await readFile(new URL(file, PUBLIC_DIR), 'utf8');
      const urls = text.match(/https?:\/\/[^\s'")]+/g) ?? [];
      expect({ file, urls: urls.filter((u) => u !== 'http://www.w3.org/2000/svg') }).toEqual({
        file,
        urls: [],
      });
    }
  });
});

describe('trace viewer: eviction', () => {
  let viewer: Viewer;
  const service = new FakeService('evict');

  beforeAll(async () => {
    viewer = await startViewer({ port: 0, maxTraces: 3 });
  });
  afterAll(async () => {
    await viewer.close();
    await service.shutdown();
  });

  it('keeps the last maxTraces traces, dropping the one first seen longest ago', async () => {
    const traceIds: string[] = [];
    for (let i = 0; i < 5; i++) {
      // Each trace starts earlier than the one before: eviction goes by arrival, not by time.
      const span = service.start(`trace ${i}`, SpanKind.SERVER, at(1000 - i * 10));
      span.end(at(1001 - i * 10));
      traceIds.push(span.spanContext().traceId);
      expect((await postExport(viewer.url, [service.spans().at(-1)!])).status).toBe(200);
    }
    const listed = async () => (await getJson(viewer, '/api/traces')).map((t: any) => t.traceId);
    expect(await listed()).toEqual([traceIds[2], traceIds[3], traceIds[4]]);
    for (const id of traceIds.slice(0, 2)) {
      expect((await fetch(`${viewer.url}/api/traces/${id}`)).status).toBe(404);
    }

    // New spans of trace 2 do not make it newer: it was still first seen before 3 and 4.
    const [root2] = (await getJson(viewer, `/api/traces/${traceIds[2]}`)).spans;
    const late = service.start('late child', SpanKind.INTERNAL, at(2000));
    late.end(at(2001));
    const lateSpan = service.spans().at(-1)!;
    const reparented = Object.create(lateSpan, {
      spanContext: { value: () => ({ ...lateSpan.spanContext(), traceId: traceIds[2] }) },
      parentSpanContext: {
        value: { traceId: traceIds[2], spanId: root2.spanId, traceFlags: 1, isRemote: true },
      },
    }) as ReadableSpan;
    await postExport(viewer.url, [reparented]);
    expect((await getJson(viewer, `/api/traces/${traceIds[2]}`)).spans).toHaveLength(2);

    const next = service.start('trace 5', SpanKind.SERVER, at(900));
    next.end(at(901));
    await postExport(viewer.url, [service.spans().at(-1)!]);
    const next5 = next.spanContext().traceId;
    expect((await listed()).sort()).toEqual([traceIds[3], traceIds[4], next5].sort());
  });
});

describe('trace viewer: lifecycle', () => {
  it('close() resolves promptly with keep-alive and half-sent requests open', async () => {
    const viewer = await startViewer({ port: 0 });
    // fetch keeps its connection alive after the answer.
    expect((await fetch(`${viewer.url}/api/traces`)).status).toBe(200);
    const idle = connect(viewer.port, '127.0.0.1');
    const halfSent = connect(viewer.port, '127.0.0.1');
    await Promise.all([once(idle, 'connect'), once(halfSent, 'connect')]);
    halfSent.write(
      'POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{',
    );
    // The server resets them; a reset is what is expected here, not a failure.
    const closedSockets = [idle, halfSent].map(
      (socket) => new Promise((resolve) => socket.on('error', () => {}).on('close', resolve)),
    );

    const started = performance.now();
    await viewer.close();
    expect(performance.now() - started).toBeLessThan(1000);
    await Promise.all(closedSockets);
    await expect(fetch(`${viewer.url}/api/traces`)).rejects.toThrow();
    // A second close is harmless.
    await viewer.close();
  });

  it('fails to start on a port in use, with the listen error', async () => {
    const first = await startViewer({ port: 0 });
    await expect(startViewer({ port: first.port })).rejects.toMatchObject({ code: 'EADDRINUSE' });
    await first.close();
  });

  it('runs from the command line and prints its URL', async () => {
    const child = spawn(process.execPath, [VIEWER_SCRIPT, '--port', '0'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      const lines = createInterface({ input: child.stdout });
      const [line] = (await once(lines, 'line')) as [string];
      const url = /^viewer: (http:\/\/127\.0\.0\.1:\d+)$/.exec(line)?.[1];
      expect(url).toBeDefined();
      expect((await fetch(`${url}/api/traces`)).status).toBe(200);
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      expect(await exited).toEqual([0, null]);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
