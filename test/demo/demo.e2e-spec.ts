import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import { OtlpSink } from '../support/otlp-sink.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const output = join(root, 'test-output', 'demo');

interface ApiSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: string;
  service: string;
  attributes: Record<string, unknown>;
  events: Array<{ name: string; attributes: Record<string, unknown> }>;
  status: { code: string; message: string };
}
interface ServiceMap {
  nodes: Array<{ service: string; spans: number; errors: number }>;
  edges: Array<{ from: string; to: string; transport: string; calls: number; errors: number }>;
}

/**
 * The whole demo as a user starts it (`npm run demo`), on free ports, with the brokers of this
 * machine: six services in six processes exporting OTLP to the demo's viewer. The test sends
 * its own orders and reads the traces back from the viewer's API, then from its page in a real
 * headless Chromium.
 */
describe('the sample shop demo (npm run demo)', () => {
  let demo: ChildProcess;
  let gateway: string;
  let viewer: string;
  const log: string[] = [];

  beforeAll(async () => {
    // The e2e run builds the package first; the sample compiles against that dist/.
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    execFileSync(process.execPath, [tsc, '-p', 'sample-app/tsconfig.json'], { cwd: root });
    demo = spawn(
      process.execPath,
      ['sample-app/demo.mjs', '--no-build', '--free-ports', '--no-orders'],
      { cwd: root, env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const ready = new Promise<[string, string]>((resolve, reject) => {
      for (const stream of [demo.stdout!, demo.stderr!]) {
        createInterface({ input: stream }).on('line', (line) => {
          log.push(line);
          const match = /the shop runs: gateway on (\S+), viewer on (\S+)/.exec(line);
          if (match) resolve([match[1]!, match[2]!]);
        });
      }
      demo.once('exit', (code) =>
        reject(new Error(`the demo exited (${code}):\n${log.join('\n')}`)),
      );
    });
    [gateway, viewer] = await ready;
  }, 120_000);

  afterAll(async () => {
    if (demo.exitCode === null) {
      const exited = once(demo, 'exit');
      demo.kill('SIGINT');
      await exited;
    }
  }, 30_000);

  const order = async (query: string, body: unknown) => {
    const res = await fetch(`${gateway}/orders${query}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    const traceId = res.headers.get('traceresponse')?.split('-')[1];
    if (traceId === undefined) throw new Error('no traceresponse header');
    return { status: res.status, body: (await res.json()) as Record<string, unknown>, traceId };
  };

  /** The trace's spans once the services expected in it have all exported theirs. */
  const traceOf = async (
    traceId: string,
    services: string[],
    count: number,
  ): Promise<ApiSpan[]> => {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const res = await fetch(`${viewer}/api/traces/${traceId}`);
      if (res.ok) {
        const { spans } = (await res.json()) as { spans: ApiSpan[] };
        const seen = new Set(spans.map((s) => s.service));
        if (services.every((s) => seen.has(s)) && spans.length >= count) return spans;
        if (Date.now() > deadline) {
          throw new Error(
            `trace ${traceId} incomplete: ${spans.map((s) => `${s.service}:${s.name}`).join(', ')}`,
          );
        }
      } else if (Date.now() > deadline) {
        throw new Error(`trace ${traceId} never reached the viewer (${res.status})`);
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  };

  /** The one span with this name (and service); its parent must be `parent` when given. */
  const find = (spans: ApiSpan[], service: string, name: string, kind?: string): ApiSpan => {
    const found = spans.filter(
      (s) => s.service === service && s.name === name && (kind === undefined || s.kind === kind),
    );
    if (found.length !== 1) {
      throw new Error(
        `${found.length} spans ${service}:${name}; spans: ${spans.map((s) => `${s.service}:${s.name}`).join(', ')}`,
      );
    }
    return found[0]!;
  };
  const expectParent = (child: ApiSpan, parent: ApiSpan) => {
    expect(`${child.service}:${child.name} ← ${child.parentSpanId}`).toBe(
      `${child.service}:${child.name} ← ${parent.spanId}`,
    );
  };

  let okTrace: string;
  let failedTrace: string;

  it('makes one order one trace across all six services and every transport', async () => {
    const placed = await order('', { sku: 'book', qty: 2 });
    expect(placed.status).toBe(201);
    okTrace = placed.traceId;
    const services = ['gateway', 'orders', 'payments', 'inventory', 'notifications', 'audit'];
    const spans = await traceOf(okTrace, services, 22);
    expect(new Set(spans.map((s) => s.traceId))).toEqual(new Set([okTrace]));

    const http = find(spans, 'gateway', 'POST /orders', 'server');
    expect(http.parentSpanId).toBe('');
    const place = find(spans, 'gateway', 'OrdersGateway.place');
    expectParent(place, http);
    // gateway → orders over gRPC
    const grpcClient = find(spans, 'gateway', 'shop.orders.Orders/Create', 'client');
    const grpcServer = find(spans, 'orders', 'shop.orders.Orders/Create', 'server');
    expectParent(grpcClient, place);
    expectParent(grpcServer, grpcClient);
    expect(grpcServer.attributes).toMatchObject({
      'rpc.system.name': 'grpc',
      'rpc.status_code': 'OK',
    });
    const create = find(spans, 'orders', 'OrderBook.create');
    expectParent(create, grpcServer);
    // orders → payments over TCP
    const charge = find(spans, 'orders', 'OrderBook.charge');
    const tcpClient = find(spans, 'orders', 'send payments.charge', 'client');
    const tcpServer = find(spans, 'payments', 'process payments.charge', 'server');
    expectParent(charge, create);
    expectParent(tcpClient, charge);
    expectParent(tcpServer, tcpClient);
    expectParent(find(spans, 'payments', 'CardProcessor.authorize'), tcpServer);
    // orders → inventory over RabbitMQ, orders → notifications over NATS
    const announce = find(spans, 'orders', 'OrderBook.announce');
    const producers = spans.filter(
      (s) => s.service === 'orders' && s.name === 'send order.created',
    );
    expect(producers.map((p) => p.attributes['messaging.system']).sort()).toEqual([
      'nats',
      'rabbitmq',
    ]);
    producers.forEach((p) => expectParent(p, announce));
    const byProducer = (system: string) =>
      producers.find((p) => p.attributes['messaging.system'] === system)!;
    const stock = find(spans, 'inventory', 'process order.created', 'consumer');
    expectParent(stock, byProducer('rabbitmq'));
    expectParent(find(spans, 'inventory', 'Stock.reserve'), stock);
    const mail = find(spans, 'notifications', 'process order.created', 'consumer');
    expectParent(mail, byProducer('nats'));
    // notifications → audit over MQTT 5
    const record = find(spans, 'notifications', 'Mailer.record');
    expectParent(record, mail);
    const mqttProducer = find(spans, 'notifications', 'send shop/audit', 'producer');
    expectParent(mqttProducer, record);
    const audit = find(spans, 'audit', 'process shop/audit', 'consumer');
    expectParent(audit, mqttProducer);
    expectParent(find(spans, 'audit', 'AuditLog.append'), audit);
    expect(spans.filter((s) => s.status.code === 'ERROR')).toEqual([]);
  }, 60_000);

  it('shows a failing payment as an error on the path up to the gateway', async () => {
    const placed = await order('?fail=1', { sku: 'lamp', qty: 1 });
    expect(placed.status).toBe(502);
    failedTrace = placed.traceId;
    const spans = await traceOf(failedTrace, ['gateway', 'orders', 'payments'], 10);
    const path = [
      find(spans, 'payments', 'CardProcessor.authorize'),
      find(spans, 'payments', 'process payments.charge', 'server'),
      find(spans, 'orders', 'send payments.charge', 'client'),
      find(spans, 'orders', 'OrderBook.charge'),
      find(spans, 'orders', 'OrderBook.create'),
      find(spans, 'orders', 'shop.orders.Orders/Create', 'server'),
      find(spans, 'gateway', 'shop.orders.Orders/Create', 'client'),
      find(spans, 'gateway', 'OrdersGateway.place'),
      find(spans, 'gateway', 'POST /orders', 'server'),
    ];
    for (let i = 0; i + 1 < path.length; i++) expectParent(path[i]!, path[i + 1]!);
    // Every span is an error but the orders server's: it answered ABORTED, which OpenTelemetry's
    // gRPC conventions count as the caller's error on the server side (as an HTTP 4xx), and as
    // an error on the client's span.
    const ordersServer = path[5]!;
    for (const span of path)
      expect(`${span.service}:${span.name} ${span.status.code}`).toBe(
        `${span.service}:${span.name} ${span === ordersServer ? 'UNSET' : 'ERROR'}`,
      );
    expect(path[0]!.status.message).toMatch(/Card declined/);
    expect(ordersServer.attributes['rpc.status_code']).toBe('ABORTED');
    expect(path[6]!.attributes['rpc.status_code']).toBe('ABORTED');
    expect(path[8]!.attributes['http.response.status_code']).toBe(502);
    // Nothing was announced for an order that was not paid.
    expect(spans.some((s) => s.service === 'inventory' || s.name === 'send order.created')).toBe(
      false,
    );
  }, 60_000);

  it('keeps invalid input at the gateway: a 400 that is not an error, and no other service', async () => {
    const placed = await order('', { sku: 'book', qty: 0 });
    expect(placed.status).toBe(400);
    const spans = await traceOf(placed.traceId, ['gateway'], 1);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const again = (await (await fetch(`${viewer}/api/traces/${placed.traceId}`)).json()) as {
      spans: ApiSpan[];
    };
    expect(again.spans.map((s) => `${s.service}:${s.name}`)).toEqual(['gateway:POST /orders']);
    expect(spans[0]!.status.code).not.toBe('ERROR');
  });

  it('draws the service map: who calls whom, over what, how often, with the errors', async () => {
    const map = (await (await fetch(`${viewer}/api/service-map`)).json()) as ServiceMap;
    const edge = (from: string, to: string) =>
      map.edges.find((e) => e.from === from && e.to === to);
    expect(edge('gateway', 'orders')).toMatchObject({ transport: 'grpc' });
    expect(edge('orders', 'payments')).toMatchObject({ transport: 'tcp' });
    expect(edge('orders', 'inventory')).toMatchObject({ transport: 'rabbitmq' });
    expect(edge('orders', 'notifications')).toMatchObject({ transport: 'nats' });
    expect(edge('notifications', 'audit')).toMatchObject({ transport: 'mqtt' });
    expect(edge('gateway', 'orders')!.calls).toBeGreaterThanOrEqual(2);
    expect(edge('gateway', 'orders')!.errors).toBeGreaterThanOrEqual(1);
    expect(edge('orders', 'payments')!.errors).toBeGreaterThanOrEqual(1);
    expect(edge('orders', 'inventory')!.errors).toBe(0);
  });

  describe('the viewer page, in headless Chromium', () => {
    let browser: Browser;
    beforeAll(async () => {
      mkdirSync(output, { recursive: true });
      browser = await chromium.launch({
        executablePath: '/usr/bin/chromium',
        args: [
          '--headless',
          '--no-sandbox',
          '--disable-gpu',
          '--disable-quic',
          '--no-first-run',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
        ],
      });
    }, 60_000);
    afterAll(() => browser?.close());

    it("lists the traces, opens one as a waterfall, and shows a span's details", async () => {
      const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
      await page.goto(viewer);
      const row = page.locator(`[data-testid="trace-row"][data-trace-id="${okTrace}"]`);
      await row.waitFor({ timeout: 10_000 });
      expect(
        await page.locator(`[data-testid="trace-row"][data-trace-id="${failedTrace}"]`).count(),
      ).toBe(1);
      await row.click();

      const rows = page.locator('[data-testid="waterfall-row"]');
      await rows.first().waitFor();
      const { spans } = (await (await fetch(`${viewer}/api/traces/${okTrace}`)).json()) as {
        spans: ApiSpan[];
      };
      expect(await rows.count()).toBe(spans.length);
      const services = await rows.evaluateAll((els) =>
        [...new Set(els.map((e) => e.getAttribute('data-service')))].sort(),
      );
      expect(services).toEqual([
        'audit',
        'gateway',
        'inventory',
        'notifications',
        'orders',
        'payments',
      ]);

      const authorize = spans.find((s) => s.name === 'CardProcessor.authorize')!;
      await page
        .locator(`[data-testid="waterfall-row"][data-span-id="${authorize.spanId}"]`)
        .click();
      const details = page.locator('[data-testid="span-details"]');
      await details.waitFor();
      const text = await details.innerText();
      expect(text).toContain('CardProcessor.authorize');
      expect(text).toContain('payment.amount');
      expect(text).toContain('25');
      await page.screenshot({ path: join(output, 'viewer-waterfall.png'), fullPage: true });

      // The failed order: its error rows are marked, and the exception is in the details.
      await page.goto(`${viewer}/#/traces/${failedTrace}`);
      const errorRows = page.locator('[data-testid="waterfall-row"][data-error="true"]');
      await errorRows.first().waitFor();
      expect(await errorRows.count()).toBe(8);
      const failed = (await (await fetch(`${viewer}/api/traces/${failedTrace}`)).json()) as {
        spans: ApiSpan[];
      };
      const declined = failed.spans.find((s) => s.name === 'CardProcessor.authorize')!;
      await page
        .locator(`[data-testid="waterfall-row"][data-span-id="${declined.spanId}"]`)
        .click();
      await details.filter({ hasText: 'Card declined for order' }).waitFor();
      await page.screenshot({ path: join(output, 'viewer-error.png'), fullPage: true });

      const edges = page.locator('[data-testid="map-edge"]');
      await edges.first().waitFor();
      const drawn = await edges.evaluateAll((els) =>
        els
          .map(
            (e) =>
              `${e.getAttribute('data-from')}→${e.getAttribute('data-to')} ${e.getAttribute('data-transport')}`,
          )
          .sort(),
      );
      expect(drawn).toEqual(
        expect.arrayContaining([
          'gateway→orders grpc',
          'notifications→audit mqtt',
          'orders→inventory rabbitmq',
          'orders→notifications nats',
          'orders→payments tcp',
        ]),
      );
      await page.close();
    }, 60_000);
  });

  it('stops everything cleanly on Ctrl-C', async () => {
    const exited = once(demo, 'exit');
    demo.kill('SIGINT');
    const [code] = (await exited) as [number | null];
    expect(code).toBe(0);
    expect(log.join('\n')).toContain('stopping the services');
  }, 30_000);
});

/** `npm run demo -- --once`, as a user would run it, with this environment; its output and exit. */
async function runOnce(
  env: Record<string, string>,
): Promise<{ code: number | null; output: string }> {
  const child = spawn(
    process.execPath,
    ['sample-app/demo.mjs', '--no-build', '--free-ports', '--once'],
    {
      cwd: root,
      env: { ...process.env, NO_COLOR: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, output };
}

describe('the demo without a broker, and with a backend of your own', () => {
  it('names a broker that is down and runs the rest of the shop', async () => {
    // Nothing listens on port 9: RabbitMQ is "down" for this run.
    const { code, output } = await runOnce({ RABBITMQ_URL: 'amqp://127.0.0.1:9' });
    expect(output).toContain(
      'RabbitMQ is not reachable at amqp://127.0.0.1:9: inventory will not run',
    );
    expect(code).toBe(0);
    const first = output
      .split('\n\n')
      .find((block) => block.includes('POST /orders {"sku":"book","qty":2}'));
    expect(first).toBeDefined();
    expect(first).toContain('process payments.charge');
    expect(first).toContain('process shop/audit');
    expect(first).not.toContain('inventory');
  }, 120_000);

  it("sends every service's spans to OTEL_EXPORTER_OTLP_ENDPOINT instead of the viewer", async () => {
    const sink = new OtlpSink();
    const endpoint = await sink.start();
    try {
      const { code, output } = await runOnce({ OTEL_EXPORTER_OTLP_ENDPOINT: endpoint });
      expect(code).toBe(0);
      expect(output).toContain(
        `spans go to ${endpoint}, as the environment says; the viewer is off`,
      );
      expect(output).toContain('http://localhost:16686/trace/');
      // Each service flushed its spans on the way out.
      expect(new Set(sink.spans.map((s) => s.serviceName))).toEqual(
        new Set(['gateway', 'orders', 'payments', 'inventory', 'notifications', 'audit']),
      );
    } finally {
      await sink.stop();
    }
  }, 120_000);
});
