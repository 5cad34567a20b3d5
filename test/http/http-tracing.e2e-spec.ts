import {
  context,
  diag,
  DiagLogLevel,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
} from '@opentelemetry/api';
import { Module, type INestApplication } from '@nestjs/common';
import { TRACING_MODULE_OPTIONS, TracingModule } from '../../lib/index.js';
import { VersioningType } from '@nestjs/common';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { execFileSync } from 'node:child_process';
import { createServer, request as httpRequest, type Server, type ServerResponse } from 'node:http';
import * as http2 from 'node:http2';
import { createRequire } from 'node:module';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import {
  TestSpans,
  TracingTestingModule,
  expectChildOf,
  expectParentId,
  expectRoot,
  expectSameTrace,
} from '../../lib/testing/index.js';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { ExpressAdapter } from '@nestjs/platform-express';
import { Test } from '@nestjs/testing';
import { platforms, startApp, useTracedApp, type Platform } from '../support/platforms.js';
import { ContextLosingModule, HttpTestModule, PlainModule, TenantModule } from './http-app.js';

// The SDK reports misuse (a second end(), an operation on an ended span, a bad attribute)
// through diag: any warning fails the test.
const diagnostics: string[] = [];
beforeAll(() => {
  const keep = (message: string): void => void diagnostics.push(message);
  diag.setLogger(
    { error: keep, warn: keep, info: () => {}, debug: () => {}, verbose: () => {} },
    DiagLogLevel.WARN,
  );
});
afterAll(() => diag.disable());
afterEach(() => {
  expect(diagnostics).toEqual([]);
  diagnostics.length = 0;
});

const TRACE_ID = '0af7651916cd43dd8448eb211c80319c';
const PARENT_ID = 'b7ad6b7169203331';
const TRACEPARENT = `00-${TRACE_ID}-${PARENT_ID}-01`;

describe.each(platforms)('inbound HTTP on $name', (platform) => {
  const ctx = useTracedApp(platform, [
    TracingTestingModule.forRoot({
      serviceName: 'http-e2e',
      http: {
        ignore: ['/health', '/internal/**'],
        requestHeaders: ['x-request-id'],
        responseHeaders: ['content-type'],
      },
    }),
    HttpTestModule,
  ]);
  let url: string;
  let spans: TestSpans;
  beforeEach(() => ({ url, spans } = ctx));

  /** Every span the request made has ended exactly once, and the SERVER span is among them. */
  async function serverSpan(name: string): Promise<ReadableSpan> {
    const span = await spans.waitForOne(name);
    expect(span.kind).toBe(SpanKind.SERVER);
    const ids = spans.all().map((s) => s.spanContext().spanId);
    expect(new Set(ids).size).toBe(ids.length);
    return span;
  }

  it('continues an incoming traceparent: same trace id, parent = the caller span', async () => {
    const res = await fetch(`${url}/orders/42`, {
      headers: { traceparent: TRACEPARENT, 'x-request-id': 'req-1', 'user-agent': 'e2e-agent' },
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ id: '42' });

    const server = await serverSpan('GET /orders/:id');
    expect(server.spanContext().traceId).toBe(TRACE_ID);
    expectParentId(server, PARENT_ID);
    expect(server.parentSpanContext?.isRemote).toBe(true);
    expect(server.attributes).toMatchObject({
      'http.request.method': 'GET',
      'http.route': '/orders/:id',
      'url.path': '/orders/42',
      'url.scheme': 'http',
      'http.response.status_code': 200,
      'server.address': '127.0.0.1',
      'server.port': Number(new URL(url).port),
      'network.protocol.version': '1.1',
      'client.address': expect.stringContaining('127.0.0.1'),
      'user_agent.original': 'e2e-agent',
      'http.request.header.x-request-id': ['req-1'],
      'http.response.header.content-type': [expect.stringContaining('application/json')],
    });
    // Straight from its client: the client is the peer, said once.
    expect(server.attributes).not.toHaveProperty(['network.peer.address']);
    expect(server.status.code).toBe(SpanStatusCode.UNSET);
    expect(server.instrumentationScope.name).toBe('nestjs-tracing');
    expect(server.resource.attributes['service.name']).toBe('http-e2e');

    const find = spans.one('OrdersService.find');
    expectChildOf(find, server);
    expect(find.kind).toBe(SpanKind.INTERNAL);
  });

  it('records the original client, host and scheme a proxy forwarded, and the proxy as the peer', async () => {
    await fetch(`${url}/orders/7`, {
      headers: {
        forwarded: 'for="[2001:db8:cafe::17]:4711";host=shop.example.com;proto=https',
        'x-forwarded-for': '198.51.100.1',
      },
    });
    const server = await serverSpan('GET /orders/:id');
    expect(server.attributes).toMatchObject({
      'client.address': '2001:db8:cafe::17',
      'server.address': 'shop.example.com',
      'url.scheme': 'https',
      'network.peer.address': expect.stringContaining('127.0.0.1'),
      'network.peer.port': expect.any(Number),
    });
    expect(server.attributes).not.toHaveProperty(['server.port']);
  });

  it('records no server.address for an empty Host header', async () => {
    // Node's own client would put a Host of its own in place of an empty one.
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect(Number(new URL(url).port), '127.0.0.1');
      let text = '';
      socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
      socket.on('end', () => resolve(text));
      socket.on('error', reject);
      socket.write('GET /orders/8 HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n');
    });
    expect(answer).toMatch(/^HTTP\/1\.1 200/);
    const server = await serverSpan('GET /orders/:id');
    expect(server.attributes['url.path']).toBe('/orders/8');
    expect(server.attributes).not.toHaveProperty(['server.address']);
  });

  it('traces a handler that returns an Observable with one span, for the subscription Nest makes', async () => {
    const res = await fetch(`${url}/observable`);
    expect(await res.json()).toEqual({ values: [1, 2] });
    const server = await serverSpan('GET /observable');
    expect(spans.byName('AppController.observable')).toHaveLength(1);
    expectChildOf(spans.one('AppController.observable'), server);
  });

  it('carries tracestate and baggage from the caller', async () => {
    const res = await fetch(`${url}/trace-id`, {
      headers: { traceparent: TRACEPARENT, tracestate: 'vendor=abc', baggage: 'tenant=acme' },
    });
    expect(await res.json()).toEqual({ traceId: TRACE_ID, tenant: 'acme' });
    const server = await serverSpan('GET /trace-id');
    expect(server.spanContext().traceState?.get('vendor')).toBe('abc');
  });

  it.each([
    ['missing', undefined],
    ['garbage', 'not-a-traceparent'],
    ['all-zero trace id', `00-${'0'.repeat(32)}-${PARENT_ID}-01`],
    ['upper-case hex', `00-${TRACE_ID.toUpperCase()}-${PARENT_ID}-01`],
    ['version ff', `ff-${TRACE_ID}-${PARENT_ID}-01`],
    ['too short', `00-${TRACE_ID.slice(2)}-${PARENT_ID}-01`],
  ])(
    'starts a new root for a %s traceparent, and the request still succeeds',
    async (_label, header) => {
      const res = await fetch(`${url}/hello`, { headers: header ? { traceparent: header } : {} });
      expect(res.status).toBe(200);
      expect(await res.text()).toBe('hello');
      const server = await serverSpan('GET /hello');
      expectRoot(server);
      expect(server.spanContext().traceId).not.toBe(TRACE_ID);
      expect(server.spanContext().traceId).toMatch(/^[0-9a-f]{32}$/);
    },
  );

  it("honours a caller's not-sampled decision: nothing exported, the trace still answered", async () => {
    const res = await fetch(`${url}/trace-id`, {
      headers: { traceparent: `00-${TRACE_ID}-${PARENT_ID}-00` },
    });
    expect(await res.json()).toMatchObject({ traceId: TRACE_ID });
    expect(res.headers.get('traceresponse')).toMatch(
      new RegExp(`^00-${TRACE_ID}-[0-9a-f]{16}-00$`),
    );
    // A sampled request after it, to know the first one had its chance to export.
    await fetch(`${url}/hello`);
    await spans.waitForOne('GET /hello');
    expect(spans.trace(TRACE_ID)).toHaveLength(0);
  });

  it('puts middleware, guards and interceptors inside the SERVER span', async () => {
    const res = await fetch(`${url}/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', traceparent: TRACEPARENT },
      body: JSON.stringify({ sku: 'abc' }),
    });
    expect(res.status).toBe(201);
    expect(await res.json()).toEqual({ created: { sku: 'abc' } });
    const server = await serverSpan('POST /orders');
    expect(server.attributes['http.response.status_code']).toBe(201);
    const middleware = spans.one('middleware.run');
    const guard = spans.one('guard.check');
    const interceptor = spans.one('interceptor.before');
    expectChildOf(middleware, server);
    const create = spans.one('orders.create');
    expectChildOf(guard, server);
    expectChildOf(interceptor, server);
    expectChildOf(create, server);
    expect(create.attributes['orders.source']).toBe('e2e');
    expectSameTrace([server, middleware, guard, interceptor, create]);
    expect(server.spanContext().traceId).toBe(TRACE_ID);
  });

  it('records a 5xx with the exception and status ERROR', async () => {
    const res = await fetch(`${url}/boom`);
    expect(res.status).toBe(500);
    const server = await serverSpan('GET /boom');
    expect(server.status.code).toBe(SpanStatusCode.ERROR);
    expect(server.status.message).toBe('kaboom');
    expect(server.attributes['http.response.status_code']).toBe(500);
    expect(server.attributes['error.type']).toBe('TypeError');
    const event = server.events.find((e) => e.name === 'exception');
    expect(event?.attributes).toMatchObject({
      'exception.type': 'TypeError',
      'exception.message': 'kaboom',
    });
    expect(String(event?.attributes?.['exception.stacktrace'])).toContain('kaboom');
  });

  it('does not mark a 4xx HttpException as an error', async () => {
    const res = await fetch(`${url}/missing/7`);
    expect(res.status).toBe(404);
    const server = await serverSpan('GET /missing/:id');
    expect(server.status.code).toBe(SpanStatusCode.UNSET);
    expect(server.attributes['http.response.status_code']).toBe(404);
    expect(server.attributes['error.type']).toBeUndefined();
    expect(server.events.filter((e) => e.name === 'exception')).toHaveLength(0);
  });

  it.each([
    [
      'a handler that fails after writing its head',
      '/cut-short',
      'RangeError',
      'failed after the head',
    ],
    ['an SSE stream that fails after its first event', '/feed', 'RangeError', 'the feed broke'],
  ])(
    'records %s as an error, with its 200 and the exception',
    async (_case, path, type, message) => {
      const res = await fetch(`${url}${path}`);
      expect(res.status).toBe(200);
      await res.text();
      const server = await serverSpan(`GET ${path}`);
      expect(server.attributes['http.response.status_code']).toBe(200);
      expect(server.status).toEqual({ code: SpanStatusCode.ERROR, message });
      expect(server.attributes['error.type']).toBe(type);
      const event = server.events.find((e) => e.name === 'exception');
      expect(event?.attributes).toMatchObject({
        'exception.type': type,
        'exception.message': message,
      });
    },
  );

  it('records a handler that fails after taking the response over as an error', async () => {
    const res = await fetch(`${url}/taken-over`);
    await res.text();
    expect(res.status).toBe(platform.name === 'fastify' ? 200 : 500);
    const server = await serverSpan('GET /taken-over');
    expect(server.status).toEqual({
      code: SpanStatusCode.ERROR,
      message: 'failed after taking over',
    });
    expect(server.attributes['error.type']).toBe('RangeError');
    expect(server.events.filter((e) => e.name === 'exception')).toHaveLength(1);
  });

  it('marks a 5xx written without an exception as an error typed by its status code', async () => {
    const res = await fetch(`${url}/unavailable`);
    expect(res.status).toBe(503);
    const server = await serverSpan('GET /unavailable');
    expect(server.status.code).toBe(SpanStatusCode.ERROR);
    expect(server.attributes['error.type']).toBe('503');
    expect(server.events.filter((e) => e.name === 'exception')).toHaveLength(0);
  });

  it('runs pipes inside the SERVER span', async () => {
    const res = await fetch(`${url}/echo`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ a: 1 }),
    });
    expect(await res.json()).toEqual({ a: 1 });
    const server = await serverSpan('POST /echo');
    expectChildOf(spans.one('pipe.transform'), server);
  });

  it('names a request that matches no route by its method only', async () => {
    const res = await fetch(`${url}/no/such/route`);
    expect(res.status).toBe(404);
    const server = await serverSpan('GET');
    expect(server.attributes['http.route']).toBeUndefined();
    expect(server.attributes['url.path']).toBe('/no/such/route');
    expect(server.status.code).toBe(SpanStatusCode.UNSET);
  });

  it('gives ignored paths no span at all', async () => {
    expect((await fetch(`${url}/health`)).status).toBe(200);
    expect((await fetch(`${url}/health/`)).status).toBeLessThan(500);
    expect((await fetch(`${url}/internal/a/b`)).status).toBe(404);
    // A traced request after them, to know the ignored ones had their chance to end.
    await fetch(`${url}/hello`);
    await serverSpan('GET /hello');
    expect(spans.byKind(SpanKind.SERVER).map((s) => s.name)).toEqual(['GET /hello']);
    // Nor do the spans the app's middleware starts for them (tracing is suppressed there):
    // every span exported is the traced request's.
    const traced = spans.one('GET /hello').spanContext().traceId;
    expect(spans.byName('middleware.run').length).toBeGreaterThan(0);
    expect(spans.all().filter((s) => s.spanContext().traceId !== traced)).toEqual([]);
  });

  it('reads the path of an absolute-form target, ignore rules included, and records the query', async () => {
    const { hostname, port } = new URL(url);
    const raw = (target: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = connect(Number(port), hostname, () =>
          // Written, not ended: a half-closed socket may be closed before the answer is.
          socket.write(
            `GET ${target} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nConnection: close\r\n\r\n`,
          ),
        );
        let answer = '';
        socket.setEncoding('utf8');
        socket.on('data', (chunk: string) => (answer += chunk));
        socket.on('end', () => resolve(answer));
        socket.on('error', reject);
      });
    expect(await raw(`${url}/health`)).toMatch(/^HTTP\/1\.1 200/);
    expect(await raw(`${url}/orders/7?q=shoes&sig=s3cr3t&page=2`)).toMatch(/^HTTP\/1\.1 200/);
    await fetch(`${url}/hello`);
    await serverSpan('GET /hello');
    expect(spans.byKind(SpanKind.SERVER).map((s) => s.name)).toEqual([
      'GET /orders/:id',
      'GET /hello',
    ]);
    expect(spans.one('GET /orders/:id').attributes).toMatchObject({
      'url.path': '/orders/7',
      'url.query': 'q=shoes&sig=REDACTED&page=2',
    });
    expect(spans.one('GET /hello').attributes['url.query']).toBeUndefined();
  });

  it('answers with traceresponse and Server-Timing matching the exported span', async () => {
    const res = await fetch(`${url}/hello`, { headers: { traceparent: TRACEPARENT } });
    const server = await serverSpan('GET /hello');
    const { traceId, spanId } = server.spanContext();
    const expected = `00-${traceId}-${spanId}-01`;
    expect(res.headers.get('traceresponse')).toBe(expected);
    expect(res.headers.get('server-timing')).toBe(`traceparent;desc="${expected}"`);
  });

  it('appends to a Server-Timing header the app sets itself', async () => {
    const res = await fetch(`${url}/timing`);
    const server = await serverSpan('GET /timing');
    const { traceId, spanId } = server.spanContext();
    expect(res.headers.get('server-timing')).toBe(
      `db;dur=12, traceparent;desc="00-${traceId}-${spanId}-01"`,
    );
  });

  it("appends to a Server-Timing header set on Node's own response", async () => {
    const res = await fetch(`${url}/raw-timing`);
    const { traceId, spanId } = (await serverSpan('GET /raw-timing')).spanContext();
    expect(res.headers.get('server-timing')).toBe(
      `cache;desc=hit, traceparent;desc="00-${traceId}-${spanId}-01"`,
    );
    expect(res.headers.get('traceresponse')).toBe(`00-${traceId}-${spanId}-01`);
  });

  it('adds to a Server-Timing the app passes to writeHead in a raw header list', async () => {
    const res = await fetch(`${url}/own-head-list`);
    expect(await res.text()).toBe('own list');
    const server = await serverSpan('GET /own-head-list');
    const { traceId, spanId } = server.spanContext();
    expect(res.headers.get('server-timing')).toBe(
      `app;dur=2, traceparent;desc="00-${traceId}-${spanId}-01"`,
    );
    expect(res.headers.get('traceresponse')).toBe(`00-${traceId}-${spanId}-01`);
    // A listed response header given only to writeHead is recorded too.
    expect(server.attributes['http.response.header.content-type']).toEqual(['text/plain']);
  });

  it('appends to a Server-Timing the app passes to writeHead itself, in any case', async () => {
    const res = await fetch(`${url}/own-head`);
    expect(await res.text()).toBe('own');
    const server = await serverSpan('GET /own-head');
    const { traceId, spanId } = server.spanContext();
    expect(res.headers.get('server-timing')).toBe(
      `app;dur=1, traceparent;desc="00-${traceId}-${spanId}-01"`,
    );
    expect(res.headers.get('traceresponse')).toBe(`00-${traceId}-${spanId}-01`);
    // Spelled `Content-Type` there, where nothing set a header before (Nest's SSE does this).
    expect(server.attributes['http.response.header.content-type']).toEqual(['text/plain']);
  });

  it('ends the span of an aborted request, marked as aborted', async () => {
    await new Promise<void>((resolve) => {
      const req = httpRequest(`${url}/slow`);
      req.on('error', () => resolve());
      req.end();
      // Well inside the handler's 1 s, well after the server has the request.
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 200);
    });
    const server = await serverSpan('GET /slow');
    expect(server.attributes['error.type']).toBe('aborted');
    expect(server.status.code).toBe(SpanStatusCode.ERROR);
    expect(server.attributes['http.response.status_code']).toBeUndefined();
    // The handler finishing later must not end the span a second time (the diag check
    // after each test sees a second end()).
    await new Promise((r) => setTimeout(r, 1000));
    expect(spans.byName('GET /slow')).toHaveLength(1);
  });

  it('marks a request whose client abandoned its upload as aborted', async () => {
    // Half a declared body, then the connection closes: the body parser answers with an error
    // status on a connection that is gone.
    await new Promise<void>((resolve) => {
      const req = httpRequest(`${url}/echo`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': '100000' },
      });
      req.on('error', () => resolve());
      req.write(`{"a":"${'x'.repeat(1000)}`);
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 200);
    });
    // (Express names it by the method only: the request never reached its route.)
    const server = await spans.waitForOne(/^POST/);
    expect(server.attributes['url.path']).toBe('/echo');
    expect(server.attributes['error.type']).toBe('aborted');
    expect(server.status.code).toBe(SpanStatusCode.ERROR);
  });

  it('keeps 200 concurrent requests in their own traces', async () => {
    const ids = Array.from({ length: 200 }, (_, i) => `f${i.toString(16).padStart(31, '0')}`);
    await Promise.all(
      ids.map(async (traceId, i) => {
        const res = await fetch(`${url}/orders/${i}`, {
          headers: { traceparent: `00-${traceId}-${PARENT_ID}-01` },
        });
        expect(res.status).toBe(200);
      }),
    );
    await spans.waitFor((all) => all.filter((s) => s.name === 'GET /orders/:id').length === 200);
    for (const server of spans.byName('GET /orders/:id')) {
      const id = Number(String(server.attributes['url.path']).split('/').pop());
      expect(server.spanContext().traceId).toBe(ids[id]);
      const children = spans
        .trace(ids[id] as string)
        .filter((s) => s.name === 'OrdersService.find');
      expect(children).toHaveLength(1);
      expectChildOf(children[0] as ReadableSpan, server);
    }
  });
});

describe.each(platforms)('route names with a global prefix and versioning on $name', (platform) => {
  const ctx = useTracedApp(platform, [TracingTestingModule.forRoot(), HttpTestModule], (a) => {
    a.setGlobalPrefix('api');
    a.enableVersioning({ type: VersioningType.URI, defaultVersion: '1' });
  });

  it('names the span by the full route template', async () => {
    const res = await fetch(`${ctx.url}/api/v1/orders/9`);
    expect(res.status).toBe(200);
    const server = await ctx.spans.waitForOne(/^GET /);
    expect(server.name).toBe('GET /api/v1/orders/:id');
    expect(server.attributes['http.route']).toBe('/api/v1/orders/:id');
  });

  it('names a request under the prefix that matches no route by its method only', async () => {
    const res = await fetch(`${ctx.url}/api/no/such/route`);
    expect(res.status).toBe(404);
    const server = await ctx.spans.waitForOne(/^GET/);
    expect(server.name).toBe('GET');
    expect(server.attributes['http.route']).toBeUndefined();
    expect(server.attributes['url.path']).toBe('/api/no/such/route');
    expect(server.attributes['http.response.status_code']).toBe(404);
  });
});

describe.each(platforms)('header versioning, no prefix, on $name', (platform) => {
  const ctx = useTracedApp(platform, [TracingTestingModule.forRoot(), HttpTestModule], (a) =>
    a.enableVersioning({
      type: VersioningType.HEADER,
      header: 'x-api-version',
      defaultVersion: '1',
    }),
  );

  it('names a request of a version no route serves by its method only, not by the route it passed', async () => {
    const res = await fetch(`${ctx.url}/orders/9`, { headers: { 'x-api-version': '9' } });
    expect(res.status).toBe(404);
    const server = await ctx.spans.waitForOne(/^GET/);
    expect(server.name).toBe('GET');
    expect(server.attributes['http.route']).toBeUndefined();
    expect(server.attributes['http.response.status_code']).toBe(404);

    ctx.spans.reset();
    expect((await fetch(`${ctx.url}/orders/9`, { headers: { 'x-api-version': '1' } })).status).toBe(
      200,
    );
    expect((await ctx.spans.waitForOne(/^GET/)).name).toBe('GET /orders/:id');
  });
});

const isServer = (span: ReadableSpan): boolean => span.kind === SpanKind.SERVER;

describe('Express routers and apps mounted under a path', () => {
  type Handler = (req: unknown, res: { send(body: string): void }) => void;
  type Router = ((...args: unknown[]) => void) & { get(path: string, handler: Handler): void };
  let router: Router;
  beforeAll(() => {
    // Untyped here: the test needs only Router, from the Express Nest's adapter runs on.
    const express = createRequire(import.meta.url)('express') as { Router: () => Router };
    router = express.Router();
    router.get('/items/:id', (_req, res) => res.send('item'));
  });
  const ctx = useTracedApp(platforms[0], [TracingTestingModule.forRoot(), HttpTestModule], (a) =>
    a.use('/tenants/:tid', (...args: unknown[]) => router(...args)),
  );

  it('names the routes of a Nest app mounted into another Express app by the mount path', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [TracingTestingModule.forRoot(), HttpTestModule],
    }).compile();
    const nest = moduleRef.createNestApplication(new ExpressAdapter(), { logger: false });
    await nest.init();
    const express = createRequire(import.meta.url)('express') as (() => {
      use(path: string, app: unknown): void;
    }) & { Router: unknown };
    const outer = express();
    // A trailing slash, as some write it: the name has one slash all the same.
    outer.use('/api/', nest.getHttpAdapter().getInstance());
    const server = createServer(outer as never);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as { port: number };
      // Express matches the mount regardless of case: the name is the template's all the same.
      for (const base of ['/api', '/API']) {
        expect((await fetch(`http://127.0.0.1:${port}${base}/orders/7`)).status).toBe(200);
      }
      const spans = nest.get(TestSpans);
      const servers = (await spans.waitFor((all) => all.filter(isServer).length === 2)).filter(
        isServer,
      );
      for (const span of servers) {
        expect(span.name).toBe('GET /api/orders/:id');
        expect(span.attributes['http.route']).toBe('/api/orders/:id');
      }
    } finally {
      await new Promise((resolve) => server.close(resolve));
      await nest.close();
    }
  });

  it('gives no route with the URL text the mount matched: one name for every tenant', async () => {
    for (const tenant of ['acme', 'globex']) {
      expect(await (await fetch(`${ctx.url}/tenants/${tenant}/items/1`)).text()).toBe('item');
    }
    const servers = await ctx.spans.waitFor((all) => all.length === 2);
    expect(servers.map((s) => s.name)).toEqual(['GET', 'GET']);
    for (const server of servers) {
      expect(server.attributes['http.route']).toBeUndefined();
      expect(server.attributes['http.response.status_code']).toBe(200);
    }
  });
});

describe.each(platforms)('CORS preflights on $name', (platform) => {
  const ctx = useTracedApp(platform, [TracingTestingModule.forRoot(), HttpTestModule], (a) =>
    a.enableCors(),
  );

  it('names a preflight by its method: the CORS catch-all is no route of the app', async () => {
    const res = await fetch(`${ctx.url}/hello`, {
      method: 'OPTIONS',
      headers: { origin: 'http://example.test', 'access-control-request-method': 'GET' },
    });
    expect(res.status).toBeLessThan(300);
    const preflight = await ctx.spans.waitForOne(/^OPTIONS/);
    expect(preflight.name).toBe('OPTIONS');
    expect(preflight.attributes['http.route']).toBeUndefined();
  });
});

describe.each(platforms)('a global prefix with an excluded route on $name', (platform) => {
  const ctx = useTracedApp(platform, [TracingTestingModule.forRoot(), HttpTestModule], (a) =>
    a.setGlobalPrefix('api', { exclude: ['hello'] }),
  );

  it('names the excluded route by its template, and a method it lacks by the method only', async () => {
    expect((await fetch(`${ctx.url}/hello`)).status).toBe(200);
    const served = await ctx.spans.waitForOne('GET /hello');
    expect(served.attributes['http.route']).toBe('/hello');
    ctx.spans.reset();
    // Only GET /hello exists: Nest answers a POST there from its not-found handler.
    expect((await fetch(`${ctx.url}/hello`, { method: 'POST' })).status).toBe(404);
    const missed = await ctx.spans.waitForOne(/^POST/);
    expect(missed.name).toBe('POST');
    expect(missed.attributes['http.route']).toBeUndefined();
    expect(missed.attributes['http.response.status_code']).toBe(404);
  });
});

describe.each(platforms)('edge cases on $name', (platform) => {
  const ctx = useTracedApp(platform, [
    TracingTestingModule.forRoot({
      http: {
        traceResponse: false,
        responseHeaders: ['content-type'],
        ignore: [
          '/internal/**',
          (req) => {
            if (req.url === '/explode') throw new Error('a buggy ignore rule');
            return false;
          },
        ],
      },
    }),
    HttpTestModule,
  ]);
  let url: string;
  let spans: TestSpans;
  beforeEach(() => ({ url, spans } = ctx));

  it('records response headers, and adds no trace headers, with traceResponse off', async () => {
    const res = await fetch(`${url}/orders/5`);
    expect(res.headers.get('traceresponse')).toBeNull();
    expect(res.headers.get('server-timing')).toBeNull();
    const server = await spans.waitForOne('GET /orders/:id');
    expect(server.attributes['http.response.header.content-type']).toEqual([
      expect.stringContaining('application/json'),
    ]);
  });

  it('serves the request untraced when an ignore predicate throws', async () => {
    const res = await fetch(`${url}/explode`);
    expect(res.status).toBe(404);
    await fetch(`${url}/hello`);
    await spans.waitForOne('GET /hello');
    expect(spans.byKind(SpanKind.SERVER).map((s) => s.name)).toEqual(['GET /hello']);
  });

  it('lets `/internal/**` cover `/internal` itself', async () => {
    await fetch(`${url}/internal`);
    await fetch(`${url}/hello`);
    await spans.waitForOne('GET /hello');
    expect(spans.byKind(SpanKind.SERVER).map((s) => s.name)).toEqual(['GET /hello']);
  });

  it('traces a malformed JSON body as a 400 that is not an error', async () => {
    const res = await fetch(`${url}/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', traceparent: TRACEPARENT },
      body: '{"sku":',
    });
    expect(res.status).toBe(400);
    // Express parses the body before routing: the route is still the one the request was for.
    const server = await spans.waitForOne('POST /orders');
    expect(server.spanContext().traceId).toBe(TRACE_ID);
    expect(server.attributes['http.route']).toBe('/orders');
    expect(server.attributes['http.response.status_code']).toBe(400);
    expect(server.status.code).toBe(SpanStatusCode.UNSET);
  });

  if (platform.name === 'express') {
    it('names a request a middleware answered itself (a static file) by its method only', async () => {
      const { app, url: base } = await startApp(
        platform,
        [TracingTestingModule.forRoot(), HttpTestModule],
        (a) => {
          a.use((req: { url?: string }, res: ServerResponse, next: () => void) => {
            if (req.url !== '/orders/app.js') return next();
            res.setHeader('content-type', 'text/javascript');
            res.end('// static');
          });
        },
      );
      try {
        const spans = app.get(TestSpans);
        expect((await fetch(`${base}/orders/app.js`)).status).toBe(200);
        const server = await spans.waitForOne('GET');
        expect(server.attributes['http.route']).toBeUndefined();
        expect(server.attributes['http.response.status_code']).toBe(200);
      } finally {
        await app.close();
      }
    });
  }

  it('names a request a middleware turned away by the route it was for', async () => {
    const res = await fetch(`${url}/orders/7?x=1`, {
      headers: { traceparent: TRACEPARENT, 'x-deny': '1' },
    });
    expect(res.status).toBe(403);
    const server = await spans.waitForOne('GET /orders/:id');
    expect(server.spanContext().traceId).toBe(TRACE_ID);
    expect(server.kind).toBe(SpanKind.SERVER);
    expect(server.attributes['http.route']).toBe('/orders/:id');
    expect(server.attributes['http.response.status_code']).toBe(403);
    expect(server.status.code).toBe(SpanStatusCode.UNSET);
    // The middleware's own span is the request's child; the handler never ran.
    const middleware = spans.one('middleware.run');
    expectChildOf(middleware, server);
    expect(spans.byName('OrdersService.find')).toHaveLength(0);
  });

  if (platform.name === 'fastify') {
    it('does not mark a request served by inject() as aborted', () => {
      const script = fileURLToPath(new URL('./fixtures/fastify-inject.mjs', import.meta.url));
      const out = execFileSync(process.execPath, [script], { encoding: 'utf8', timeout: 30_000 });
      const result = JSON.parse(out.trim().split('\n').pop() as string) as {
        statusCode: number;
        status: number;
        attributes: Record<string, unknown>;
      };
      expect(result.statusCode).toBe(200);
      expect(result.status).toBe(SpanStatusCode.UNSET);
      expect(result.attributes['error.type']).toBeUndefined();
      expect(result.attributes['http.response.status_code']).toBe(200);
    });
  }
});

describe('two apps in one process', () => {
  it('both trace while both run, and the second keeps tracing after the first closes', async () => {
    const a = await startApp(platforms[0], [
      TracingTestingModule.forRoot({ serviceName: 'a' }),
      HttpTestModule,
    ]);
    const b = await startApp(platforms[1], [
      TracingTestingModule.forRoot({ serviceName: 'b' }),
      HttpTestModule,
    ]);
    try {
      const spansA = a.app.get(TestSpans);
      const spansB = b.app.get(TestSpans);
      await fetch(`${a.url}/orders/1`, { headers: { traceparent: TRACEPARENT } });
      await fetch(`${b.url}/orders/2`);
      // Each testing module's exporter sees every span of the process.
      for (const spans of [spansA, spansB]) {
        await spans.waitFor((all) => all.filter((s) => s.name === 'GET /orders/:id').length === 2);
      }
      await a.app.close();

      spansB.reset();
      const res = await fetch(`${b.url}/orders/3`, { headers: { traceparent: TRACEPARENT } });
      expect(res.headers.get('traceresponse')).toMatch(new RegExp(`^00-${TRACE_ID}-`));
      const server = await spansB.waitForOne('GET /orders/:id');
      expect(server.spanContext().traceId).toBe(TRACE_ID);
      expectChildOf(spansB.one('OrdersService.find'), server);
    } finally {
      await a.app.close();
      await b.app.close();
    }
  });
});

describe.each(platforms)('switched off on $name', (platform) => {
  it('http.enabled: false traces no request, while @Trace still works', async () => {
    const { app, url } = await startApp(platform, [
      TracingTestingModule.forRoot({ http: { enabled: false } }),
      HttpTestModule,
    ]);
    try {
      const spans = app.get(TestSpans);
      const res = await fetch(`${url}/orders/1`, { headers: { traceparent: TRACEPARENT } });
      expect(res.status).toBe(200);
      expect(res.headers.get('traceresponse')).toBeNull();
      const find = await spans.waitForOne('OrdersService.find');
      expectRoot(find);
      expect(spans.byKind(SpanKind.SERVER)).toHaveLength(0);
    } finally {
      await app.close();
    }
  });

  it('enabled: false serves requests untouched and registers nothing', async () => {
    const { app, url } = await startApp(platform, [
      TracingModule.forRoot({ enabled: false }),
      HttpTestModule,
    ]);
    try {
      const res = await fetch(`${url}/trace-id`, { headers: { traceparent: TRACEPARENT } });
      expect(await res.json()).toEqual({});
      expect(res.headers.get('traceresponse')).toBeNull();
      expect(trace.getTracer('probe').startSpan('probe').isRecording()).toBe(false);
    } finally {
      await app.close();
    }
  });
});

describe.each(platforms)('the ignore rules on $name', (platform) => {
  it('are asked once per request, and an ignored request makes no span', async () => {
    const asked: string[] = [];
    const { app, url } = await startApp(platform, [
      TracingTestingModule.forRoot({
        http: {
          ignore: [
            (req) => {
              asked.push(req.url ?? '');
              return req.url === '/health';
            },
          ],
        },
      }),
      HttpTestModule,
    ]);
    try {
      const spans = app.get(TestSpans);
      expect((await fetch(`${url}/health`)).status).toBe(200);
      expect((await fetch(`${url}/hello`)).status).toBe(200);
      const server = await spans.waitForOne('GET /hello');
      expect(server.kind).toBe(SpanKind.SERVER);
      expect(server.attributes['url.path']).toBe('/hello');
      expect(spans.byKind(SpanKind.SERVER)).toHaveLength(1);
      expect(asked).toEqual(['/health', '/hello']);
    } finally {
      await app.close();
    }
  });
});

describe('an Express app served by a server of its own', () => {
  it('is traced through the request hook: the span, its route, its parent', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [TracingTestingModule.forRoot({ serviceName: 'own-server' }), HttpTestModule],
    }).compile();
    const app = moduleRef.createNestApplication(new ExpressAdapter(), { logger: false });
    await app.init();
    // The app's Express instance handed to a server Nest never saw.
    const server = createServer(app.getHttpAdapter().getInstance());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const spans = app.get(TestSpans);
      const { port } = server.address() as { port: number };
      const res = await fetch(`http://127.0.0.1:${port}/orders/7`, {
        headers: { traceparent: TRACEPARENT },
      });
      expect(res.status).toBe(200);
      const span = await spans.waitForOne('GET /orders/:id');
      expect(span.kind).toBe(SpanKind.SERVER);
      expect(span.spanContext().traceId).toBe(TRACE_ID);
      expectParentId(span, PARENT_ID);
      expect(span.attributes['http.route']).toBe('/orders/:id');
      expect(span.attributes['http.response.status_code']).toBe(200);
      expect(res.headers.get('traceresponse')).toBe(
        `00-${TRACE_ID}-${span.spanContext().spanId}-01`,
      );
      expectChildOf(spans.one('OrdersService.find'), span);
      expect(spans.byKind(SpanKind.SERVER)).toHaveLength(1);
    } finally {
      await new Promise((resolve) => server.close(resolve));
      await app.close();
    }
  });
});

describe.each(platforms)("the app's own request hook on $name", (platform) => {
  it('keeps running, inside the SERVER span', async () => {
    const seen: Array<string | undefined> = [];
    const { app, url } = await startApp(
      platform,
      [TracingTestingModule.forRoot(), HttpTestModule],
      (a) => {
        const adapter = a.getHttpAdapter() as unknown as {
          setOnRequestHook(hook: (req: unknown, res: unknown, done: () => void) => void): void;
        };
        adapter.setOnRequestHook((_req, _res, done) => {
          seen.push(trace.getActiveSpan()?.spanContext().spanId);
          done();
        });
      },
    );
    try {
      const spans = app.get(TestSpans);
      const res = await fetch(`${url}/hello`);
      expect(res.status).toBe(200);
      const server = await spans.waitForOne('GET /hello');
      expect(seen).toEqual([server.spanContext().spanId]);
    } finally {
      await app.close();
    }
  });
});

describe('testing an app module that already imports TracingModule.forRoot()', () => {
  it('overrides the options with TRACING_MODULE_OPTIONS and reads spans with TestSpans.from()', async () => {
    @Module({
      imports: [
        TracingModule.forRoot({ serviceName: 'real-app', exporter: 'otlp' }),
        HttpTestModule,
      ],
    })
    class RealAppModule {}

    const { app, url } = await startApp(platforms[0], [RealAppModule], undefined, (builder) =>
      builder
        .overrideProvider(TRACING_MODULE_OPTIONS)
        .useValue({ serviceName: 'real-app', exporter: 'memory', spanProcessor: 'simple' }),
    );
    try {
      const spans = TestSpans.from(app);
      await fetch(`${url}/orders/4`, { headers: { traceparent: TRACEPARENT } });
      const server = await spans.waitForOne('GET /orders/:id');
      expect(server.spanContext().traceId).toBe(TRACE_ID);
      expect(server.resource.attributes['service.name']).toBe('real-app');
      expectChildOf(spans.one('OrdersService.find'), server);
    } finally {
      await app.close();
    }
  });
});

describe.each(platforms)('a step of the app that loses the async context, on $name', (platform) => {
  // A body parser or hook that resumes from an event emitted elsewhere runs its callback outside
  // the request's context; context.with(ROOT_CONTEXT) is that, made explicit: an app.use
  // middleware on Express, a preValidation hook on Fastify.
  const loseContext = (a: INestApplication): void => {
    if (platform.name === 'express') {
      a.use((_req: unknown, _res: unknown, next: () => void) => context.with(ROOT_CONTEXT, next));
      return;
    }
    const fastify = a.getHttpAdapter().getInstance() as {
      addHook(name: string, hook: (req: unknown, reply: unknown, done: () => void) => void): void;
    };
    fastify.addHook('preValidation', (_req, _reply, done) => context.with(ROOT_CONTEXT, done));
  };

  it('does not take the rest of the request out of the SERVER span', async () => {
    const { app, url } = await startApp(
      platform,
      [TracingTestingModule.forRoot(), HttpTestModule],
      loseContext,
    );
    try {
      const spans = app.get(TestSpans);
      await fetch(`${url}/orders/8`, { headers: { traceparent: TRACEPARENT } });
      const server = await spans.waitForOne('GET /orders/:id');
      expectChildOf(spans.one('OrdersService.find'), server);
      expect(server.spanContext().traceId).toBe(TRACE_ID);
    } finally {
      await app.close();
    }
  });

  it('does not take a route without Nest middleware out of the SERVER span', async () => {
    const { app, url } = await startApp(
      platform,
      [TracingTestingModule.forRoot(), PlainModule],
      loseContext,
    );
    try {
      const spans = app.get(TestSpans);
      expect((await fetch(`${url}/plain`, { headers: { traceparent: TRACEPARENT } })).status).toBe(
        200,
      );
      const server = await spans.waitForOne('GET /plain');
      expect(server.spanContext().traceId).toBe(TRACE_ID);
      expectChildOf(spans.one('plain.handler'), server);
    } finally {
      await app.close();
    }
  });

  it('does not take the handler out of the SERVER span after a Nest middleware that lost it', async () => {
    const { app, url } = await startApp(platform, [
      TracingTestingModule.forRoot(),
      ContextLosingModule,
      HttpTestModule,
      PlainModule,
    ]);
    try {
      const spans = app.get(TestSpans);
      await fetch(`${url}/orders/9`, { headers: { traceparent: TRACEPARENT } });
      const server = await spans.waitForOne('GET /orders/:id');
      expect(server.spanContext().traceId).toBe(TRACE_ID);
      // The app's next middleware and the handler's service run in the span.
      expectChildOf(spans.one('middleware.run'), server);
      expectChildOf(spans.one('OrdersService.find'), server);
      // And a handler right after it (no other middleware to re-enter the span).
      await fetch(`${url}/plain`, { headers: { traceparent: TRACEPARENT } });
      expectChildOf(spans.one('plain.handler'), await spans.waitForOne('GET /plain'));
    } finally {
      await app.close();
    }
  });
});

describe.each(platforms)('a Nest middleware mounted for one method, on $name', (platform) => {
  let app: INestApplication;
  let url: string;
  let spans: TestSpans;
  beforeAll(async () => {
    ({ app, url } = await startApp(platform, [TracingTestingModule.forRoot(), TenantModule]));
    spans = app.get(TestSpans);
  });
  afterAll(() => app.close());
  beforeEach(() => spans.reset());

  it.each([
    ['turns away', 'x-reject', 401],
    ['answers as not found', 'x-missing', 404],
  ])('names a request it %s by the route, not by its own mount', async (_what, header, status) => {
    const res = await fetch(`${url}/tenants/7`, {
      headers: { traceparent: TRACEPARENT, [header]: '1' },
    });
    expect(res.status).toBe(status);
    const server = await spans.waitForOne('GET /tenants/:id');
    expect(server.attributes['http.route']).toBe('/tenants/:id');
    expect(server.attributes['http.response.status_code']).toBe(status);
  });

  it('keeps the baggage it runs the rest of the request with', async () => {
    const res = await fetch(`${url}/tenants/7`, {
      headers: { traceparent: TRACEPARENT, 'x-tenant': 'acme' },
    });
    expect(await res.json()).toEqual({ tenant: 'acme' });
    const server = await spans.waitForOne('GET /tenants/:id');
    expect(server.spanContext().traceId).toBe(TRACE_ID);
  });
});

describe.each(platforms)('under another HTTP instrumentation on $name', (platform) => {
  it("makes the request's span a child of the SERVER span the other one started", async () => {
    const { app, url } = await startApp(platform, [TracingTestingModule.forRoot(), HttpTestModule]);
    try {
      // What @opentelemetry/instrumentation-http does: wrap the server's 'request' listeners
      // and run them inside a SERVER span of its own.
      const server = app.getHttpServer() as Server;
      const listeners = server.listeners('request') as Array<(...args: unknown[]) => void>;
      server.removeAllListeners('request');
      const other = trace.getTracer('other-instrumentation');
      server.on('request', (...args: unknown[]) => {
        const span = other.startSpan('GET', { kind: SpanKind.SERVER });
        (args[1] as ServerResponse).on('close', () => span.end());
        context.with(trace.setSpan(ROOT_CONTEXT, span), () => {
          for (const listener of listeners) listener.apply(server, args);
        });
      });
      const spans = app.get(TestSpans);
      await fetch(`${url}/orders/3`, { headers: { traceparent: TRACEPARENT } });
      const ours = await spans.waitForOne('GET /orders/:id');
      await spans.waitFor((all) =>
        all.some((s) => s.instrumentationScope.name === 'other-instrumentation'),
      );
      const theirs = spans
        .all()
        .find((s) => s.instrumentationScope.name === 'other-instrumentation');
      expectChildOf(ours, theirs as ReadableSpan);
      expectChildOf(spans.one('OrdersService.find'), ours);
    } finally {
      await app.close();
    }
  });
});

describe('HTTP/2 (Fastify, cleartext)', () => {
  // HTTP/2 responses do not inherit Node's http.ServerResponse: the trace headers are added
  // through a hook of the response's own.
  it('traces the request and answers with traceresponse and Server-Timing', async () => {
    const h2 = { name: 'fastify-http2', adapter: () => new FastifyAdapter({ http2: true }) };
    const { app, url } = await startApp(h2 as unknown as Platform, [
      TracingTestingModule.forRoot({ serviceName: 'http2-e2e' }),
      HttpTestModule,
    ]);
    const session = http2.connect(url);
    try {
      const spans = app.get(TestSpans);
      const { headers, body } = await new Promise<{
        headers: http2.IncomingHttpHeaders;
        body: string;
      }>((resolve, reject) => {
        const stream = session.request({ ':path': '/orders/7', traceparent: TRACEPARENT });
        let headers: http2.IncomingHttpHeaders = {};
        let body = '';
        stream.on('response', (h) => (headers = h));
        stream.setEncoding('utf8');
        stream.on('data', (chunk: string) => (body += chunk));
        stream.on('end', () => resolve({ headers, body }));
        stream.on('error', reject);
        stream.end();
      });
      expect(headers[':status']).toBe(200);
      expect(JSON.parse(body)).toEqual({ id: '7' });
      const server = await spans.waitForOne('GET /orders/:id');
      expect(server.kind).toBe(SpanKind.SERVER);
      expectParentId(server, PARENT_ID);
      expect(server.attributes['network.protocol.version']).toBe('2');
      const expected = `00-${TRACE_ID}-${server.spanContext().spanId}-01`;
      expect(headers.traceresponse).toBe(expected);
      expect(headers['server-timing']).toBe(`traceparent;desc="${expected}"`);
      expectChildOf(spans.one('OrdersService.find'), server);
    } finally {
      session.close();
      await app.close();
    }
  });
});
