import {
  MAP_NODE,
  exceptionOf,
  formatDuration,
  formatValue,
  layoutServiceMap,
  ServiceColours,
  timeTicks,
  traceIdFromHash,
  waterfallRows,
  type ApiSpan,
} from '../../sample-app/viewer/public/trace-layout.js';
import { startViewer, type Viewer } from '../../sample-app/viewer/viewer.mjs';
import { buildShop, exportShop, nanos, type Shop } from './otlp-fixtures.js';

/** The page's layout helpers, fed what the viewer's API really returns for real exports. */

const edge = (from: string, to: string, transport = 'grpc') => ({
  from,
  to,
  transport,
  calls: 1,
  errors: 0,
});

describe('page layout', () => {
  let viewer: Viewer;
  let shop: Shop;
  let checkout: ApiSpan[];
  let map: Parameters<typeof layoutServiceMap>[0];

  beforeAll(async () => {
    viewer = await startViewer({ port: 0 });
    shop = buildShop();
    await exportShop(viewer.url, shop);
    const get = async (path: string): Promise<any> => (await fetch(`${viewer.url}${path}`)).json();
    checkout = (await get(`/api/traces/${shop.checkoutTraceId}`)).spans;
    map = await get('/api/service-map');
  });
  afterAll(async () => {
    await viewer.close();
    await shop.shutdown();
  });

  describe('waterfallRows', () => {
    it('puts each span under its parent, at its place on the time axis', () => {
      const { rows, durationMs, start } = waterfallRows(checkout);
      const { ids } = shop;
      expect(rows.map((r) => [r.span.spanId, r.depth])).toEqual([
        [ids.checkout, 0],
        [ids.createCall, 1],
        [ids.create, 2],
        [ids.insert, 3],
        [ids.publish, 3],
        [ids.charge, 4],
      ]);
      expect(String(start)).toBe(nanos(shop.times.checkoutStart));
      expect(durationMs).toBeCloseTo(40, 2);
      const [root, , , , , charge] = rows;
      expect([root!.offset, root!.width]).toEqual([0, 1]);
      // billing's span runs from 10 ms to 20 ms of a 40 ms trace.
      expect(charge!.offset).toBeCloseTo(0.25, 3);
      expect(charge!.width).toBeCloseTo(0.25, 3);
      expect(rows.map((r) => r.error)).toEqual([false, false, false, false, false, true]);
      expect(rows.filter((r) => r.hasChildren).map((r) => r.span.spanId)).toEqual([
        ids.checkout,
        ids.createCall,
        ids.create,
        ids.publish,
      ]);
    });

    it('shows a span whose parent never arrived as a root of its own', () => {
      const withoutRoot = checkout.filter((s) => s.spanId !== shop.ids.checkout);
      const { rows } = waterfallRows(withoutRoot);
      expect(rows[0]).toMatchObject({ depth: 0, orphan: true });
      expect(rows[0]!.span.spanId).toBe(shop.ids.createCall);
      expect(rows).toHaveLength(5);
    });

    it('still gives a row to spans whose parents form a loop', () => {
      const [a, b] = checkout as [ApiSpan, ApiSpan];
      const loop = [
        { ...a, parentSpanId: b.spanId },
        { ...b, parentSpanId: a.spanId },
      ];
      expect(
        waterfallRows(loop)
          .rows.map((r) => r.span.spanId)
          .sort(),
      ).toEqual([a.spanId, b.spanId].sort());
      expect(waterfallRows([]).rows).toEqual([]);
    });
  });

  describe('layoutServiceMap', () => {
    it('puts each service one column right of its furthest caller', () => {
      const layout = layoutServiceMap(map);
      const column = Object.fromEntries(layout.nodes.map((n) => [n.service, n.layer]));
      expect(column).toEqual({ gateway: 0, orders: 1, inventory: 1, billing: 2 });
      expect(layout.edges.map((e) => [e.from, e.to, e.transport, e.calls, e.errors])).toEqual(
        map.edges.map((e) => [e.from, e.to, e.transport, e.calls, e.errors]),
      );
      // Inside the drawing, and no two boxes overlap.
      for (const node of layout.nodes) {
        expect(node.x + node.width).toBeLessThanOrEqual(layout.width);
        expect(node.y + node.height).toBeLessThanOrEqual(layout.height);
      }
      for (const a of layout.nodes) {
        for (const b of layout.nodes) {
          if (a === b) continue;
          const apart =
            a.x + a.width <= b.x ||
            b.x + b.width <= a.x ||
            a.y + a.height <= b.y ||
            b.y + b.height <= a.y;
          expect({ a: a.service, b: b.service, apart }).toEqual({
            a: a.service,
            b: b.service,
            apart: true,
          });
        }
      }
      // Forward edges leave the caller's right side and end on the callee's left side.
      for (const e of layout.edges) {
        const from = layout.nodes.find((n) => n.service === e.from)!;
        const to = layout.nodes.find((n) => n.service === e.to)!;
        expect(e.path.startsWith(`M ${from.x + from.width} `)).toBe(true);
        expect(e.path).toMatch(new RegExp(`, ${to.x} [\\d.]+$`));
      }
    });

    it('copes with calls in a cycle and with two transports between one pair', () => {
      const layout = layoutServiceMap({
        nodes: [],
        edges: [edge('a', 'b'), edge('b', 'a'), edge('b', 'c', 'nats'), edge('a', 'b', 'kafka')],
      });
      expect(Object.fromEntries(layout.nodes.map((n) => [n.service, n.layer]))).toEqual({
        a: 0,
        b: 1,
        c: 2,
      });
      const [ab, ba, , abKafka] = layout.edges;
      // The call back runs below the boxes.
      expect(ba!.labelY).toBeGreaterThan(layout.nodes[0]!.y + MAP_NODE.height);
      expect(layout.height).toBeGreaterThan(ba!.labelY);
      expect(abKafka!.path).not.toBe(ab!.path);
      expect(layoutServiceMap({ nodes: [], edges: [] })).toEqual({
        width: 0,
        height: 0,
        nodes: [],
        edges: [],
      });
    });
  });

  it('gives each service a colour of its own, kept as new services arrive', () => {
    const names = Array.from({ length: 10 }, (_, i) => `service-${i}`);
    const colours = new ServiceColours().assign(names.slice(0, 4));
    const first = names.slice(0, 4).map((n) => colours.colour(n));
    colours.assign(names);
    expect(names.slice(0, 4).map((n) => colours.colour(n))).toEqual(first);
    expect(new Set(names.map((n) => colours.colour(n))).size).toBe(10);
    // Past the palette, colours repeat rather than run out.
    expect(colours.colour('service-10')).toMatch(/^#[0-9a-f]{6}$/);
    // The same services get the same colours whatever order they come in.
    const reversed = new ServiceColours().assign([...names].reverse());
    expect(names.map((n) => reversed.colour(n))).toEqual(names.map((n) => colours.colour(n)));
  });

  it('finds the exception a span recorded', () => {
    const charge = checkout.find((s) => s.spanId === shop.ids.charge)!;
    expect(exceptionOf(charge)).toEqual({
      type: 'TypeError',
      message: 'card declined',
      stacktrace: shop.declined.stack,
    });
    expect(exceptionOf(checkout[0]!)).toBeUndefined();
  });

  it('labels the time axis at round steps across the whole trace', () => {
    for (const durationMs of [0.3, 7, 40, 1234, 95_000]) {
      const ticks = timeTicks(durationMs);
      expect(ticks[0]).toEqual({ at: 0, label: '0 ms' });
      expect(ticks.length).toBeGreaterThanOrEqual(3);
      expect(ticks.length).toBeLessThanOrEqual(6);
      expect(ticks.at(-1)!.at).toBeLessThanOrEqual(1.0001);
      const steps = ticks.slice(1).map((t, i) => t.at - ticks[i]!.at);
      for (const step of steps) expect(step).toBeCloseTo(steps[0]!, 9);
    }
    expect(timeTicks(0)).toEqual([{ at: 0, label: '0 ms' }]);
  });

  it('writes durations in the unit that reads best', () => {
    expect([0, 0.0005, 0.5, 3.14159, 12.345, 250.4, 1520, 95_000].map(formatDuration)).toEqual([
      '0 ms',
      '500 ns',
      '500 µs',
      '3.14 ms',
      '12.3 ms',
      '250 ms',
      '1.52 s',
      '1.6 min',
    ]);
  });

  it('shows scalar values as they are and lists as JSON', () => {
    expect([formatValue('x'), formatValue(3), formatValue(false), formatValue(null)]).toEqual([
      'x',
      '3',
      'false',
      'null',
    ]);
    expect(formatValue(['a', 1])).toBe('["a",1]');
    expect(formatValue({ k: 'v' })).toBe('{"k":"v"}');
  });

  it('reads the trace id of a #/traces/<id> link', () => {
    expect(traceIdFromHash(`#/traces/${shop.checkoutTraceId.toUpperCase()}`)).toBe(
      shop.checkoutTraceId,
    );
    expect(traceIdFromHash('#/traces/')).toBeUndefined();
    expect(traceIdFromHash('#/map')).toBeUndefined();
    expect(traceIdFromHash('')).toBeUndefined();
  });
});
