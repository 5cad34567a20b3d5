import { SpanKind } from '@opentelemetry/api';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

interface Result {
  statuses: number[];
  more: number[];
  listed: number[];
  received: Array<{
    path: string;
    traceparent: string | null;
    tracestate: string | null;
    baggage: string | null;
    traceparents: number;
    rawHeaders: string[];
  }>;
  spans: Array<{
    name: string;
    kind: SpanKind;
    scope: string;
    traceId: string;
    spanId: string;
    parentSpanId?: string;
    attributes: Record<string, unknown>;
  }>;
}

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const script = fileURLToPath(new URL('./fixtures/outbound-app.mjs', import.meta.url));

/** Runs the app in a process of its own: the http instrumentation patches Node's core module. */
function run(...args: string[]): Result {
  const out = execFileSync(process.execPath, [script, ...args], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  return JSON.parse(out.trim().split('\n').pop() as string) as Result;
}

describe.each([
  ['on its own', []],
  ["beside OpenTelemetry's own http and undici instrumentations", ['--auto']],
  ['after another app in the process closed', ['--restart']],
])('outbound HTTP, %s', (_label, args) => {
  let result: Result;
  beforeAll(() => {
    result = run(...args);
  }, 90_000);

  it.each([
    ['fetch', '/from-fetch', 'GET /fetch', '@opentelemetry/instrumentation-undici'],
    ['@nestjs/axios', '/from-axios', 'GET /axios', '@opentelemetry/instrumentation-http'],
  ])(
    'gives a %s call one CLIENT span, a child of the request, and a traceparent naming it',
    (_client, path, route, scope) => {
      expect(result.statuses).toEqual([200, 200]);
      const server = result.spans.find((s) => s.name === route && s.kind === SpanKind.SERVER);
      expect(server?.traceId).toBe(TRACE_ID);
      const clients = result.spans.filter(
        (s) => s.kind === SpanKind.CLIENT && s.parentSpanId === server?.spanId,
      );
      // Exactly one: no instrumentation traces the call a second time.
      expect(clients).toHaveLength(1);
      const [client] = clients;
      expect(client).toMatchObject({ name: 'GET', traceId: TRACE_ID, scope });
      expect(client?.attributes).toMatchObject({
        'http.request.method': 'GET',
        'server.address': '127.0.0.1',
        'http.response.status_code': 200,
      });
      const hop = result.received.find((r) => r.path === path);
      expect(hop?.traceparent).toBe(`00-${TRACE_ID}-${client?.spanId}-01`);
      expect(hop?.traceparents).toBe(1);
    },
  );
});

describe('outbound HTTP, edge cases', () => {
  let result: Result;
  beforeAll(() => {
    result = run();
  }, 90_000);

  it.each([
    ['fetch', 'GET /forwarding', '/forwarded'],
    ['http (axios)', 'GET /forwarding-axios', '/forwarded-axios'],
  ])(
    "replaces the trace headers the caller set on %s with the call's own, sent once",
    (_client, route, path) => {
      expect(result.more).toEqual([200, 200, 200]);
      const server = result.spans.find((s) => s.name === route);
      const client = result.spans.find(
        (s) => s.kind === SpanKind.CLIENT && s.parentSpanId === server?.spanId,
      );
      expect(client?.traceId).toBe(TRACE_ID);
      const hop = result.received.find((r) => r.path === path);
      expect(hop?.traceparents).toBe(1);
      expect(hop?.traceparent).toBe(`00-${TRACE_ID}-${client?.spanId}-01`);
      // The caller's tracestate belonged to the other trace; this one has none.
      expect(hop?.tracestate).toBeNull();
    },
  );

  /** The headers a request arrived with, as name/value pairs, less the ones Node adds itself. */
  const pairs = (raw: string[] | undefined): string[][] =>
    (raw ?? [])
      .flatMap((h, i, all) => (i % 2 === 0 ? [[h, all[i + 1] as string]] : []))
      .filter(([name]) => !/^(connection|traceparent)$/i.test(name as string));

  it.each([
    ['inside a span', '/raw-list', true],
    ['outside any span', '/raw-list-outside', false],
  ])(
    'sends the headers an http.request was given as a list, names and values, %s',
    (_where, path, traced) => {
      expect(result.listed).toEqual([200, 200, 200]);
      const hop = result.received.find((r) => r.path === path);
      const names = pairs(hop?.rawHeaders).map(([name]) => name?.toLowerCase());
      expect(names).toEqual(['host', 'authorization', 'x-tag', 'x-tag']);
      expect(pairs(hop?.rawHeaders).slice(1)).toEqual([
        ['Authorization', 'Bearer abc'],
        ['X-Tag', 'a'],
        ['X-Tag', 'b'],
      ]);
      if (!traced) {
        expect(hop?.traceparent).toBeNull();
        return;
      }
      const server = result.spans.find((s) => s.name === 'GET /raw-headers');
      const client = result.spans.find(
        (s) => s.kind === SpanKind.CLIENT && s.parentSpanId === server?.spanId,
      );
      expect(hop?.traceparent).toBe(`00-${TRACE_ID}-${client?.spanId}-01`);
    },
  );

  it.each([
    ['fetch', '/secret-fetch', '@opentelemetry/instrumentation-undici'],
    ['http (axios)', '/secret-axios', '@opentelemetry/instrumentation-http'],
  ])(
    "redacts credentials in a %s call's query, as for inbound requests",
    (_client, path, scope) => {
      const server = result.spans.find((s) => s.name === 'GET /secret-query');
      const client = result.spans.find(
        (s) => s.kind === SpanKind.CLIENT && s.parentSpanId === server?.spanId && s.scope === scope,
      );
      const full = client?.attributes['url.full'];
      expect(full).toBe(
        `http://127.0.0.1:${new URL(String(full)).port}${path}?sig=REDACTED&Token=REDACTED&page=3`,
      );
      if (scope.endsWith('undici')) {
        expect(client?.attributes['url.query']).toBe('sig=REDACTED&Token=REDACTED&page=3');
      }
      // What went out is the URL as the app wrote it.
      expect(result.received.find((r) => r.path?.startsWith(path))?.path).toBe(
        `${path}?sig=S1&Token=S2&page=3`,
      );
    },
  );

  it.each([
    ['fetch', '/baggage-fetch'],
    ['http (axios)', '/baggage-axios'],
  ])('sends on %s the baggage a header can carry, and leaves out the rest', (_client, path) => {
    // A line break or a character beyond ASCII in properties went out as it was, and the
    // header was refused: fetch threw where the process could not catch it.
    expect(result.listed).toEqual([200, 200, 200]);
    expect(result.received.find((r) => r.path === path)?.baggage).toBe(
      'tenant=acme;origin=api,note=n,line=l',
    );
  });

  it('gives a call answered with a 5xx the status code as error.type', () => {
    const server = result.spans.find((s) => s.name === 'GET /failing');
    const client = result.spans.find(
      (s) => s.kind === SpanKind.CLIENT && s.parentSpanId === server?.spanId,
    );
    expect(client?.attributes).toMatchObject({
      'http.response.status_code': 500,
      'error.type': '500',
    });
  });
});

it('leaves an outbound request made outside any span untraced, without a header', async () => {
  // The fixture's own calls into the app are made outside any span, in the app's process.
  const result = run();
  expect(
    result.spans.filter((s) => s.kind === SpanKind.CLIENT && s.parentSpanId === undefined),
  ).toEqual([]);
  const servers = result.spans.filter((s) => s.kind === SpanKind.SERVER);
  expect(servers).toHaveLength(8);
  for (const server of servers) expect(server.parentSpanId).toBe('00f067aa0ba902b7');
}, 90_000);
