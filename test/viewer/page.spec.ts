import { readFile } from 'node:fs/promises';
import { SpanKind } from '@opentelemetry/api';
import { startApp } from '../../sample-app/viewer/public/app.js';
import { startViewer, type Viewer } from '../../sample-app/viewer/viewer.mjs';
import {
  FakeDocument,
  FakeEvent,
  FakeEventTarget,
  FakeLocation,
  type FakeElement,
} from './fake-dom.js';
import { FakeService, at, buildShop, exportShop, postExport, type Shop } from './otlp-fixtures.js';

/**
 * The page's own script against a real viewer, in a stand-in DOM: what it draws from the live
 * JSON API, and the `data-testid` hooks a browser test relies on.
 */

const INDEX_HTML = new URL('../../sample-app/viewer/public/index.html', import.meta.url);

async function waitFor<T>(probe: () => T | undefined, what: string, timeoutMs = 3000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function mount(viewer: Viewer, hash = '') {
  const document = new FakeDocument();
  const window = new FakeEventTarget();
  const location = new FakeLocation(viewer.url, window);
  location.hash = hash;
  const app = startApp({
    document,
    window,
    location,
    // The page asks for paths on its own origin.
    fetch: (path: string, init?: Record<string, unknown>) =>
      fetch(`${viewer.url}${path}`, { method: init?.method as string | undefined }),
    pollMs: 30,
  });
  return { document, window, location, app };
}

const all = (document: FakeDocument, testId: string) =>
  document.querySelectorAll(`[data-testid="${testId}"]`);
const attr = (element: FakeElement, name: string) => element.getAttribute(name);

describe('trace viewer page', () => {
  let viewer: Viewer;
  let shop: Shop;
  let page: ReturnType<typeof mount>;

  beforeAll(async () => {
    viewer = await startViewer({ port: 0 });
    shop = buildShop();
    await exportShop(viewer.url, shop);
    page = mount(viewer);
    await page.app.ready;
  });
  afterAll(async () => {
    page.app.stop();
    await viewer.close();
    await shop.shutdown();
  });

  it('lists recent traces newest first: root span, services, span count, error flag', () => {
    const rows = all(page.document, 'trace-row');
    expect(rows.map((row) => attr(row, 'data-trace-id'))).toEqual([
      shop.stockTraceId,
      shop.checkoutTraceId,
    ]);
    const [stock, checkout] = rows as [FakeElement, FakeElement];
    expect(stock.textContent).toContain('GET /stock/:sku');
    for (const service of ['gateway', 'inventory', 'orders']) {
      expect(stock.textContent).toContain(service);
    }
    expect(checkout.textContent).toContain('POST /orders');
    expect(checkout.querySelectorAll('td').map((td) => td.textContent)[2]).toBe('6');
    expect(rows.map((row) => attr(row, 'data-error'))).toEqual(['true', 'true']);
    expect(page.document.getElementById('traces-empty').hidden).toBe(true);
  });

  it('opens a clicked trace as a waterfall nested by parent and coloured by service', async () => {
    const row = page.document.querySelector(
      `[data-testid="trace-row"][data-trace-id="${shop.checkoutTraceId}"]`,
    )!;
    row.click();
    expect(page.location.hash).toBe(`#/traces/${shop.checkoutTraceId}`);
    const rows = await waitFor(() => {
      const found = all(page.document, 'waterfall-row');
      return found.length === 6 ? found : undefined;
    }, 'the waterfall');
    const { ids } = shop;
    // Depth first, children by start time.
    expect(
      rows.map((r) => [attr(r, 'data-span-id'), attr(r, 'data-depth'), attr(r, 'data-service')]),
    ).toEqual([
      [ids.checkout, '0', 'gateway'],
      [ids.createCall, '1', 'gateway'],
      [ids.create, '2', 'orders'],
      [ids.insert, '3', 'orders'],
      [ids.publish, '3', 'orders'],
      [ids.charge, '4', 'billing'],
    ]);
    expect(rows.map((r) => attr(r, 'data-error'))).toEqual([
      'false',
      'false',
      'false',
      'false',
      'false',
      'true',
    ]);
    expect(rows[0]!.textContent).toContain('POST /orders');
    expect(rows[5]!.textContent).toContain('order.created process');
    // One colour per service, the same as its chips in the list, and no two services alike.
    const colourOf = new Map<string, string>();
    for (const r of rows) {
      const service = attr(r, 'data-service')!;
      const colour = r.style.values.get('--colour')!;
      expect(colour).toBe(colourOf.get(service) ?? colour);
      colourOf.set(service, colour);
    }
    expect(new Set(colourOf.values()).size).toBe(colourOf.size);
    for (const chip of row.querySelectorAll('[class="chip"]')) {
      expect(chip.style.values.get('--colour')).toBe(colourOf.get(chip.textContent));
    }
    expect(attr(row, 'aria-selected')).toBe('true');
  });

  it("shows a clicked span's attributes, events and exception", async () => {
    const rowOf = (spanId: string) =>
      page.document.querySelector(`[data-testid="waterfall-row"][data-span-id="${spanId}"]`)!;
    rowOf(shop.ids.charge).click();
    let details = page.document.querySelector('[data-testid="span-details"]')!;
    expect(attr(details, 'data-span-id')).toBe(shop.ids.charge);
    const text = details.textContent;
    for (const expected of [
      'messaging.system',
      'rabbitmq',
      'messaging.operation.type',
      'exception',
      'TypeError',
      'card declined',
      shop.declined.stack!.split('\n')[1]!.trim(),
      'ERROR',
    ]) {
      expect(text).toContain(expected);
    }

    rowOf(shop.ids.checkout).click();
    details = page.document.querySelector('[data-testid="span-details"]')!;
    const cells = details.querySelectorAll('tr').map((tr) => tr.textContent);
    expect(details.textContent).toContain('POST /orders');
    expect(cells).toEqual(
      expect.arrayContaining([`app.big${2 ** 40 + 1}`, 'app.tags["a","b"]', 'app.flagfalse']),
    );

    page.window.dispatchEvent(new FakeEvent('keydown', { key: 'Escape' }));
    expect(page.document.querySelector('[data-testid="span-details"]')).toBeNull();
  });

  it('draws the service map: an edge per caller, callee and transport, with counts', async () => {
    const map = page.document.querySelector('[data-testid="service-map"]')!;
    expect(map.tagName).toBe('svg');
    const edges = map
      .querySelectorAll('[data-testid="map-edge"]')
      .map((edge) =>
        ['data-from', 'data-to', 'data-transport', 'data-calls', 'data-errors'].map((name) =>
          attr(edge, name),
        ),
      );
    expect(edges).toEqual([
      ['gateway', 'inventory', 'nats', '1', '1'],
      ['gateway', 'orders', 'grpc', '2', '0'],
      ['orders', 'billing', 'rabbitmq', '1', '1'],
    ]);
    const api: any = await (await fetch(`${viewer.url}/api/service-map`)).json();
    expect(edges).toHaveLength(api.edges.length);
    expect(
      map.querySelectorAll('[data-testid="map-node"]').map((n) => attr(n, 'data-service')),
    ).toEqual(expect.arrayContaining(['gateway', 'orders', 'billing', 'inventory']));
  });

  it('opens the trace a link names in its hash', async () => {
    const linked = mount(viewer, `#/traces/${shop.stockTraceId}`);
    try {
      await linked.app.ready;
      const rows = all(linked.document, 'waterfall-row');
      expect(rows.map((r) => attr(r, 'data-span-id'))).toEqual([
        shop.ids.stock,
        shop.ids.checkCall,
        shop.ids.check,
        shop.ids.getCall,
        shop.ids.get,
      ]);
      expect(linked.document.getElementById('trace-title').textContent).toBe('GET /stock/:sku');
    } finally {
      linked.app.stop();
    }
  });

  it('picks up new traces as they arrive', async () => {
    const late = new FakeService('late');
    const span = late.start('late request', SpanKind.SERVER, at(5000));
    span.end(at(5001));
    await postExport(viewer.url, late.spans());
    const rows = await waitFor(() => {
      const found = all(page.document, 'trace-row');
      return found.length === 3 ? found : undefined;
    }, 'the new trace in the list');
    expect(attr(rows[0]!, 'data-trace-id')).toBe(span.spanContext().traceId);
    await late.shutdown();
  });

  it('finds in index.html every element it looks up by id', async () => {
    const html = await readFile(INDEX_HTML, 'utf8');
    expect(page.document.requestedIds.size).toBeGreaterThan(5);
    for (const id of page.document.requestedIds) expect(html).toContain(`id="${id}"`);
    expect(html).toContain('id="viewer-app"');
  });

  it('clears the viewer from its button', async () => {
    page.document.getElementById('clear').click();
    await waitFor(
      () => (all(page.document, 'trace-row').length === 0 ? true : undefined),
      'an empty list',
    );
    expect(viewer.store.size).toBe(0);
    expect(page.document.getElementById('traces-empty').hidden).toBe(false);
    expect(all(page.document, 'waterfall-row')).toEqual([]);
  });
});
