import { SpanKind } from '@opentelemetry/api';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

interface Result {
  statuses: number[];
  more: number[];
  received: Array<{
    path: string;
    traceparent: string | null;
    tracestate: string | null;
    traceparents: number;
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
  expect(servers).toHaveLength(5);
  for (const server of servers) expect(server.parentSpanId).toBe('00f067aa0ba902b7');
}, 90_000);
