/**
 * Just enough of the DOM for the viewer's page to run in Node (no browser on the machine, and no
 * DOM package among the dev dependencies): elements, text, attributes, listeners, and
 * `querySelector(All)` for the attribute selectors the page's test hooks use. Elements that the
 * page looks up by id are made on first use, and the ids are recorded, so that a spec can check
 * that index.html really has them.
 */

type Listener = (event: FakeEvent) => void;

export class FakeEvent {
  defaultPrevented = false;
  constructor(
    readonly type: string,
    init: Record<string, unknown> = {},
  ) {
    Object.assign(this, init);
  }
  preventDefault(): void {
    this.defaultPrevented = true;
  }
}

export class FakeEventTarget {
  private readonly listeners = new Map<string, Listener[]>();
  addEventListener(type: string, listener: Listener): void {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), listener]);
  }
  removeEventListener(type: string, listener: Listener): void {
    this.listeners.set(
      type,
      (this.listeners.get(type) ?? []).filter((l) => l !== listener),
    );
  }
  dispatchEvent(event: FakeEvent): void {
    for (const listener of this.listeners.get(event.type) ?? []) listener(event);
  }
  listenerCount(type: string): number {
    return this.listeners.get(type)?.length ?? 0;
  }
}

export class FakeText {
  parent: FakeElement | undefined;
  constructor(public data: string) {}
  get textContent(): string {
    return this.data;
  }
}

export class FakeElement extends FakeEventTarget {
  readonly attributes = new Map<string, string>();
  childNodes: (FakeElement | FakeText)[] = [];
  parent: FakeElement | undefined;
  hidden = false;
  readonly style = {
    values: new Map<string, string>(),
    setProperty(name: string, value: string) {
      this.values.set(name, value);
    },
  };
  readonly classList = {
    toggle: (name: string, force?: boolean) => {
      const classes = new Set(this.className.split(/\s+/).filter(Boolean));
      const on = force ?? !classes.has(name);
      if (on) classes.add(name);
      else classes.delete(name);
      this.className = [...classes].join(' ');
      return on;
    },
    contains: (name: string) => this.className.split(/\s+/).includes(name),
  };

  constructor(
    readonly tagName: string,
    readonly namespaceURI: string,
  ) {
    super();
  }

  get children(): FakeElement[] {
    return this.childNodes.filter((n): n is FakeElement => n instanceof FakeElement);
  }
  get className(): string {
    return this.attributes.get('class') ?? '';
  }
  set className(value: string) {
    this.attributes.set('class', value);
  }
  get textContent(): string {
    return this.childNodes.map((n) => n.textContent).join('');
  }
  set textContent(value: string) {
    this.replaceChildren(value);
  }

  setAttribute(name: string, value: unknown): void {
    this.attributes.set(name, String(value));
  }
  getAttribute(name: string): string | null {
    return this.attributes.get(name) ?? null;
  }
  hasAttribute(name: string): boolean {
    return this.attributes.has(name);
  }

  append(...nodes: (FakeElement | FakeText | string)[]): void {
    for (const node of nodes) {
      const child = typeof node === 'string' ? new FakeText(node) : node;
      if (child.parent)
        child.parent.childNodes = child.parent.childNodes.filter((n) => n !== child);
      child.parent = this;
      this.childNodes.push(child);
    }
  }
  replaceChildren(...nodes: (FakeElement | FakeText | string)[]): void {
    for (const child of this.childNodes) child.parent = undefined;
    this.childNodes = [];
    this.append(...nodes);
  }

  click(): void {
    this.dispatchEvent(new FakeEvent('click'));
  }

  /** Every element below this one, in document order. */
  descendants(): FakeElement[] {
    return this.children.flatMap((child) => [child, ...child.descendants()]);
  }
  querySelectorAll(selector: string): FakeElement[] {
    const match = compile(selector);
    return this.descendants().filter(match);
  }
  querySelector(selector: string): FakeElement | null {
    return this.querySelectorAll(selector)[0] ?? null;
  }
}

/** `tag`, `[name]`, `[name="value"]` and their compounds, e.g. `tr[data-testid="trace-row"]`. */
function compile(selector: string): (element: FakeElement) => boolean {
  const parts = /^([a-z][a-z0-9-]*)?((?:\[[^\]]+\])*)$/i.exec(selector.trim());
  if (!parts) throw new Error(`fake DOM: unsupported selector ${selector}`);
  const [, tag, attributeText = ''] = parts;
  const attributes = [...attributeText.matchAll(/\[([^=\]]+)(?:="([^"]*)")?\]/g)].map(
    ([, name, value]) => [name!, value] as const,
  );
  return (element) =>
    (tag === undefined || element.tagName.toLowerCase() === tag.toLowerCase()) &&
    attributes.every(([name, value]) =>
      value === undefined ? element.hasAttribute(name) : element.getAttribute(name) === value,
    );
}

export class FakeDocument {
  readonly body = new FakeElement('body', HTML_NS);
  /** The ids the page asked for. */
  readonly requestedIds = new Set<string>();

  getElementById(id: string): FakeElement {
    this.requestedIds.add(id);
    const found = this.body.descendants().find((e) => e.getAttribute('id') === id);
    if (found) return found;
    const element = new FakeElement('div', HTML_NS);
    element.setAttribute('id', id);
    this.body.append(element);
    return element;
  }
  createElement(tag: string): FakeElement {
    return new FakeElement(tag, HTML_NS);
  }
  createElementNS(namespace: string, tag: string): FakeElement {
    return new FakeElement(tag, namespace);
  }
  querySelectorAll(selector: string): FakeElement[] {
    return this.body.querySelectorAll(selector);
  }
  querySelector(selector: string): FakeElement | null {
    return this.body.querySelector(selector);
  }
}

const HTML_NS = 'http://www.w3.org/1999/xhtml';

/** `location` with the one behaviour the page relies on: a new hash fires hashchange, later. */
export class FakeLocation {
  #hash = '';
  constructor(
    readonly origin: string,
    private readonly window: FakeEventTarget,
  ) {}
  get hash(): string {
    return this.#hash;
  }
  set hash(value: string) {
    const next = value === '' || value === '#' ? '' : value.startsWith('#') ? value : `#${value}`;
    if (next === this.#hash) return;
    this.#hash = next;
    setTimeout(() => this.window.dispatchEvent(new FakeEvent('hashchange')), 0);
  }
}
