// The viewer's page: the trace list, one trace's waterfall with a span's details, and the service
// map, kept fresh by polling the viewer's JSON API. Every node is built with createElement and
// text nodes, never from HTML strings: span names and attributes come from other processes.
import {
  exceptionOf,
  formatDuration,
  formatValue,
  layoutServiceMap,
  ServiceColours,
  timeTicks,
  traceIdFromHash,
  waterfallRows,
} from './trace-layout.js';

const SVG = 'http://www.w3.org/2000/svg';

/**
 * Runs the page inside `doc` (which must hold index.html's skeleton) until `stop()`. The
 * browser's globals come in as arguments so that a test can run the page against stand-ins.
 *
 * @param {{ document: Document, window: Window, location: Location, fetch: typeof fetch,
 *   pollMs?: number }} env
 */
export function startApp({ document: doc, window: win, location: loc, fetch: get, pollMs = 2000 }) {
  const $ = (id) => doc.getElementById(id);
  const ui = {
    status: $('status'),
    count: $('trace-count'),
    clear: $('clear'),
    rows: $('trace-rows'),
    empty: $('traces-empty'),
    map: $('map'),
    traceTitle: $('trace-title'),
    traceMeta: $('trace-meta'),
    traceBody: $('trace-body'),
    waterfall: $('waterfall'),
    details: $('details'),
  };
  const colours = new ServiceColours();
  const state = {
    running: true,
    timer: undefined,
    listKey: undefined,
    mapKey: undefined,
    traces: [],
    traceId: undefined,
    /** What the list said of the shown trace when it was fetched: a change means new spans. */
    traceKey: undefined,
    trace: undefined,
    spanId: undefined,
  };

  const h = (tag, attributes = {}, ...children) =>
    build(doc.createElement(tag), attributes, children);
  const s = (tag, attributes = {}, ...children) =>
    build(doc.createElementNS(SVG, tag), attributes, children);

  async function getJson(path, init) {
    const response = await get(path, { cache: 'no-store', ...init });
    if (response.status === 404) return undefined;
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
    return response.status === 204 ? undefined : response.json();
  }

  async function refresh() {
    if (state.timer !== undefined) clearTimeout(state.timer);
    state.timer = undefined;
    try {
      const [traces, map] = await Promise.all([
        getJson('/api/traces'),
        getJson('/api/service-map'),
      ]);
      if (!state.running) return;
      colours.assign([...map.nodes.map((n) => n.service), ...traces.flatMap((t) => t.services)]);
      const listKey = JSON.stringify(traces);
      if (listKey !== state.listKey) {
        state.listKey = listKey;
        state.traces = traces;
        renderList();
      }
      const mapKey = JSON.stringify(map);
      if (mapKey !== state.mapKey) {
        state.mapKey = mapKey;
        renderMap(map);
      }
      if (state.traceId !== undefined && summaryKey(state.traceId) !== state.traceKey) {
        await loadTrace(state.traceId);
      }
      setStatus('live', `live · ${traces.length} trace${traces.length === 1 ? '' : 's'}`);
    } catch {
      if (state.running) setStatus('offline', 'viewer unreachable, retrying…');
    } finally {
      if (state.running) state.timer = setTimeout(() => void refresh(), pollMs);
    }
  }

  function summaryKey(traceId) {
    const summary = state.traces.find((t) => t.traceId === traceId);
    return summary === undefined ? 'absent' : `${summary.spanCount}:${summary.durationMs}`;
  }

  function setStatus(kind, text) {
    ui.status.className = `status status-${kind}`;
    ui.status.textContent = text;
  }

  // ---------------------------------------------------------------------------------------
  // Trace list

  function renderList() {
    ui.count.textContent = state.traces.length === 0 ? '' : `(${state.traces.length})`;
    ui.empty.hidden = state.traces.length > 0;
    ui.rows.replaceChildren(
      ...state.traces.map((trace) =>
        h(
          'tr',
          {
            'data-testid': 'trace-row',
            'data-trace-id': trace.traceId,
            'data-error': String(trace.error),
            class: `trace-row${trace.error ? ' error' : ''}`,
            tabindex: '0',
            'aria-selected': String(trace.traceId === state.traceId),
            onclick: () => openTrace(trace.traceId),
            onkeydown: (event) => activateOnKey(event, () => openTrace(trace.traceId)),
          },
          h(
            'td',
            { class: 'root' },
            trace.error
              ? h('span', { class: 'badge badge-error', title: 'has errors' }, 'error')
              : '',
            h('span', { class: 'root-name' }, trace.rootName || '(unnamed)'),
            h('div', { class: 'trace-id' }, trace.traceId),
          ),
          h('td', { class: 'services' }, ...trace.services.map((service) => serviceChip(service))),
          h('td', { class: 'num' }, String(trace.spanCount)),
          h('td', { class: 'num' }, formatDuration(trace.durationMs)),
          h('td', { class: 'time' }, clockTime(trace.startTime)),
        ),
      ),
    );
  }

  function markSelectedRow() {
    for (const row of ui.rows.children) {
      row.setAttribute(
        'aria-selected',
        String(row.getAttribute('data-trace-id') === state.traceId),
      );
    }
  }

  function serviceChip(service) {
    return h('span', { class: 'chip', style: { '--colour': colours.colour(service) } }, service);
  }

  function openTrace(traceId) {
    const hash = `#/traces/${traceId}`;
    // Setting the same hash fires no hashchange: open it directly.
    if (loc.hash === hash) void showTrace(traceId);
    else loc.hash = hash;
  }

  // ---------------------------------------------------------------------------------------
  // One trace: waterfall and span details

  async function showTrace(traceId) {
    if (traceId !== state.traceId) {
      state.traceId = traceId;
      state.trace = undefined;
      state.spanId = undefined;
    }
    markSelectedRow();
    renderTrace();
    if (traceId !== undefined) await loadTrace(traceId);
  }

  async function loadTrace(traceId) {
    const key = summaryKey(traceId);
    let trace;
    try {
      trace = await getJson(`/api/traces/${encodeURIComponent(traceId)}`);
    } catch {
      return; // the next refresh says the viewer is offline and tries again
    }
    if (state.traceId !== traceId || !state.running) return;
    state.traceKey = key;
    // A trace evicted since it was shown stays on screen; one never seen says so.
    if (trace !== undefined || state.trace === undefined) state.trace = trace;
    renderTrace();
  }

  function renderTrace() {
    const { trace, traceId } = state;
    ui.traceBody.classList.toggle('with-details', false);
    if (traceId === undefined) {
      ui.traceTitle.textContent = 'Select a trace';
      ui.traceMeta.replaceChildren();
      ui.waterfall.replaceChildren(
        h('p', { class: 'empty' }, 'Click a trace in the list to see its spans on a time axis.'),
      );
      ui.details.replaceChildren();
      return;
    }
    if (trace === undefined) {
      ui.traceTitle.textContent = `Trace ${traceId}`;
      ui.traceMeta.replaceChildren();
      ui.waterfall.replaceChildren(
        h('p', { class: 'empty' }, 'This trace is not in the viewer (not yet, or not any more).'),
      );
      ui.details.replaceChildren();
      return;
    }

    const layout = waterfallRows(trace.spans);
    const root = layout.rows[0]?.span;
    const services = [...new Set(trace.spans.map((span) => span.service))];
    // A linked trace can draw before the first list arrives: colours still go in name order.
    colours.assign(services);
    const errors = layout.rows.filter((row) => row.error).length;
    ui.traceTitle.textContent = root ? root.name : `Trace ${traceId}`;
    ui.traceMeta.replaceChildren(
      h('span', { class: 'mono' }, trace.traceId),
      h('span', {}, formatDuration(layout.durationMs)),
      h('span', {}, `${trace.spans.length} span${trace.spans.length === 1 ? '' : 's'}`),
      errors > 0
        ? h('span', { class: 'badge badge-error' }, `${errors} error${errors === 1 ? '' : 's'}`)
        : '',
      h('span', { class: 'services' }, ...services.map((service) => serviceChip(service))),
    );

    const ticks = timeTicks(layout.durationMs);
    const step = ticks.length > 1 ? ticks[1].at : 1;
    ui.waterfall.replaceChildren(
      h(
        'div',
        {
          class: 'wf',
          'data-testid': 'waterfall',
          role: 'list',
          style: { '--tick': `${(step * 100).toFixed(4)}%` },
        },
        h(
          'div',
          { class: 'wf-head' },
          h('div', { class: 'wf-label' }, 'Span'),
          h(
            'div',
            { class: 'wf-axis' },
            ...ticks.map((tick) =>
              h('span', { class: 'tick', style: { left: percent(tick.at) } }, tick.label),
            ),
          ),
        ),
        ...layout.rows.map((row) => waterfallRow(row, layout)),
      ),
    );
    renderDetails(layout);
  }

  function waterfallRow(row, layout) {
    const { span } = row;
    const colour = colours.colour(span.service);
    const end = row.offset + row.width;
    // The duration reads beside the bar, on whichever side has room.
    const labelStyle = end > 0.8 ? { right: percent(1 - row.offset) } : { left: percent(end) };
    return h(
      'div',
      {
        class: `wf-row${row.error ? ' error' : ''}`,
        'data-testid': 'waterfall-row',
        'data-span-id': span.spanId,
        'data-service': span.service,
        'data-error': String(row.error),
        'data-depth': String(row.depth),
        role: 'listitem',
        tabindex: '0',
        'aria-selected': String(span.spanId === state.spanId),
        style: { '--colour': colour, '--depth': String(row.depth) },
        onclick: () => selectSpan(span.spanId, layout),
        onkeydown: (event) => activateOnKey(event, () => selectSpan(span.spanId, layout)),
      },
      h(
        'div',
        { class: 'wf-label', title: `${span.name} (${span.service})` },
        row.error ? h('span', { class: 'error-mark', title: 'status ERROR' }, '!') : '',
        h('span', { class: 'wf-name' }, span.name),
        span.kind === 'internal' || span.kind === 'unspecified'
          ? ''
          : h('span', { class: 'kind' }, span.kind),
        h('span', { class: 'wf-service' }, span.service),
      ),
      h(
        'div',
        { class: 'wf-track' },
        h('div', {
          class: 'wf-bar',
          style: { left: percent(row.offset), width: percent(row.width) },
        }),
        h('span', { class: 'wf-duration', style: labelStyle }, formatDuration(span.durationMs)),
      ),
    );
  }

  function selectSpan(spanId, layout) {
    state.spanId = spanId;
    for (const row of ui.waterfall.querySelectorAll('[data-testid="waterfall-row"]')) {
      row.setAttribute('aria-selected', String(row.getAttribute('data-span-id') === spanId));
    }
    renderDetails(layout);
  }

  function renderDetails(layout) {
    const span = state.trace?.spans.find((candidate) => candidate.spanId === state.spanId);
    ui.traceBody.classList.toggle('with-details', span !== undefined);
    if (span === undefined) {
      ui.details.replaceChildren();
      return;
    }
    const offsetMs = Number((BigInt(span.startTimeUnixNano) - layout.start) / 1000n) / 1000;
    const parent = state.trace.spans.find((candidate) => candidate.spanId === span.parentSpanId);
    const exception = exceptionOf(span);
    const attributeKeys = Object.keys(span.attributes).sort();
    ui.details.replaceChildren(
      h(
        'div',
        { class: 'details', 'data-testid': 'span-details', 'data-span-id': span.spanId },
        h(
          'header',
          {},
          h('h3', {}, span.name),
          h(
            'button',
            {
              type: 'button',
              class: 'close',
              title: 'Close (Esc)',
              'aria-label': 'Close span details',
              onclick: () => selectSpan(undefined, layout),
            },
            '×',
          ),
        ),
        h(
          'dl',
          { class: 'meta' },
          ...field('Service', serviceChip(span.service)),
          ...field('Kind', span.kind),
          ...field('Status', statusText(span.status), span.status.code === 'ERROR' ? 'error' : ''),
          ...field('Duration', formatDuration(span.durationMs)),
          ...field('Starts at', `+${formatDuration(offsetMs)}`),
          ...field('Span ID', h('span', { class: 'mono' }, span.spanId)),
          ...field(
            'Parent',
            span.parentSpanId === ''
              ? 'none (root)'
              : parent
                ? h(
                    'button',
                    {
                      type: 'button',
                      class: 'link',
                      onclick: () => selectSpan(parent.spanId, layout),
                    },
                    `${parent.name} (${parent.service})`,
                  )
                : h('span', { class: 'mono' }, `${span.parentSpanId} (not received)`),
          ),
          ...field('Scope', span.scope || '—'),
        ),
        exception
          ? h(
              'section',
              { class: 'exception', 'data-testid': 'span-exception' },
              h('h4', {}, 'Exception'),
              h(
                'p',
                {},
                h('strong', { class: 'exception-type' }, exception.type || 'Error'),
                exception.message ? `: ${exception.message}` : '',
              ),
              exception.stacktrace ? h('pre', { class: 'stack' }, exception.stacktrace) : '',
            )
          : '',
        h('h4', {}, `Attributes (${attributeKeys.length})`),
        attributeTable(span.attributes),
        h('h4', {}, `Events (${span.events.length})`),
        span.events.length === 0
          ? h('p', { class: 'empty' }, 'none')
          : h(
              'ol',
              { class: 'events' },
              ...span.events.map((event) => {
                const at = Number((BigInt(event.timeUnixNano) - layout.start) / 1000n) / 1000;
                return h(
                  'li',
                  { class: event.name === 'exception' ? 'event error' : 'event' },
                  h(
                    'div',
                    { class: 'event-head' },
                    h('strong', {}, event.name),
                    h('span', { class: 'muted' }, ` +${formatDuration(at)}`),
                  ),
                  attributeTable(event.attributes),
                );
              }),
            ),
      ),
    );
  }

  function attributeTable(attributes) {
    const keys = Object.keys(attributes).sort();
    if (keys.length === 0) return h('p', { class: 'empty' }, 'none');
    return h(
      'table',
      { class: 'attributes' },
      h(
        'tbody',
        {},
        ...keys.map((key) =>
          h(
            'tr',
            {},
            h('th', { scope: 'row' }, key),
            h(
              'td',
              { class: `value value-${valueType(attributes[key])}` },
              formatValue(attributes[key]),
            ),
          ),
        ),
      ),
    );
  }

  function field(label, value, className = '') {
    return [h('dt', {}, label), h('dd', className ? { class: className } : {}, value)];
  }

  // ---------------------------------------------------------------------------------------
  // Service map

  function renderMap(map) {
    const layout = layoutServiceMap(map);
    if (layout.nodes.length === 0) {
      ui.map.replaceChildren(
        s('svg', { 'data-testid': 'service-map', class: 'map', width: '0', height: '0' }),
        h('p', { class: 'empty' }, 'No services yet: the map fills in as spans arrive.'),
      );
      return;
    }
    ui.map.replaceChildren(
      s(
        'svg',
        {
          'data-testid': 'service-map',
          class: 'map',
          viewBox: `0 0 ${layout.width} ${layout.height}`,
          width: String(layout.width),
          height: String(layout.height),
          role: 'img',
          'aria-label': 'Service map: which service calls which',
        },
        s(
          'defs',
          {},
          arrowMarker('arrow', 'arrow-head'),
          arrowMarker('arrow-error', 'arrow-head error'),
        ),
        s(
          'g',
          { class: 'edges' },
          ...layout.edges.map((edge) =>
            s(
              'g',
              {
                'data-testid': 'map-edge',
                'data-from': edge.from,
                'data-to': edge.to,
                'data-transport': edge.transport,
                'data-calls': String(edge.calls),
                'data-errors': String(edge.errors),
                class: edge.errors > 0 ? 'edge error' : 'edge',
              },
              s(
                'title',
                {},
                `${edge.from} → ${edge.to} over ${edge.transport}: ${plural(edge.calls, 'call')}, ${plural(edge.errors, 'error')}`,
              ),
              s('path', {
                d: edge.path,
                'marker-end': `url(#${edge.errors > 0 ? 'arrow-error' : 'arrow'})`,
              }),
              s(
                'text',
                { x: String(edge.labelX), y: String(edge.labelY - 6), 'text-anchor': 'middle' },
                `${edge.transport} · ${edge.calls}×`,
                edge.errors > 0
                  ? s('tspan', { class: 'edge-errors' }, ` · ${edge.errors} err`)
                  : '',
              ),
            ),
          ),
        ),
        s(
          'g',
          { class: 'nodes' },
          ...layout.nodes.map((node) =>
            s(
              'g',
              {
                'data-testid': 'map-node',
                'data-service': node.service,
                class: node.errors > 0 ? 'node error' : 'node',
                transform: `translate(${node.x} ${node.y})`,
                style: { '--colour': colours.colour(node.service) },
              },
              s(
                'title',
                {},
                `${node.service}: ${plural(node.spans, 'span')}, ${plural(node.errors, 'error')}`,
              ),
              s('rect', {
                class: 'node-box',
                width: String(node.width),
                height: String(node.height),
                rx: '8',
              }),
              s('rect', { class: 'node-stripe', width: '6', height: String(node.height), rx: '3' }),
              s('text', { class: 'node-name', x: '16', y: '22' }, node.service),
              s(
                'text',
                { class: 'node-stats', x: '16', y: '40' },
                plural(node.spans, 'span'),
                node.errors > 0
                  ? s('tspan', { class: 'node-errors' }, ` · ${plural(node.errors, 'error')}`)
                  : '',
              ),
            ),
          ),
        ),
      ),
    );
  }

  function arrowMarker(id, className) {
    return s(
      'marker',
      {
        id,
        viewBox: '0 0 10 10',
        refX: '9',
        refY: '5',
        markerWidth: '7',
        markerHeight: '7',
        orient: 'auto-start-reverse',
      },
      s('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: className }),
    );
  }

  // ---------------------------------------------------------------------------------------
  // Wiring

  const onHashChange = () => void showTrace(traceIdFromHash(loc.hash));
  const onKeyDown = (event) => {
    if (event.key === 'Escape' && state.spanId !== undefined && state.trace !== undefined) {
      selectSpan(undefined, waterfallRows(state.trace.spans));
    }
  };
  const onClear = async () => {
    try {
      await getJson('/api/traces', { method: 'DELETE' });
    } finally {
      if (traceIdFromHash(loc.hash) !== undefined) loc.hash = '';
      await showTrace(undefined);
      await refresh();
    }
  };
  const onClearClick = () => void onClear();

  win.addEventListener('hashchange', onHashChange);
  win.addEventListener('keydown', onKeyDown);
  ui.clear.addEventListener('click', onClearClick);
  ui.empty.querySelector('[data-origin]')?.replaceChildren(`${loc.origin}/v1/traces`);

  const ready = Promise.all([showTrace(traceIdFromHash(loc.hash)), refresh()]).then(() => {});
  return {
    ready,
    refresh,
    stop() {
      state.running = false;
      if (state.timer !== undefined) clearTimeout(state.timer);
      win.removeEventListener('hashchange', onHashChange);
      win.removeEventListener('keydown', onKeyDown);
      ui.clear.removeEventListener('click', onClearClick);
    },
  };
}

/** Sets attributes (`on*` as listeners, `style` as properties) and appends children. */
function build(element, attributes, children) {
  for (const [name, value] of Object.entries(attributes)) {
    if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else if (name === 'style') {
      for (const [property, v] of Object.entries(value)) element.style.setProperty(property, v);
    } else element.setAttribute(name, value);
  }
  for (const child of children) if (child !== '') element.append(child);
  return element;
}

function activateOnKey(event, action) {
  if (event.key === 'Enter' || event.key === ' ') {
    event.preventDefault();
    action();
  }
}

function percent(fraction) {
  return `${(Math.min(1, Math.max(0, fraction)) * 100).toFixed(4)}%`;
}

function plural(count, noun) {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

function statusText(status) {
  return status.message ? `${status.code}: ${status.message}` : status.code;
}

function valueType(value) {
  if (Array.isArray(value)) return 'array';
  return value === null ? 'null' : typeof value;
}

function clockTime(ms) {
  const date = new Date(ms);
  const pad = (n, width = 2) => String(n).padStart(width, '0');
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

// In the browser, the page runs itself; imported elsewhere (a test), it waits to be started.
if (typeof document !== 'undefined' && document.getElementById('viewer-app') !== null) {
  startApp({ document, window, location, fetch: (...args) => fetch(...args) });
}
