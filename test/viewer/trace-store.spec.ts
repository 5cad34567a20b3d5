import { TraceStore, transportOf, type StoredSpan } from '../../sample-app/viewer/trace-store.mjs';

const TRACE_A = 'a'.repeat(32);
const TRACE_B = 'b'.repeat(32);
const TRACE_C = 'c'.repeat(32);
const BASE = 1_700_000_000_000_000_000n;

let nextId = 1;
/** A stored span; `start`/`end` in ms after BASE. */
function span(traceId: string, fields: Partial<StoredSpan> & { at?: number; ms?: number } = {}) {
  const { at = 0, ms = 1, ...rest } = fields;
  const start = BASE + BigInt(at) * 1_000_000n;
  return {
    traceId,
    spanId: (nextId++).toString(16).padStart(16, '0'),
    parentSpanId: '',
    name: 'span',
    kind: 'internal',
    service: 'svc',
    scope: 'test',
    start,
    end: start + BigInt(ms) * 1_000_000n,
    attributes: {},
    events: [],
    status: { code: 'UNSET', message: '' },
    ...rest,
  } satisfies StoredSpan;
}

describe('TraceStore', () => {
  it('emits the trace ids each add touched, once each, and nothing for an empty add', () => {
    const store = new TraceStore();
    const seen: string[][] = [];
    store.on('spans', (ids) => seen.push(ids));
    expect(store.add([span(TRACE_A), span(TRACE_B), span(TRACE_A)])).toEqual([TRACE_A, TRACE_B]);
    store.add([]);
    store.add([span(TRACE_B)]);
    expect(seen).toEqual([[TRACE_A, TRACE_B], [TRACE_B]]);
  });

  it('keeps one copy of a span sent twice, the latest', () => {
    const store = new TraceStore();
    const first = span(TRACE_A, { name: 'first try' });
    store.add([first]);
    store.add([{ ...first, name: 'retried' }]);
    expect(store.get(TRACE_A).map((s) => s.name)).toEqual(['retried']);
  });

  it('returns a trace by start time, in a copy; [] for an unknown trace', () => {
    const store = new TraceStore();
    const late = span(TRACE_A, { at: 5, name: 'late' });
    const parent = span(TRACE_A, { at: 1, ms: 10, name: 'parent' });
    // Same start as its parent but shorter: the parent comes first.
    const child = span(TRACE_A, { at: 1, ms: 2, name: 'child', parentSpanId: parent.spanId });
    store.add([late, child, parent]);
    const spans = store.get(TRACE_A);
    expect(spans.map((s) => s.name)).toEqual(['parent', 'child', 'late']);
    spans.pop();
    expect(store.get(TRACE_A)).toHaveLength(3);
    expect(store.get(TRACE_C)).toEqual([]);
    expect(store.summary(TRACE_C)).toBeUndefined();
  });

  it('summarises a trace from its earliest root, a span whose parent is absent', () => {
    const store = new TraceStore();
    const remoteChild = span(TRACE_A, {
      at: 3,
      ms: 20,
      name: 'GET /late',
      service: 'api',
      parentSpanId: 'f'.repeat(16),
    });
    const earlyOrphan = span(TRACE_A, {
      at: 1,
      ms: 2,
      name: 'consume',
      service: 'worker',
      parentSpanId: 'e'.repeat(16),
    });
    const inner = span(TRACE_A, {
      at: 4,
      name: 'db',
      service: 'api',
      parentSpanId: remoteChild.spanId,
      status: { code: 'ERROR', message: 'x' },
    });
    store.add([remoteChild, inner, earlyOrphan]);
    expect(store.summary(TRACE_A)).toEqual({
      traceId: TRACE_A,
      rootName: 'consume',
      rootService: 'worker',
      services: ['worker', 'api'],
      spanCount: 3,
      start: earlyOrphan.start,
      end: remoteChild.end,
      startTime: Number(earlyOrphan.start / 1_000_000n),
      durationMs: 22,
      error: true,
    });
  });

  it('lists the latest start first; the same start, the latest arrival first', () => {
    const store = new TraceStore();
    store.add([span(TRACE_A, { at: 10 })]);
    store.add([span(TRACE_B, { at: 20 })]);
    store.add([span(TRACE_C, { at: 10 })]);
    expect(store.list().map((t) => t.traceId)).toEqual([TRACE_B, TRACE_C, TRACE_A]);
  });

  it('tells when the span that began a trace in its process has arrived', () => {
    const store = new TraceStore();
    const server = span(TRACE_A, { kind: 'server', parentSpanId: 'f'.repeat(16) });
    store.add([span(TRACE_A, { parentSpanId: server.spanId })]);
    expect(store.isComplete(TRACE_A)).toBe(false);
    store.add([server]);
    expect(store.isComplete(TRACE_A)).toBe(true);
    store.add([span(TRACE_B)]);
    expect(store.isComplete(TRACE_B)).toBe(true);
    expect(store.isComplete(TRACE_C)).toBe(false);
  });

  it('drops whole traces beyond maxTraces, the first seen first, and says which', () => {
    const store = new TraceStore({ maxTraces: 2 });
    const evicted: string[][] = [];
    const touched: string[][] = [];
    store.on('evict', (ids) => evicted.push(ids));
    store.on('spans', (ids) => touched.push(ids));
    store.add([span(TRACE_A), span(TRACE_A)]);
    store.add([span(TRACE_B)]);
    store.add([span(TRACE_A)]); // A stays the oldest arrival
    store.add([span(TRACE_C)]);
    expect(evicted).toEqual([[TRACE_A]]);
    expect(touched.at(-1)).toEqual([TRACE_C]);
    expect([store.has(TRACE_A), store.has(TRACE_B), store.has(TRACE_C)]).toEqual([
      false,
      true,
      true,
    ]);
    expect(store.size).toBe(2);

    // One add with more traces than fit: the ones dropped at once are not reported as touched.
    const small = new TraceStore({ maxTraces: 1 });
    expect(small.add([span(TRACE_A), span(TRACE_B)])).toEqual([TRACE_B]);
  });

  it('refuses a maxTraces that is not a positive integer', () => {
    for (const maxTraces of [0, -1, 1.5, Number.NaN]) {
      expect(() => new TraceStore({ maxTraces })).toThrow(RangeError);
    }
    expect(new TraceStore().maxTraces).toBe(200);
  });

  it('clears everything and says so', () => {
    const store = new TraceStore();
    let cleared = 0;
    store.on('clear', () => cleared++);
    store.add([span(TRACE_A, { service: 'a' })]);
    store.clear();
    expect([store.size, store.list(), store.serviceMap(), cleared]).toEqual([
      0,
      [],
      { nodes: [], edges: [] },
      1,
    ]);
  });

  it('maps only hops between services whose parent is in the trace', () => {
    const store = new TraceStore();
    const client = span(TRACE_A, {
      service: 'a',
      kind: 'client',
      attributes: { 'rpc.system.name': 'grpc' },
    });
    const inProcess = span(TRACE_A, { service: 'a', parentSpanId: client.spanId });
    const server = span(TRACE_A, {
      service: 'b',
      kind: 'server',
      parentSpanId: client.spanId,
      attributes: { 'rpc.system.name': 'grpc' },
    });
    const orphan = span(TRACE_A, { service: 'c', parentSpanId: 'f'.repeat(16) });
    store.add([client, inProcess, server, orphan]);
    expect(store.serviceMap()).toEqual({
      nodes: [
        { service: 'a', spans: 2, errors: 0 },
        { service: 'b', spans: 1, errors: 0 },
        { service: 'c', spans: 1, errors: 0 },
      ],
      edges: [{ from: 'a', to: 'b', transport: 'grpc', calls: 1, errors: 0 }],
    });
  });
});

describe('transportOf', () => {
  const hop = (
    child: StoredSpan['attributes'],
    parent: StoredSpan['attributes'],
    kind = 'client',
  ) =>
    transportOf(
      span(TRACE_A, { kind: 'server', attributes: child }),
      span(TRACE_A, { kind: kind as StoredSpan['kind'], attributes: parent }),
    );

  it('prefers the RPC system, then the messaging system, then HTTP', () => {
    expect(hop({ 'rpc.system.name': 'grpc', 'http.request.method': 'POST' }, {})).toBe('grpc');
    expect(hop({ 'messaging.system': 'mqtt', 'http.request.method': 'POST' }, {})).toBe('mqtt');
    expect(hop({ 'http.request.method': 'POST' }, { 'messaging.system': 'nats' })).toBe('http');
    expect(hop({ 'rpc.system': 'grpc' }, {})).toBe('grpc');
  });

  it("falls back on a CLIENT or PRODUCER parent's attributes only", () => {
    expect(hop({}, { 'messaging.system': 'redis' }, 'producer')).toBe('redis');
    expect(hop({}, { 'http.request.method': 'GET' }, 'client')).toBe('http');
    expect(hop({}, { 'http.request.method': 'GET' }, 'server')).toBe('unknown');
    expect(transportOf(span(TRACE_A))).toBe('unknown');
  });
});
