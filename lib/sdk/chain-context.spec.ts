import { ROOT_CONTEXT, createContextKey, trace, type Context } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { EMPTY_CONTEXT, withSpan } from './chain-context.js';

const KEYS = Array.from({ length: 6 }, (_, i) => createContextKey(`chain-context.spec ${i}`));
const span = (spanId: string) =>
  trace.wrapSpanContext({ traceId: '0af7651916cd43dd8448eb211c80319c', spanId, traceFlags: 1 });

/** Every key's value, as a context reads it. */
const read = (ctx: Context): unknown[] => KEYS.map((key) => ctx.getValue(key));

/** A small deterministic generator, so that a failing sequence can be replayed. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    return state / 0x80000000;
  };
}

describe('ChainContext', () => {
  it('sets the span as trace.setSpan does, and nothing else', () => {
    const s = span('b7ad6b7169203331');
    const ctx = withSpan(ROOT_CONTEXT, s);
    expect(trace.getSpan(ctx)).toBe(s);
    expect(read(ctx)).toEqual(read(ROOT_CONTEXT));
    expect(trace.getSpan(withSpan(ctx, span('00f067aa0ba902b7')))?.spanContext().spanId).toBe(
      '00f067aa0ba902b7',
    );
    expect(trace.getSpan(ctx)).toBe(s);
  });

  it("reads like OpenTelemetry's context through any sequence of sets and deletes, past the fold", () => {
    for (let seed = 1; seed <= 20; seed++) {
      const next = random(seed);
      let ours: Context = EMPTY_CONTEXT;
      let theirs: Context = ROOT_CONTEXT;
      const kept: Array<[Context, Context]> = [];
      // 200 steps: the chain folds into a flat context several times on the way.
      for (let step = 0; step < 200; step++) {
        const key = KEYS[Math.floor(next() * KEYS.length)]!;
        if (next() < 0.2) {
          ours = ours.deleteValue(key);
          theirs = theirs.deleteValue(key);
        } else {
          ours = ours.setValue(key, step);
          theirs = theirs.setValue(key, step);
        }
        expect(read(ours)).toEqual(read(theirs));
        if (step % 17 === 0) kept.push([ours, theirs]);
      }
      // Contexts are immutable: earlier ones still read what they read then.
      for (const [a, b] of kept) expect(read(a)).toEqual(read(b));
    }
  });

  it('reads through to a context of another kind below it, and can hide its values', () => {
    const base = ROOT_CONTEXT.setValue(KEYS[0]!, 'base 0').setValue(KEYS[1]!, 'base 1');
    const ctx = withSpan(base, span('b7ad6b7169203331')).setValue(KEYS[1]!, 'chain 1');
    expect(read(ctx).slice(0, 3)).toEqual(['base 0', 'chain 1', undefined]);
    const deleted = ctx.deleteValue(KEYS[0]!);
    expect(deleted.getValue(KEYS[0]!)).toBeUndefined();
    expect(ctx.getValue(KEYS[0]!)).toBe('base 0');
    // Folded after 32 nodes: the deletion and the base's other values survive it.
    let long = deleted;
    for (let i = 0; i < 40; i++) long = long.setValue(KEYS[2]!, i);
    expect(read(long).slice(0, 3)).toEqual([undefined, 'chain 1', 39]);
    expect(trace.getSpan(long)?.spanContext().spanId).toBe('b7ad6b7169203331');
  });

  it('is the root context when empty, and takes what a propagator extracts', () => {
    expect(read(EMPTY_CONTEXT)).toEqual(read(ROOT_CONTEXT));
    expect(trace.getSpan(EMPTY_CONTEXT)).toBeUndefined();
    const propagator = new W3CTraceContextPropagator();
    const extracted = propagator.extract(
      EMPTY_CONTEXT,
      { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' },
      { get: (carrier, key) => carrier[key], keys: (carrier) => Object.keys(carrier) },
    );
    expect(trace.getSpanContext(extracted)).toMatchObject({
      traceId: '0af7651916cd43dd8448eb211c80319c',
      spanId: 'b7ad6b7169203331',
      isRemote: true,
    });
  });
});
