import { executionAsyncResource } from 'node:async_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { keepTickShape, keptTicks } from './tick-shape.js';

// V8's own test hooks: a full GC on demand, and whether two objects share a hidden class.
setFlagsFromString('--expose-gc');
setFlagsFromString('--allow-natives-syntax');
const fullGc = runInNewContext('gc') as () => void;
// eslint-disable-next-line @typescript-eslint/no-implied-eval -- natives syntax needs a fresh parse
const haveSameMap = new Function('a', 'b', 'return %HaveSameMap(a, b)') as (
  a: object,
  b: object,
) => boolean;

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

function nextTickRecord(): Promise<object> {
  return new Promise((resolve) => process.nextTick(() => resolve(executionAsyncResource())));
}

function symbolNames(record: object): string[] {
  return Object.getOwnPropertySymbols(record).map((symbol) => symbol.description ?? '');
}

describe('keepTickShape', () => {
  it('keeps the record Node queued for a nextTick: its async ids, callback and args', async () => {
    const before = keptTicks().length;
    keepTickShape();
    await turn();

    expect(keptTicks()).toHaveLength(before + 1);
    const record = keptTicks()[before]!;
    expect(symbolNames(record)).toEqual(
      expect.arrayContaining(['async_id_symbol', 'trigger_async_id_symbol']),
    );
    expect(typeof (record as { callback?: unknown }).callback).toBe('function');
    expect(Object.keys(record)).toEqual(expect.arrayContaining(['callback', 'args']));
  });

  it('makes later ticks share its hidden class, across full GCs with no tick waiting', async () => {
    keepTickShape();
    await turn();
    const kept = keptTicks()[keptTicks().length - 1]!;
    for (let i = 0; i < 6; i++) {
      await turn();
      fullGc();
    }

    const fresh = await nextTickRecord();

    expect(fresh).not.toBe(kept);
    expect(haveSameMap(fresh, kept)).toBe(true);
  });

  it('keeps a few records at most, however often it is called', async () => {
    for (let i = 0; i < 10; i++) keepTickShape();
    await turn();

    expect(keptTicks().length).toBe(4);
  });
});
