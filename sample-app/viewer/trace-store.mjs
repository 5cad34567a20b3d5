// The traces the viewer has received, in memory. Kept apart from the HTTP server so that other
// demo scripts (a terminal printer, a test) can fill it or read it without starting one.
import { EventEmitter } from 'node:events';

/**
 * A span as the store keeps it: what the OTLP decoders (`otlp-decoder.mjs`) make of one.
 *
 * @typedef {object} StoredSpan
 * @property {string} traceId 32 lowercase hex digits.
 * @property {string} spanId 16 lowercase hex digits.
 * @property {string} parentSpanId `''` for a span that started its trace.
 * @property {string} name
 * @property {'unspecified' | 'internal' | 'server' | 'client' | 'producer' | 'consumer'} kind
 * @property {string} service The resource's `service.name` (`'unknown'` without one).
 * @property {string} scope Name of the instrumentation scope (the tracer) that made the span.
 * @property {bigint} start Nanoseconds since the Unix epoch.
 * @property {bigint} end Nanoseconds since the Unix epoch.
 * @property {Record<string, AttributeValue>} attributes
 * @property {{ name: string, time: bigint, attributes: Record<string, AttributeValue> }[]} events
 * @property {{ code: 'UNSET' | 'OK' | 'ERROR', message: string }} status
 */

/**
 * An attribute value: int64 becomes a number, a key-value list a plain object, bytes a
 * Uint8Array, an empty OTLP value null.
 *
 * @typedef {string | number | boolean | null | Uint8Array | AttributeValue[] |
 *   { [key: string]: AttributeValue }} AttributeValue
 */

/**
 * One line of the trace list.
 *
 * @typedef {object} TraceSummary
 * @property {string} traceId
 * @property {string} rootName Name of the earliest-starting root (a span whose parent is absent).
 * @property {string} rootService
 * @property {string[]} services Every service in the trace, in the order they first appear.
 * @property {number} spanCount
 * @property {bigint} start Earliest span start, ns.
 * @property {bigint} end Latest span end, ns.
 * @property {number} startTime `start` in milliseconds since the epoch.
 * @property {number} durationMs
 * @property {boolean} error Whether any span has status ERROR.
 */

/**
 * The spans of the last `maxTraces` traces, grouped by trace. A trace that no longer fits is
 * dropped whole, the one first seen longest ago first: a trace still receiving spans is then the
 * last to go, whatever its timestamps say.
 *
 * Events: `'spans'` (trace ids an `add` touched and kept), `'evict'` (trace ids dropped),
 * `'clear'`.
 *
 * @example
 * const store = new TraceStore({ maxTraces: 50 });
 * store.on('spans', (ids) => ids.forEach((id) => console.log(id, store.get(id).length)));
 */
export class TraceStore extends EventEmitter {
  /** @type {Map<string, Map<string, StoredSpan>>} trace id → span id → span, in first-seen order */
  #traces = new Map();
  #maxTraces;

  constructor({ maxTraces = 200 } = {}) {
    super();
    if (!Number.isInteger(maxTraces) || maxTraces < 1) {
      throw new RangeError(`maxTraces must be a positive integer, got ${String(maxTraces)}`);
    }
    this.#maxTraces = maxTraces;
  }

  get maxTraces() {
    return this.#maxTraces;
  }

  /** Number of traces kept. */
  get size() {
    return this.#traces.size;
  }

  /**
   * Adds spans of any traces. A span sent again (an exporter retrying) replaces the first copy.
   *
   * @param {StoredSpan[]} spans
   * @returns {string[]} The ids of the traces touched and still kept.
   */
  add(spans) {
    const touched = new Set();
    for (const span of spans) {
      let trace = this.#traces.get(span.traceId);
      if (trace === undefined) {
        trace = new Map();
        this.#traces.set(span.traceId, trace);
      }
      trace.set(span.spanId, span);
      touched.add(span.traceId);
    }
    const evicted = [];
    for (const traceId of this.#traces.keys()) {
      if (this.#traces.size <= this.#maxTraces) break;
      this.#traces.delete(traceId);
      touched.delete(traceId);
      evicted.push(traceId);
    }
    if (evicted.length > 0) this.emit('evict', evicted);
    const ids = [...touched];
    if (ids.length > 0) this.emit('spans', ids);
    return ids;
  }

  /** @param {string} traceId */
  has(traceId) {
    return this.#traces.has(traceId);
  }

  /**
   * The spans of one trace by start time (`[]` for an unknown trace), in a new array.
   *
   * @param {string} traceId
   * @returns {StoredSpan[]}
   */
  get(traceId) {
    const trace = this.#traces.get(traceId);
    return trace === undefined ? [] : [...trace.values()].sort(byStart);
  }

  /**
   * Whether the span that began the trace in its first process has arrived: a root, or a SERVER
   * or CONSUMER span whose caller is not in the store. That span ends last there, so the spans
   * it waited for were exported before it or with it.
   *
   * @param {string} traceId
   */
  isComplete(traceId) {
    const trace = this.#traces.get(traceId);
    if (trace === undefined) return false;
    for (const span of trace.values()) {
      if (span.parentSpanId === '') return true;
      if ((span.kind === 'server' || span.kind === 'consumer') && !trace.has(span.parentSpanId)) {
        return true;
      }
    }
    return false;
  }

  /**
   * @param {string} traceId
   * @returns {TraceSummary | undefined}
   */
  summary(traceId) {
    const spans = this.get(traceId);
    return spans.length === 0 ? undefined : summarize(spans);
  }

  /**
   * A summary of every trace kept, the latest start first (ties: the latest first seen first).
   *
   * @returns {TraceSummary[]}
   */
  list() {
    return [...this.#traces.keys()]
      .reverse()
      .map((traceId) => summarize(this.get(traceId)))
      .sort((a, b) => compareBigInt(b.start, a.start));
  }

  /**
   * Which service calls which, from every trace kept. A call is a parent and child span of two
   * different services: one hop between processes.
   *
   * @returns {{
   *   nodes: { service: string, spans: number, errors: number }[],
   *   edges: { from: string, to: string, transport: string, calls: number, errors: number }[],
   * }}
   */
  serviceMap() {
    const nodes = new Map();
    const edges = new Map();
    for (const trace of this.#traces.values()) {
      for (const span of trace.values()) {
        const node = nodes.get(span.service) ?? { service: span.service, spans: 0, errors: 0 };
        node.spans++;
        if (span.status.code === 'ERROR') node.errors++;
        nodes.set(span.service, node);

        const parent = trace.get(span.parentSpanId);
        if (parent === undefined || parent.service === span.service) continue;
        const transport = transportOf(span, parent);
        const key = JSON.stringify([parent.service, span.service, transport]);
        const edge = edges.get(key) ?? {
          from: parent.service,
          to: span.service,
          transport,
          calls: 0,
          errors: 0,
        };
        edge.calls++;
        if (span.status.code === 'ERROR' || parent.status.code === 'ERROR') edge.errors++;
        edges.set(key, edge);
      }
    }
    return {
      nodes: [...nodes.values()].sort((a, b) => compareText(a.service, b.service)),
      edges: [...edges.values()].sort(
        (a, b) =>
          compareText(a.from, b.from) ||
          compareText(a.to, b.to) ||
          compareText(a.transport, b.transport),
      ),
    };
  }

  clear() {
    this.#traces.clear();
    this.emit('clear');
  }
}

/**
 * What carried a hop, from the receiving span (SERVER or CONSUMER), else from the sending one
 * when it is a CLIENT or PRODUCER: an uninstrumented receiver still leaves its caller's
 * attributes. Any other parent's attributes describe how that parent was reached, not this hop.
 *
 * @param {StoredSpan} child
 * @param {StoredSpan} [parent]
 * @returns {string} `grpc`, a messaging system (`rabbitmq`, `nats`, `kafka`...), `http` or `unknown`.
 */
export function transportOf(child, parent) {
  const sides = [child];
  if (parent?.kind === 'client' || parent?.kind === 'producer') sides.push(parent);
  for (const { attributes } of sides) {
    // `rpc.system` is the name older semantic conventions (and other instrumentations) use.
    const system =
      attributes['rpc.system.name'] ?? attributes['messaging.system'] ?? attributes['rpc.system'];
    if (typeof system === 'string' && system !== '') return system;
    if (attributes['http.request.method'] !== undefined) return 'http';
  }
  return 'unknown';
}

/**
 * @param {StoredSpan[]} spans The spans of one trace by start time, at least one.
 * @returns {TraceSummary}
 */
export function summarize(spans) {
  const ids = new Set(spans.map((s) => s.spanId));
  const first = /** @type {StoredSpan} */ (spans[0]);
  const root = spans.find((s) => !ids.has(s.parentSpanId)) ?? first;
  let start = first.start;
  let end = first.end;
  for (const span of spans) {
    if (span.start < start) start = span.start;
    if (span.end > end) end = span.end;
  }
  return {
    traceId: first.traceId,
    rootName: root.name,
    rootService: root.service,
    services: [...new Set(spans.map((s) => s.service))],
    spanCount: spans.length,
    start,
    end,
    startTime: nanosToMillis(start),
    durationMs: nanosToMillis(end - start),
    error: spans.some((s) => s.status.code === 'ERROR'),
  };
}

/**
 * Nanoseconds to (fractional) milliseconds, down to the microsecond: a double holds today's
 * epoch in µs exactly, but not in ns.
 *
 * @param {bigint} nanos
 */
export function nanosToMillis(nanos) {
  return Number(nanos / 1000n) / 1000;
}

/** Start order; same start: the longer span first, so a parent precedes a child starting with it. */
function byStart(a, b) {
  return compareBigInt(a.start, b.start) || compareBigInt(b.end, a.end);
}

function compareBigInt(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

function compareText(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}
