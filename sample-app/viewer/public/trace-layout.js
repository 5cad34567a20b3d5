// What the page draws, worked out apart from the DOM: the waterfall's rows and the service map's
// geometry are plain data here, so they can be checked in Node without a browser.

/**
 * Well apart from each other on light and dark backgrounds (Tableau's ten, less its red: red
 * marks errors here, plus an indigo).
 */
const PALETTE = [
  '#4e79a7',
  '#f28e2b',
  '#59a14f',
  '#b07aa1',
  '#76b7b2',
  '#edc948',
  '#9c755f',
  '#ff9da7',
  '#6a51a3',
  '#bab0ac',
];

/**
 * The colour of each service, the same wherever the page shows it. A service's name picks its
 * preferred colour; one already taken passes it to the next free one, so that up to ten services
 * never share a colour. A colour once given is kept for the life of the page.
 */
export class ServiceColours {
  #colours = new Map();
  #taken = new Set();

  /**
   * Gives colours to services not seen yet, in name order: the same set of services gets the
   * same colours on every load, whatever order their spans arrived in.
   *
   * @param {Iterable<string>} services
   */
  assign(services) {
    for (const service of [...new Set(services)].sort()) this.colour(service);
    return this;
  }

  /** @param {string} service */
  colour(service) {
    let colour = this.#colours.get(service);
    if (colour !== undefined) return colour;
    const preferred = hashName(service) % PALETTE.length;
    let slot = preferred;
    if (this.#taken.size < PALETTE.length) {
      while (this.#taken.has(slot)) slot = (slot + 1) % PALETTE.length;
    }
    this.#taken.add(slot);
    colour = PALETTE[slot];
    this.#colours.set(service, colour);
    return colour;
  }
}

/** FNV-1a, then murmur3's finaliser so that every character reaches the low bits. */
function hashName(name) {
  let hash = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    hash ^= name.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return hash >>> 0;
}

/**
 * The rows of a trace's waterfall: each span under its parent (children by start time), with
 * where its bar sits on the trace's time axis as fractions of the trace's duration. A span whose
 * parent is not in the trace starts a tree of its own.
 *
 * @param {{ spanId: string, parentSpanId: string, startTimeUnixNano: string,
 *   endTimeUnixNano: string, status: { code: string } }[]} spans As `/api/traces/:id` gives them.
 */
export function waterfallRows(spans) {
  if (spans.length === 0) return { start: 0n, end: 0n, durationMs: 0, rows: [] };
  const parsed = spans.map((span) => ({
    span,
    start: BigInt(span.startTimeUnixNano),
    end: BigInt(span.endTimeUnixNano),
  }));
  parsed.sort((a, b) => compare(a.start, b.start) || compare(b.end, a.end));
  const ids = new Set(spans.map((s) => s.spanId));
  const children = new Map();
  const roots = [];
  for (const item of parsed) {
    const parentId = item.span.parentSpanId;
    if (parentId !== '' && ids.has(parentId) && parentId !== item.span.spanId) {
      children.set(parentId, [...(children.get(parentId) ?? []), item]);
    } else {
      roots.push(item);
    }
  }

  let start = parsed[0].start;
  let end = parsed[0].end;
  for (const { start: s, end: e } of parsed) {
    if (s < start) start = s;
    if (e > end) end = e;
  }
  const total = Number(end - start) || 1;

  const rows = [];
  const placed = new Set();
  const visit = (item, depth) => {
    // Ids come from other processes: a span that names its own descendant as parent must not
    // loop forever.
    if (placed.has(item.span.spanId)) return;
    placed.add(item.span.spanId);
    const kids = children.get(item.span.spanId) ?? [];
    rows.push({
      span: item.span,
      depth,
      offset: Number(item.start - start) / total,
      width: Math.max(0, Number(item.end - item.start)) / total,
      error: item.span.status.code === 'ERROR',
      orphan: item.span.parentSpanId !== '' && depth === 0,
      hasChildren: kids.length > 0,
    });
    for (const kid of kids) visit(kid, depth + 1);
  };
  for (const root of roots) visit(root, 0);
  // Spans caught in a parent cycle have no root above them; they still get a row.
  for (const item of parsed) visit(item, 0);
  return { start, end, durationMs: Number((end - start) / 1000n) / 1000, rows };
}

/**
 * Evenly spaced labels for the time axis, at round values.
 *
 * @param {number} durationMs
 * @returns {{ at: number, label: string }[]} `at` as a fraction of the duration.
 */
export function timeTicks(durationMs, wanted = 5) {
  if (!(durationMs > 0)) return [{ at: 0, label: formatDuration(0) }];
  const rough = durationMs / wanted;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= rough) ?? rough;
  const ticks = [];
  for (let value = 0; value <= durationMs * 1.0001; value += step) {
    ticks.push({ at: value / durationMs, label: formatDuration(value) });
  }
  return ticks;
}

/** @param {number} ms */
export function formatDuration(ms) {
  if (ms === 0) return '0 ms';
  if (ms < 0.001) return `${trim(ms * 1_000_000, 0)} ns`;
  if (ms < 1) return `${trim(ms * 1000, 0)} µs`;
  if (ms < 1000) return `${trim(ms, ms < 10 ? 2 : ms < 100 ? 1 : 0)} ms`;
  if (ms < 60_000) return `${trim(ms / 1000, 2)} s`;
  return `${trim(ms / 60_000, 1)} min`;
}

function trim(value, digits) {
  return String(Number(value.toFixed(digits)));
}

/**
 * The exception a span recorded (its first `exception` event), as the semantic conventions
 * name its parts.
 *
 * @param {{ events: { name: string, attributes: Record<string, unknown> }[] }} span
 */
export function exceptionOf(span) {
  const event = span.events.find((e) => e.name === 'exception');
  if (event === undefined) return undefined;
  const text = (key) => (event.attributes[key] === undefined ? '' : String(event.attributes[key]));
  return {
    type: text('exception.type'),
    message: text('exception.message'),
    stacktrace: text('exception.stacktrace'),
  };
}

/** An attribute value as text: scalars as they are, arrays and key-value lists as JSON. */
export function formatValue(value) {
  if (typeof value === 'string') return value;
  if (value !== null && typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

/** The trace a location hash (`#/traces/<id>`) links to, or undefined. */
export function traceIdFromHash(hash) {
  const match = /^#\/traces\/([0-9a-fA-F]+)\/?$/.exec(hash);
  return match ? match[1].toLowerCase() : undefined;
}

export const MAP_NODE = { width: 168, height: 52 };
const MAP_GAP = { x: 150, y: 34 };
const MAP_PADDING = 24;

/**
 * A layered drawing of the service map: a service sits one column right of the furthest caller
 * that reaches it, so requests flow left to right. Calls back to an earlier column (a cycle)
 * curve below the nodes instead.
 *
 * @param {{ nodes: { service: string, spans: number, errors: number }[],
 *   edges: { from: string, to: string, transport: string, calls: number, errors: number }[] }} map
 */
export function layoutServiceMap(map) {
  const services = [...new Set([...map.nodes.map((n) => n.service), ...endpoints(map.edges)])];
  if (services.length === 0) return { width: 0, height: 0, nodes: [], edges: [] };
  const callees = new Map(services.map((s) => [s, new Set()]));
  for (const edge of map.edges) callees.get(edge.from).add(edge.to);

  // Depth-first from the services nobody calls: an edge back to a service still on the path
  // closes a cycle and takes no part in the layering.
  const callers = new Map(services.map((s) => [s, 0]));
  for (const edge of map.edges) callers.set(edge.to, callers.get(edge.to) + 1);
  const order = [...services.filter((s) => callers.get(s) === 0), ...services];
  const state = new Map();
  const forward = new Map(services.map((s) => [s, []]));
  const finished = [];
  const walk = (service) => {
    state.set(service, 'open');
    for (const next of callees.get(service)) {
      if (!state.has(next)) walk(next);
      if (state.get(next) !== 'open') forward.get(service).push(next);
    }
    state.set(service, 'done');
    finished.push(service);
  };
  for (const service of order) if (!state.has(service)) walk(service);

  // Longest path over the forward edges, callers before callees (reverse finishing order).
  const layer = new Map(services.map((s) => [s, 0]));
  for (const service of finished.reverse()) {
    for (const next of forward.get(service)) {
      layer.set(next, Math.max(layer.get(next), layer.get(service) + 1));
    }
  }

  const columns = [];
  for (const service of services) {
    const column = layer.get(service);
    (columns[column] ??= []).push(service);
  }
  // Each column by the mean row of its callers, to keep lines short and few crossings.
  const row = new Map();
  columns.forEach((column, index) => {
    const weight = (service) => {
      const rows = map.edges
        .filter((e) => e.to === service && layer.get(e.from) < index)
        .map((e) => row.get(e.from));
      return rows.length === 0 ? Infinity : rows.reduce((a, b) => a + b, 0) / rows.length;
    };
    column.sort((a, b) => weight(a) - weight(b) || (a < b ? -1 : a > b ? 1 : 0));
    column.forEach((service, i) => row.set(service, i));
  });

  const stats = new Map(map.nodes.map((n) => [n.service, n]));
  const nodes = services.map((service) => ({
    service,
    spans: stats.get(service)?.spans ?? 0,
    errors: stats.get(service)?.errors ?? 0,
    layer: layer.get(service),
    x: MAP_PADDING + layer.get(service) * (MAP_NODE.width + MAP_GAP.x),
    y: MAP_PADDING + row.get(service) * (MAP_NODE.height + MAP_GAP.y),
    width: MAP_NODE.width,
    height: MAP_NODE.height,
  }));
  const byService = new Map(nodes.map((n) => [n.service, n]));
  const width =
    MAP_PADDING * 2 + columns.length * MAP_NODE.width + (columns.length - 1) * MAP_GAP.x;
  const rows = Math.max(1, ...columns.map((c) => c.length));
  let height = MAP_PADDING * 2 + rows * MAP_NODE.height + (rows - 1) * MAP_GAP.y;

  // Two transports between the same pair: side by side, not on top of each other.
  const siblings = new Map();
  for (const edge of map.edges) {
    const key = `${edge.from}\u0000${edge.to}`;
    siblings.set(key, [...(siblings.get(key) ?? []), edge]);
  }
  const edges = map.edges.map((edge) => {
    const from = byService.get(edge.from);
    const to = byService.get(edge.to);
    const group = siblings.get(`${edge.from}\u0000${edge.to}`);
    const shift = (group.indexOf(edge) - (group.length - 1) / 2) * 14;
    let points;
    if (to.layer > from.layer) {
      const y1 = from.y + from.height / 2 + shift;
      const y2 = to.y + to.height / 2 + shift;
      const x1 = from.x + from.width;
      const x2 = to.x;
      const bend = (x2 - x1) / 2;
      points = [
        [x1, y1],
        [x1 + bend, y1],
        [x2 - bend, y2],
        [x2, y2],
      ];
    } else {
      const x1 = from.x + from.width / 2 + shift;
      const x2 = to.x + to.width / 2 + shift;
      const y1 = from.y + from.height;
      const y2 = to.y + to.height;
      const below = Math.max(y1, y2) + 40 + Math.abs(shift);
      points = [
        [x1, y1],
        [x1, below],
        [x2, below],
        [x2, y2],
      ];
      height = Math.max(height, below + MAP_PADDING);
    }
    const [p0, p1, p2, p3] = points;
    const path = `M ${p0.join(' ')} C ${p1.join(' ')}, ${p2.join(' ')}, ${p3.join(' ')}`;
    // The curve's midpoint, where its label goes.
    const mid = (i) => (p0[i] + 3 * p1[i] + 3 * p2[i] + p3[i]) / 8;
    return { ...edge, path, labelX: mid(0), labelY: mid(1) };
  });
  return { width, height, nodes, edges };
}

function endpoints(edges) {
  return edges.flatMap((e) => [e.from, e.to]);
}

function compare(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}
