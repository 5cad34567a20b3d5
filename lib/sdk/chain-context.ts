import {
  INVALID_SPAN_CONTEXT,
  ROOT_CONTEXT,
  trace,
  type Context,
  type Span,
} from '@opentelemetry/api';

/**
 * The key OpenTelemetry's `trace.setSpan` stores the active span under, learnt through the API
 * itself (it is private to `@opentelemetry/api`): a probe context records the key it is given.
 */
const SPAN_KEY: symbol = (() => {
  let key: symbol | undefined;
  const probe: Context = {
    getValue: () => undefined,
    setValue: (k) => {
      key = k;
      return probe;
    },
    deleteValue: () => probe,
  };
  trace.setSpan(probe, trace.wrapSpanContext(INVALID_SPAN_CONTEXT));
  if (key === undefined) throw new Error('nestjs-tracing: OpenTelemetry set no span key');
  return key;
})();

/** The key of a node that holds none ({@link EMPTY_CONTEXT}). */
const NO_KEY = Symbol('nestjs-tracing.no-key');

/** Past this many nodes, a new node first folds its parent's chain into a flat context. */
const MAX_DEPTH = 32;

/**
 * A context as a chain of nodes, each holding one key and value and pointing at the context it
 * was derived from. OpenTelemetry's own context (`ROOT_CONTEXT.setValue`) copies its whole `Map`
 * and makes three closures for every value set: with a span started per request, per message
 * and per `@Trace` method, that was ~1k instructions a span on a traced TCP server (callgrind),
 * three times a message. Here `setValue` makes one small object.
 *
 * A lookup walks the chain from the newest node, so the span (set last) is found first. Nodes
 * below a context of another kind (one a user or another library made) end at it: keys not in
 * the chain are looked up there. A chain never grows past {@link MAX_DEPTH} nodes: a value set
 * on a longer one first folds the chain into a flat context of OpenTelemetry's.
 *
 * `deleteValue` sets `undefined`, which reads back the same as a deleted key. A chain keeps the
 * nodes it was derived from, and so their values, for as long as it lives (a value set again
 * stays behind the newer one), where OpenTelemetry's copy keeps only what it can still read:
 * at most {@link MAX_DEPTH} nodes, in practice the spans above it in the same request.
 */
class ChainContext implements Context {
  private constructor(
    private readonly parent: ChainContext | undefined,
    /** Where keys not in the chain are looked up; `undefined` for none (the root context). */
    private readonly base: Context | undefined,
    private readonly key: symbol,
    private readonly value: unknown,
    private readonly depth: number,
  ) {}

  getValue(key: symbol): unknown {
    if (this.key === key) return this.value;
    for (let node = this.parent; node !== undefined; node = node.parent) {
      if (node.key === key) return node.value;
    }
    return this.base?.getValue(key);
  }

  setValue(key: symbol, value: unknown): Context {
    return ChainContext.node(this, key, value);
  }

  deleteValue(key: symbol): Context {
    return ChainContext.node(this, key, undefined);
  }

  /** `chain` as one of OpenTelemetry's contexts: the chain's keys set on its base, oldest first. */
  private static fold(chain: ChainContext): Context {
    const seen = new Set<symbol>();
    const entries: Array<[symbol, unknown]> = [];
    for (let node: ChainContext | undefined = chain; node !== undefined; node = node.parent) {
      if (node.key === NO_KEY || seen.has(node.key)) continue;
      seen.add(node.key);
      entries.push([node.key, node.value]);
    }
    let flat = chain.base ?? ROOT_CONTEXT;
    for (let i = entries.length - 1; i >= 0; i--) {
      const [key, value] = entries[i]!;
      flat = value === undefined ? flat.deleteValue(key) : flat.setValue(key, value);
    }
    return flat;
  }

  /** `parent` with `key` set to `value`. */
  static node(parent: Context, key: symbol, value: unknown): ChainContext {
    if (!(parent instanceof ChainContext)) {
      return new ChainContext(
        undefined,
        parent === ROOT_CONTEXT ? undefined : parent,
        key,
        value,
        1,
      );
    }
    if (parent.depth >= MAX_DEPTH) return ChainContext.node(ChainContext.fold(parent), key, value);
    return new ChainContext(parent, parent.base, key, value, parent.depth + 1);
  }
}

/** The empty chain over the root context: what a server extracts an inbound context into. */
export const EMPTY_CONTEXT: Context = ChainContext.node(ROOT_CONTEXT, NO_KEY, undefined);

/** `trace.setSpan(parent, span)`, as one chain node. */
export function withSpan(parent: Context, span: Span): Context {
  return ChainContext.node(parent, SPAN_KEY, span);
}
