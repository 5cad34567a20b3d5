import { isValidSpanId, isValidTraceId } from '@opentelemetry/api';
import { PooledIdGenerator } from './id-generator.js';

/** A generator whose pool is filled by the test: each fill gets the next chunk of `bytes`. */
class ScriptedIdGenerator extends PooledIdGenerator {
  fills = 0;

  constructor(private readonly next: (pool: Buffer, fill: number) => void) {
    super();
  }

  protected override fill(pool: Buffer): void {
    this.next(pool, this.fills++);
  }
}

describe('PooledIdGenerator', () => {
  it('writes every byte value as its two lower-case hex digits, in pool order', () => {
    const generator = new ScriptedIdGenerator((pool) => {
      for (let i = 0; i < pool.length; i++) pool[i] = (i * 7 + 1) & 0xff;
    });
    const expected = Buffer.alloc(24 * 200);
    for (let i = 0; i < expected.length; i++) expected[i] = (i * 7 + 1) & 0xff;

    let at = 0;
    const seen = new Set<number>();
    while (at < expected.length) {
      const traceId = generator.generateTraceId();
      expect(traceId).toBe(expected.toString('hex', at, at + 16));
      at += 16;
      const spanId = generator.generateSpanId();
      expect(spanId).toBe(expected.toString('hex', at, at + 8));
      at += 8;
      for (let i = at - 24; i < at; i++) seen.add(expected[i]!);
    }
    expect(seen.size).toBe(256);
  });

  it('draws again when the bytes of an id are all zeros', () => {
    const generator = new ScriptedIdGenerator((pool) => {
      pool.fill(0);
      // Bytes 0-15 (a trace id) are zeros, 16-31 end in 0xab; 32-39 (a span id) are zeros,
      // 40-47 end in 0xcd.
      pool[31] = 0xab;
      pool[47] = 0xcd;
    });
    expect(generator.generateTraceId()).toBe(`${'0'.repeat(30)}ab`);
    expect(generator.generateSpanId()).toBe(`${'0'.repeat(14)}cd`);
  });

  it('refills the pool once it is used up, and never hands out a byte twice', () => {
    const generator = new ScriptedIdGenerator((pool, fill) => pool.fill(fill + 1));
    expect(generator.generateSpanId()).toBe('01'.repeat(8));
    expect(generator.fills).toBe(1);
    // 64 KiB: 8,192 span ids per fill.
    for (let i = 1; i < 8192; i++) generator.generateSpanId();
    expect(generator.fills).toBe(1);
    expect(generator.generateSpanId()).toBe('02'.repeat(8));
    expect(generator.fills).toBe(2);
    // A trace id that would not fit in what is left starts a new fill.
    for (let i = 1; i < 8191; i++) generator.generateSpanId();
    expect(generator.generateTraceId()).toBe('03'.repeat(16));
  });

  it('takes turns among four pools, each allocated once and then refilled in place', () => {
    const generator = new ScriptedIdGenerator((pool, fill) => pool.fill(fill + 1));
    generator.generateSpanId();
    const first = generator.pool;
    const firstWords = generator.words;
    expect(firstWords.fills).toBe(1);
    const seen = new Set([first]);
    for (let pool = 1; pool < 4; pool++) {
      for (let i = 0; i < 8192; i++) generator.generateSpanId();
      seen.add(generator.pool);
    }
    expect(seen.size).toBe(4);
    // The fifth fill is the first pool's second: the same buffer, with new bytes and a new count.
    for (let i = 0; i < 8192; i++) generator.generateSpanId();
    expect(generator.pool).toBe(first);
    expect(generator.words).toBe(firstWords);
    expect(firstWords.fills).toBe(2);
    expect(generator.fills).toBe(5);
    expect(generator.generateSpanId()).toBe('05'.repeat(8));
  });

  it('makes valid, distinct ids from random bytes', () => {
    const generator = new PooledIdGenerator();
    const traceIds = new Set<string>();
    const spanIds = new Set<string>();
    for (let i = 0; i < 20_000; i++) {
      const traceId = generator.generateTraceId();
      const spanId = generator.generateSpanId();
      expect(isValidTraceId(traceId) && /^[0-9a-f]{32}$/.test(traceId)).toBe(true);
      expect(isValidSpanId(spanId) && /^[0-9a-f]{16}$/.test(spanId)).toBe(true);
      traceIds.add(traceId);
      spanIds.add(spanId);
    }
    expect(traceIds.size).toBe(20_000);
    expect(spanIds.size).toBe(20_000);
  });
});
