import { randomFillSync } from 'node:crypto';
import type { IdGenerator } from '@opentelemetry/sdk-trace-base';

/**
 * Random bytes drawn from the system's generator at once: 8,192 span ids' worth (2,730 root
 * spans' trace and span ids). A draw costs a few microseconds whatever its size, 64 KiB about
 * four times a 2 KiB one.
 */
const POOL_SIZE = 65536;

/** The two lower-case hex digits of every byte, as character codes: [high, low] at 2 × byte. */
const HEX_CODES = new Uint8Array(512);
for (let b = 0; b < 256; b++) {
  const hex = b.toString(16).padStart(2, '0');
  HEX_CODES[2 * b] = hex.charCodeAt(0);
  HEX_CODES[2 * b + 1] = hex.charCodeAt(1);
}

/**
 * A pool's bytes as 32-bit words in the platform's byte order, with the number of times the pool
 * was filled: an id drawn from it is still there while `fills` has not moved.
 */
export type PoolWords = Uint32Array & { fills: number };

/**
 * How many pools take turns. Each is allocated once and then refilled in place: with a fresh
 * 64 KiB `ArrayBuffer` every few thousand spans, a traced TCP client's scavenges each promoted
 * ~1.3 MB, ~12% of its CPU (see bench/NOTES.md).
 */
const POOLS = 4;

/**
 * Trace and span ids from a pool of cryptographically random bytes (OpenTelemetry's
 * `RandomIdGenerator` draws them from `Math.random`), written as lower-case hex in one string
 * allocation each, without a call into Node's buffer encoder per id. An id is never all zeros
 * (W3C Trace Context makes that id invalid): an all-zero draw is drawn again.
 */
export class PooledIdGenerator implements IdGenerator {
  /**
   * The pool the last id was drawn from, at {@link lastAt}: its bytes are the id's until the pool
   * is filled again, four pools later. The tracer keeps the pool and its {@link PoolWords.fills}
   * with a span's ids, so the encoder copies the bytes while they are the id's and decodes the
   * hex otherwise.
   */
  pool: Buffer = Buffer.alloc(0);
  /** {@link pool} as words (ids start at a multiple of 8). */
  words = Object.assign(new Uint32Array(0), { fills: 0 }) as PoolWords;
  /** Where the last id's bytes start in {@link pool}. */
  lastAt = 0;
  private readonly pools: Buffer[] = [];
  private readonly poolWords: PoolWords[] = [];
  private turn = -1;

  /** Where the last id starts in {@link words}. */
  get lastWord(): number {
    return this.lastAt >>> 2;
  }
  private offset = POOL_SIZE;

  generateTraceId(): string {
    const at = this.take(16);
    const p = this.pool;
    if ((word(p, at) | word(p, at + 4) | word(p, at + 8) | word(p, at + 12)) === 0) {
      return this.generateTraceId();
    }
    return hex16(p, at);
  }

  generateSpanId(): string {
    const at = this.take(8);
    const p = this.pool;
    if ((word(p, at) | word(p, at + 4)) === 0) return this.generateSpanId();
    return hex8(p, at);
  }

  /** Fills a new pool with random bytes. */
  protected fill(pool: Buffer): void {
    randomFillSync(pool);
  }

  /** The offset of `n` fresh bytes in the pool, the next pool (refilled) when it runs out. */
  private take(n: number): number {
    let at = this.offset;
    if (at + n > POOL_SIZE) {
      this.turn = (this.turn + 1) % POOLS;
      let pool = this.pools[this.turn];
      let words = this.poolWords[this.turn];
      if (pool === undefined || words === undefined) {
        pool = Buffer.allocUnsafeSlow(POOL_SIZE);
        words = Object.assign(new Uint32Array(pool.buffer, pool.byteOffset, POOL_SIZE / 4), {
          fills: 0,
        });
        this.pools[this.turn] = pool;
        this.poolWords[this.turn] = words;
      }
      // Counted before the bytes change: an id read from them from now on is not the old one.
      words.fills++;
      this.fill(pool);
      this.pool = pool;
      this.words = words;
      at = 0;
    }
    this.offset = at + n;
    this.lastAt = at;
    return at;
  }
}

/** Four bytes or-ed together: zero only when all four are. */
function word(p: Buffer, at: number): number {
  return p[at]! | p[at + 1]! | p[at + 2]! | p[at + 3]!;
}

// One String.fromCharCode call with every digit as an argument makes one flat string: no
// intermediate strings (as `+` of two-digit strings makes), no call into Node's encoder, no
// array (`apply` with one is three times slower). Hence two functions written out, one per id
// length: a trace id as two span ids joined by `+` takes ~100 ns more (a rope string, flattened
// when it is first read).

/** Eight bytes from `at` as sixteen hex digits. */
function hex8(p: Buffer, at: number): string {
  const h = HEX_CODES;
  const b0 = 2 * p[at]!;
  const b1 = 2 * p[at + 1]!;
  const b2 = 2 * p[at + 2]!;
  const b3 = 2 * p[at + 3]!;
  const b4 = 2 * p[at + 4]!;
  const b5 = 2 * p[at + 5]!;
  const b6 = 2 * p[at + 6]!;
  const b7 = 2 * p[at + 7]!;
  return String.fromCharCode(
    h[b0]!,
    h[b0 + 1]!,
    h[b1]!,
    h[b1 + 1]!,
    h[b2]!,
    h[b2 + 1]!,
    h[b3]!,
    h[b3 + 1]!,
    h[b4]!,
    h[b4 + 1]!,
    h[b5]!,
    h[b5 + 1]!,
    h[b6]!,
    h[b6 + 1]!,
    h[b7]!,
    h[b7 + 1]!,
  );
}

/** Sixteen bytes from `at` as thirty-two hex digits. */
function hex16(p: Buffer, at: number): string {
  const h = HEX_CODES;
  const b0 = 2 * p[at]!;
  const b1 = 2 * p[at + 1]!;
  const b2 = 2 * p[at + 2]!;
  const b3 = 2 * p[at + 3]!;
  const b4 = 2 * p[at + 4]!;
  const b5 = 2 * p[at + 5]!;
  const b6 = 2 * p[at + 6]!;
  const b7 = 2 * p[at + 7]!;
  const b8 = 2 * p[at + 8]!;
  const b9 = 2 * p[at + 9]!;
  const b10 = 2 * p[at + 10]!;
  const b11 = 2 * p[at + 11]!;
  const b12 = 2 * p[at + 12]!;
  const b13 = 2 * p[at + 13]!;
  const b14 = 2 * p[at + 14]!;
  const b15 = 2 * p[at + 15]!;
  return String.fromCharCode(
    h[b0]!,
    h[b0 + 1]!,
    h[b1]!,
    h[b1 + 1]!,
    h[b2]!,
    h[b2 + 1]!,
    h[b3]!,
    h[b3 + 1]!,
    h[b4]!,
    h[b4 + 1]!,
    h[b5]!,
    h[b5 + 1]!,
    h[b6]!,
    h[b6 + 1]!,
    h[b7]!,
    h[b7 + 1]!,
    h[b8]!,
    h[b8 + 1]!,
    h[b9]!,
    h[b9 + 1]!,
    h[b10]!,
    h[b10 + 1]!,
    h[b11]!,
    h[b11 + 1]!,
    h[b12]!,
    h[b12 + 1]!,
    h[b13]!,
    h[b13 + 1]!,
    h[b14]!,
    h[b14 + 1]!,
    h[b15]!,
    h[b15 + 1]!,
  );
}
