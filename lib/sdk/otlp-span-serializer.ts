import type { Attributes, AttributeValue, HrTime, Link, SpanContext } from '@opentelemetry/api';
import type { ReadableSpan, TimedEvent } from '@opentelemetry/sdk-trace-base';
import { Ids } from './span.js';

/**
 * Encodes an OTLP `ExportTraceServiceRequest` (protobuf) from finished SDK spans: the same bytes
 * as OpenTelemetry's `ProtobufTraceSerializer`, field for field and in the same order, in about a
 * third of its time (`npm run bench`, and the byte-for-byte tests against it).
 *
 * Where the time goes in OpenTelemetry's writer, and what is done here instead:
 * - every message is walked twice, once to estimate the buffer size and once to write it, and
 *   every string three times (UTF-8 length, ASCII check, copy): here one pass into a buffer kept
 *   from the previous batch, and one pass per ASCII string (a non-ASCII one is re-encoded by
 *   Node's UTF-8 writer);
 * - an attribute key is encoded for every span: here the encoded key of each attribute name is
 *   kept (names are few: semantic conventions, configured headers), and so is the whole KeyValue
 *   of a value that repeats from span to span;
 * - lengths are reserved as one byte and moved when longer: here a span reserves two bytes (most
 *   spans are 128 bytes to 16 KiB), and a string attribute's lengths are computed, not reserved;
 * - trace and span ids are decoded from hex into a new array each: here the ids the package's
 *   generator drew are copied from where it drew them, and others are decoded into the buffer.
 *
 * Only the encoding is ours: the exporter around it (transport, retries, compression,
 * environment configuration, response parsing) is OpenTelemetry's OTLP/HTTP exporter.
 */

const MIN_INT64 = -(2 ** 63);
const MAX_INT64 = 2 ** 63;
/** Encoded attribute names kept at most: names are few in practice, this bounds a pathological app. */
const MAX_CACHED_KEYS = 2048;
/** Span flags (OTLP `SpanFlags`): the remote bit is known, and whether the parent is remote. */
const FLAGS_HAS_IS_REMOTE = 0x100;
const FLAGS_IS_REMOTE = 0x200;
/** The longest KeyValue (in bytes) kept for a repeated attribute value. */
const MAX_KEPT_KEY_VALUE = 256;
/** Strings at least this long are written by Node's encoder, shorter ones by the loop. */
const NATIVE_STRING_LENGTH = 64;

function varintSize(v: number): number {
  if (v < 0x80) return 1;
  if (v < 0x4000) return 2;
  if (v < 0x200000) return 3;
  if (v < 0x10000000) return 4;
  return 5;
}

function hexNibble(code: number): number {
  if (code >= 48 && code <= 57) return code - 48; // 0-9
  if (code >= 97 && code <= 102) return code - 87; // a-f
  return code - 55; // A-F (anything else decodes as OpenTelemetry's decoder does)
}

/** {@link hexNibble} of every ASCII code, looked up: ids are most of a span's characters. */
const HEX_NIBBLES = Int32Array.from({ length: 128 }, (_, code) => hexNibble(code));

/** An id a writer wrote last at one place, as hex and as bytes. */
class LastId {
  hex: string | undefined = undefined;
  readonly bytes: Uint8Array;

  constructor(length: number) {
    this.bytes = new Uint8Array(length);
  }
}

/** Whether this platform's typed arrays are little-endian (as a Uint32Array view reads bytes). */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

const viewOf = (buf: Buffer): DataView => new DataView(buf.buffer, buf.byteOffset, buf.length);

/** A growable byte buffer with the protobuf primitives the trace messages need. */
class Writer {
  buf: Buffer;
  /** {@link buf} as a DataView, for whole words. */
  private view: DataView;
  pos = 0;

  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
    this.view = viewOf(this.buf);
  }

  ensure(n: number): void {
    if (this.pos + n > this.buf.length) this.grow(n);
  }

  private grow(n: number): void {
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
    this.view = viewOf(next);
  }

  /** A varint below 2^32 (tags, lengths, counts); the caller has ensured 5 bytes. */
  uint32(v: number): void {
    const buf = this.buf;
    let pos = this.pos;
    while (v > 0x7f) {
      buf[pos++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    buf[pos++] = v;
    this.pos = pos;
  }

  /** Any integer as protobuf int64 (negative ones in two's complement, ten bytes). */
  int64(value: number): void {
    this.ensure(10);
    if (value >= 0 && value <= 0xffffffff) {
      this.uint32(value >>> 0);
      return;
    }
    let low: number;
    let high: number;
    if (value >= 0) {
      low = value >>> 0;
      high = (value / 0x100000000) >>> 0;
    } else {
      const abs = Math.abs(value);
      low = ~(abs >>> 0) >>> 0;
      high = ~((abs / 0x100000000) >>> 0) >>> 0;
      low = (low + 1) >>> 0;
      if (low === 0) high = (high + 1) >>> 0;
    }
    const buf = this.buf;
    while (high > 0 || low > 0x7f) {
      buf[this.pos++] = (low & 0x7f) | 0x80;
      low = ((low >>> 7) | (high << 25)) >>> 0;
      high >>>= 7;
    }
    buf[this.pos++] = low & 0x7f;
  }

  /** Four bytes, little-endian; the caller has ensured the room. */
  le32(v: number): void {
    const buf = this.buf;
    let pos = this.pos;
    buf[pos++] = v;
    buf[pos++] = v >>> 8;
    buf[pos++] = v >>> 16;
    buf[pos++] = v >>> 24;
    this.pos = pos;
  }

  fixed32(v: number): void {
    this.ensure(4);
    this.le32(v >>> 0);
  }

  double(v: number): void {
    this.ensure(8);
    this.buf.writeDoubleLE(v, this.pos);
    this.pos += 8;
  }

  /** An HrTime as fixed64 nanoseconds, split so that no product leaves the safe-integer range. */
  time(t: HrTime): void {
    this.ensure(8);
    const seconds = t[0];
    const low16 = (seconds & 0xffff) * 1e9;
    const upper = ((seconds / 0x10000) >>> 0) * 1e9;
    const sumLow = (low16 >>> 0) + (((upper & 0xffff) * 0x10000) >>> 0) + t[1];
    const low = sumLow >>> 0;
    const high =
      (Math.floor(low16 / 0x100000000) +
        ((upper / 0x10000) >>> 0) +
        Math.floor(sumLow / 0x100000000)) >>>
      0;
    this.le32(low);
    this.le32(high);
  }

  /** A length-delimited string (tag written by the caller). */
  string(s: string): void {
    const n = s.length;
    this.ensure(n * 3 + 5);
    if (n < NATIVE_STRING_LENGTH) {
      const start = this.pos;
      const buf = this.buf;
      this.uint32(n);
      let pos = this.pos;
      for (let i = 0; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c > 0x7f) {
          this.pos = start;
          this.utf8(s);
          return;
        }
        buf[pos++] = c;
      }
      this.pos = pos;
      return;
    }
    this.utf8(s);
  }

  private utf8(s: string): void {
    const bytes = Buffer.byteLength(s, 'utf8');
    this.ensure(bytes + 5);
    this.uint32(bytes);
    this.pos += this.buf.write(s, this.pos, bytes, 'utf8');
  }

  /**
   * Bytes as they are (an encoded key or KeyValue); the caller has ensured the room. `set`, not a
   * byte loop: in the traced apps a loop copying into the buffer cost 25–50 instructions a byte
   * (callgrind), `set` ~170 a call.
   */
  raw(b: Uint8Array): void {
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  bytes(b: Uint8Array): void {
    this.ensure(b.length + 5);
    this.uint32(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  /** Hex id as bytes, length-delimited (tag written by the caller). */
  hexId(hex: string): void {
    const n = hex.length >>> 1;
    this.ensure(n + 5);
    this.uint32(n);
    const buf = this.buf;
    let pos = this.pos;
    for (let i = 0; i < hex.length - 1; i += 2) {
      const hi = hex.charCodeAt(i);
      const lo = hex.charCodeAt(i + 1);
      buf[pos++] =
        ((hi < 128 ? HEX_NIBBLES[hi]! : hexNibble(hi)) << 4) |
        (lo < 128 ? HEX_NIBBLES[lo]! : hexNibble(lo));
    }
    this.pos = pos;
  }

  /** A field's tag (every field here but the span's `flags` is below 16: one byte). */
  tag(field: number, wire: number): void {
    this.ensure(1);
    this.buf[this.pos++] = (field << 3) | wire;
  }

  /** A varint field below 2^32 (counts, enums). */
  varintField(field: number, v: number): void {
    this.tag(field, 0);
    this.ensure(5);
    this.uint32(v);
  }

  stringField(field: number, s: string): void {
    this.tag(field, 2);
    this.string(s);
  }

  idField(field: number, hex: string): void {
    this.tag(field, 2);
    this.hexId(hex);
  }

  // The last trace id and the last parent span id decoded from hex, with their bytes (ids the
  // package's generator drew are copied from its pool instead). The spans of a request share one
  // trace id, and a span is written just after its last child, whose parent id is that span's id:
  // those ids are copied rather than decoded from hex again.
  private readonly lastTrace = new LastId(16);
  private readonly lastParent = new LastId(8);

  /** trace_id (field 1 of a Span and of a Link). */
  traceIdField(hex: string): void {
    this.rememberedIdField(1, hex, this.lastTrace);
  }

  /** span_id (field 2 of a Span and of a Link). */
  spanIdField(hex: string): void {
    if (hex === this.lastParent.hex) this.copiedIdField(2, this.lastParent.bytes);
    else this.idField(2, hex);
  }

  /** parent_span_id (field 4 of a Span). */
  parentIdField(hex: string): void {
    this.rememberedIdField(4, hex, this.lastParent);
  }

  /** An id field, copied when it is `last`'s id; one decoded at `last`'s length is kept there. */
  private rememberedIdField(field: number, hex: string, last: LastId): void {
    if (hex === last.hex) {
      this.copiedIdField(field, last.bytes);
      return;
    }
    this.idField(field, hex);
    if (hex.length === last.bytes.length * 2) {
      last.hex = hex;
      this.keepWritten(last.bytes);
    }
  }

  /**
   * An id field whose bytes are `words` 32-bit words from `at` in `pool` (ids the package's
   * generator drew): a word at a time, through a DataView in the platform's byte order.
   */
  pooledIdField(field: number, pool: Uint32Array, at: number, words: number): void {
    this.ensure(4 * words + 2);
    const buf = this.buf;
    let pos = this.pos;
    buf[pos++] = (field << 3) | 2;
    buf[pos++] = 4 * words;
    const view = this.view;
    for (let i = 0; i < words; i++) view.setUint32(pos + 4 * i, pool[at + i]!, LITTLE_ENDIAN);
    this.pos = pos + 4 * words;
  }

  private copiedIdField(field: number, bytes: Uint8Array): void {
    const n = bytes.length;
    this.ensure(n + 2);
    const buf = this.buf;
    let pos = this.pos;
    buf[pos++] = (field << 3) | 2;
    buf[pos++] = n;
    buf.set(bytes, pos);
    this.pos = pos + n;
  }

  /** Copies the bytes just written into `into` (as many as it holds). */
  private keepWritten(into: Uint8Array): void {
    const buf = this.buf;
    const from = this.pos - into.length;
    for (let i = 0; i < into.length; i++) into[i] = buf[from + i]!;
  }

  /** Reserves `reserve` bytes for a length; returns where the message starts. */
  open(reserve: number): number {
    this.ensure(reserve);
    this.pos += reserve;
    return this.pos;
  }

  /** Writes the length of the message begun at `start`, moving it when the reserve was wrong. */
  close(start: number, reserve: number): void {
    const length = this.pos - start;
    const size = varintSize(length);
    const at = start - reserve;
    if (size !== reserve) {
      this.ensure(size - reserve);
      this.buf.copyWithin(at + size, start, this.pos);
      this.pos += size - reserve;
    }
    const end = this.pos;
    this.pos = at;
    this.uint32(length);
    this.pos = end;
  }
}

/** `tag` for a field number and wire type, as one byte (every field here is below 16). */
const tag = (field: number, wire: number): number => (field << 3) | wire;

/**
 * What is kept of one attribute name: its encoded key field (tag, length, UTF-8 bytes), and the
 * last value written under it twice in a row, with the bytes of that whole KeyValue.
 */
class KeyEntry {
  /** A primitive value whose KeyValue is `kv`; undefined when none is kept. */
  value: unknown = undefined;
  /** The KeyValue message of `value` (its length, key and value fields; not the field's tag). */
  kv: Uint8Array | undefined = undefined;
  /** The value written last, when it is not `value` (a small primitive, as `value`). */
  seen: unknown = undefined;

  constructor(readonly key: Buffer) {}
}

const keyCache = new Map<string, KeyEntry>();

function keyEntry(key: string): KeyEntry {
  let entry = keyCache.get(key);
  if (entry === undefined) {
    const bytes = Buffer.from(key, 'utf8');
    const encoded = Buffer.allocUnsafe(1 + varintSize(bytes.length) + bytes.length);
    encoded[0] = tag(1, 2);
    const w = new Writer(encoded.length);
    w.uint32(bytes.length);
    w.buf.copy(encoded, 1, 0, w.pos);
    bytes.copy(encoded, 1 + w.pos);
    entry = new KeyEntry(encoded);
    if (keyCache.size < MAX_CACHED_KEYS) keyCache.set(key, entry);
  }
  return entry;
}

/** Whether `s` is all ASCII, so that its UTF-8 length is its length. */
function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false;
  return true;
}

function writeAnyValue(w: Writer, value: unknown): void {
  const t = typeof value;
  if (t === 'string') w.stringField(1, value as string);
  else if (t === 'boolean') w.varintField(2, value ? 1 : 0);
  else if (t === 'number') {
    const n = value as number;
    if (Number.isInteger(n) && n >= MIN_INT64 && n < MAX_INT64) {
      w.tag(3, 0);
      w.int64(n);
    } else {
      w.tag(4, 1);
      w.double(n);
    }
  } else if (value instanceof Uint8Array) {
    w.tag(7, 2);
    w.bytes(value);
  } else if (Array.isArray(value)) {
    w.tag(5, 2);
    const array = w.open(1);
    for (const item of value) {
      w.tag(1, 2);
      const start = w.open(1);
      writeAnyValue(w, item);
      w.close(start, 1);
    }
    w.close(array, 1);
  } else if (t === 'object' && value !== null) {
    w.tag(6, 2);
    const list = w.open(1);
    const record = value as Record<string, unknown>;
    for (const k in record) {
      if (!Object.prototype.hasOwnProperty.call(record, k)) continue;
      w.tag(1, 2);
      const kv = w.open(1);
      w.stringField(1, k);
      w.tag(2, 2);
      const v = w.open(1);
      writeAnyValue(w, record[k]);
      w.close(v, 1);
      w.close(kv, 1);
    }
    w.close(list, 1);
  }
  // Anything else (undefined, null, a function) is an empty AnyValue, as in OpenTelemetry's.
}

/**
 * Repeated KeyValue at `field`: one entry per own enumerable key, in key order. Most attributes
 * of a service's spans repeat from span to span (method, route, system, address, port): a
 * primitive value written under the same name twice in a row is kept with its encoded KeyValue,
 * which is then copied for as long as the value stays the same.
 */
function writeAttributes(w: Writer, attributes: Attributes, field: number): void {
  const fieldTag = tag(field, 2);
  for (const key in attributes) {
    if (!Object.prototype.hasOwnProperty.call(attributes, key)) continue;
    const value: AttributeValue | undefined = attributes[key];
    const entry = keyEntry(key);
    const kept = entry.kv;
    if (kept !== undefined && value === entry.value) {
      w.ensure(kept.length + 1);
      w.buf[w.pos++] = fieldTag;
      w.raw(kept);
      continue;
    }
    const at = w.pos;
    writeKeyValue(w, fieldTag, entry.key, value);
    // Only small primitives are remembered at all: no large value is held on to.
    if (!isKeptValue(value) || w.pos - at > MAX_KEPT_KEY_VALUE) continue;
    if (value !== entry.seen) {
      entry.seen = value;
    } else {
      entry.value = value;
      entry.kv = new Uint8Array(w.buf.subarray(at + 1, w.pos)); // a copy: the buffer is reused
      entry.seen = undefined;
    }
  }
}

/** Whether a value's KeyValue may be kept: a primitive, compared by `===` (NaN never matches). */
function isKeptValue(value: unknown): boolean {
  const t = typeof value;
  return t === 'string' || t === 'number' || t === 'boolean';
}

/** One KeyValue, its field's tag first. */
function writeKeyValue(w: Writer, fieldTag: number, k: Buffer, value: unknown): void {
  if (typeof value === 'string') {
    // KeyValue { key, value: AnyValue { string_value } }: if the value is ASCII every length
    // is known up front. The copy checks as it goes, and starts over if it was not.
    const n = value.length;
    const anyValue = 1 + varintSize(n) + n;
    const kv = k.length + 1 + varintSize(anyValue) + anyValue;
    w.ensure(kv + 16);
    const buf = w.buf;
    const at = w.pos;
    buf[w.pos++] = fieldTag;
    w.uint32(kv);
    w.raw(k);
    buf[w.pos++] = tag(2, 2);
    w.uint32(anyValue);
    buf[w.pos++] = tag(1, 2);
    w.uint32(n);
    if (n < NATIVE_STRING_LENGTH) {
      let pos = w.pos;
      let bits = 0;
      for (let i = 0; i < n; i++) {
        const c = value.charCodeAt(i);
        bits |= c;
        buf[pos++] = c;
      }
      if (bits <= 0x7f) {
        w.pos = pos;
        return;
      }
    } else if (isAscii(value)) {
      w.pos += buf.write(value, w.pos, n, 'latin1');
      return;
    }
    w.pos = at;
  }
  w.ensure(k.length + 8);
  w.buf[w.pos++] = fieldTag;
  const kvStart = w.open(1);
  w.raw(k);
  w.buf[w.pos++] = tag(2, 2);
  const valueStart = w.open(1);
  writeAnyValue(w, value);
  w.close(valueStart, 1);
  w.close(kvStart, 1);
}

function spanFlags(traceFlags: number, isRemote: boolean | undefined): number {
  return (traceFlags & 0xff) | FLAGS_HAS_IS_REMOTE | (isRemote ? FLAGS_IS_REMOTE : 0);
}

/** trace_id (1), span_id (2) and trace_state (3): the same fields in a Span and in a Link. */
function writeIds(w: Writer, ctx: SpanContext): void {
  const own = ctx instanceof Ids ? ctx : undefined;
  const tracePool = own?.tracePool;
  if (tracePool !== undefined) w.pooledIdField(1, tracePool, own!.traceAt, 4);
  else w.traceIdField(ctx.traceId);
  const spanPool = own?.spanPool;
  if (spanPool !== undefined) w.pooledIdField(2, spanPool, own!.spanAt, 2);
  else w.spanIdField(ctx.spanId);
  const traceState = ctx.traceState?.serialize();
  if (traceState) w.stringField(3, traceState);
}

function writeEvent(w: Writer, event: TimedEvent): void {
  w.tag(11, 2);
  const start = w.open(1);
  w.tag(1, 1);
  w.time(event.time);
  w.stringField(2, event.name);
  if (event.attributes) writeAttributes(w, event.attributes, 3);
  w.varintField(4, event.droppedAttributesCount || 0);
  w.close(start, 1);
}

function writeLink(w: Writer, link: Link & { droppedAttributesCount?: number }): void {
  const ctx = link.context;
  w.tag(13, 2);
  const start = w.open(1);
  writeIds(w, ctx);
  if (link.attributes) writeAttributes(w, link.attributes, 4);
  w.varintField(5, link.droppedAttributesCount || 0);
  w.tag(6, 5);
  w.fixed32(spanFlags(ctx.traceFlags, ctx.isRemote));
  w.close(start, 1);
}

/** Span (field 2 of ScopeSpans), tag included. */
function writeSpan(w: Writer, span: ReadableSpan): void {
  const ctx: SpanContext = span.spanContext();
  const parent = span.parentSpanContext;
  w.tag(2, 2);
  const start = w.open(2);
  writeIds(w, ctx);
  const parentPool = parent instanceof Ids ? parent.spanPool : undefined;
  if (parentPool !== undefined) w.pooledIdField(4, parentPool, (parent as Ids).spanAt, 2);
  else if (parent?.spanId) w.parentIdField(parent.spanId);
  w.stringField(5, span.name);
  // Kind is offset by one: the API has no value for UNSPECIFIED.
  const kind = span.kind == null ? 0 : span.kind + 1;
  if (kind !== 0) w.varintField(6, kind);
  w.tag(7, 1);
  w.time(span.startTime);
  w.tag(8, 1);
  w.time(span.endTime);
  if (span.attributes) writeAttributes(w, span.attributes, 9);
  const { events, links, status } = span;
  const droppedAttributes = span.droppedAttributesCount;
  const droppedEvents = span.droppedEventsCount;
  const droppedLinks = span.droppedLinksCount;
  const flags = spanFlags(ctx.traceFlags, parent?.isRemote);
  if (
    events.length === 0 &&
    links.length === 0 &&
    !status.message &&
    isSmall(droppedAttributes) &&
    isSmall(droppedEvents) &&
    isSmall(droppedLinks) &&
    isSmall(status.code)
  ) {
    // Most spans end like this: no events, no links, a status without a message, and counts
    // below 128 (one-byte varints). The 16 bytes are written at once, not field by field.
    w.ensure(16);
    const buf = w.buf;
    let pos = w.pos;
    buf[pos++] = tag(10, 0);
    buf[pos++] = droppedAttributes;
    buf[pos++] = tag(12, 0);
    buf[pos++] = droppedEvents;
    buf[pos++] = tag(14, 0);
    buf[pos++] = droppedLinks;
    buf[pos++] = tag(15, 2); // Status { code (3) }: 2 bytes
    buf[pos++] = 2;
    buf[pos++] = tag(3, 0);
    buf[pos++] = status.code;
    buf[pos++] = 0x85; // field 16, wire type 5: a two-byte tag
    buf[pos++] = 0x01;
    w.pos = pos;
    w.le32(flags);
    w.close(start, 2);
    return;
  }
  w.varintField(10, droppedAttributes);
  for (const event of events) writeEvent(w, event);
  w.varintField(12, droppedEvents);
  for (const link of links) writeLink(w, link);
  w.varintField(14, droppedLinks);
  // Status { message (2), code (3, always written) }
  w.tag(15, 2);
  const statusStart = w.open(1);
  const message = status.message;
  if (message) w.stringField(2, message);
  w.varintField(3, status.code);
  w.close(statusStart, 1);
  w.ensure(7);
  w.buf[w.pos++] = 0x85; // field 16, wire type 5: a two-byte tag
  w.buf[w.pos++] = 0x01;
  w.fixed32(flags);
  w.close(start, 2);
}

/** A count or code written as a one-byte varint (0 to 127). */
function isSmall(n: number): boolean {
  return n >= 0 && n < 128 && (n | 0) === n;
}

type Scope = ReadableSpan['instrumentationScope'] & {
  attributes?: Attributes;
  droppedAttributesCount?: number;
};

function writeScope(w: Writer, scope: Scope): void {
  w.tag(1, 2);
  const start = w.open(1);
  w.stringField(1, scope.name);
  if (scope.version) w.stringField(2, scope.version);
  if (scope.attributes) writeAttributes(w, scope.attributes, 3);
  if (scope.droppedAttributesCount) w.varintField(4, scope.droppedAttributesCount);
  w.close(start, 1);
}

type Resource = ReadableSpan['resource'];

/** The writer of the previous request, kept so its buffer is reused; a copy is returned. */
let shared: Writer | undefined;

/**
 * An `ExportTraceServiceRequest` of `count` items: grouped by resource, then by instrumentation
 * scope, by identity and in first-seen order, as OpenTelemetry's serializer groups them;
 * `writeItem` writes one item's Span field.
 */
function writeRequest(
  count: number,
  resourceOf: (i: number) => Resource,
  scopeOf: (i: number) => Scope,
  writeItem: (w: Writer, i: number) => void,
): Uint8Array {
  const resources = new Map<Resource, Map<Scope, number[]>>();
  for (let i = 0; i < count; i++) {
    const resource = resourceOf(i);
    let scopes = resources.get(resource);
    if (scopes === undefined) {
      scopes = new Map();
      resources.set(resource, scopes);
    }
    const scope = scopeOf(i);
    let list = scopes.get(scope);
    if (list === undefined) {
      list = [];
      scopes.set(scope, list);
    }
    list.push(i);
  }
  const w = shared ?? new Writer(64 * 1024);
  shared = undefined; // not shared while in use (a span's getter could export re-entrantly)
  w.pos = 0;
  for (const [resource, scopes] of resources) {
    w.tag(1, 2);
    const resourceSpans = w.open(3);
    // Resource { attributes (1), dropped_attributes_count (2) = 0 }
    w.tag(1, 2);
    const res = w.open(2);
    if (resource.attributes) writeAttributes(w, resource.attributes, 1);
    w.varintField(2, 0);
    w.close(res, 2);
    for (const [scope, list] of scopes) {
      w.tag(2, 2);
      const scopeSpans = w.open(3);
      writeScope(w, scope);
      for (const i of list) writeItem(w, i);
      if (scope.schemaUrl) w.stringField(3, scope.schemaUrl);
      w.close(scopeSpans, 3);
    }
    if (resource.schemaUrl) w.stringField(3, resource.schemaUrl);
    w.close(resourceSpans, 3);
  }
  const out = Buffer.allocUnsafe(w.pos);
  w.buf.copy(out, 0, 0, w.pos);
  if (w.buf.length <= 4 * 1024 * 1024) shared = w;
  return out;
}

/**
 * `ExportTraceServiceRequest` for `spans`: grouped by resource, then by instrumentation scope, by
 * identity and in first-seen order, as OpenTelemetry's serializer groups them.
 */
export function serializeSpans(spans: ReadableSpan[]): Uint8Array {
  return writeRequest(
    spans.length,
    (i) => spans[i]!.resource,
    (i) => spans[i]!.instrumentationScope,
    (w, i) => writeSpan(w, spans[i]!),
  );
}

/** A queue's buffer is given back once it is empty and has grown beyond this. */
const MAX_IDLE_QUEUE_BYTES = 1024 * 1024;

/**
 * Finished spans kept as their encoded Span fields rather than as span objects, for a batch
 * processor: each span is written when it ends and can then be collected young. A span object
 * held until its batch is exported (a batch of 512 fills in a fraction of a second under load,
 * then waits behind the export in flight) outlives two scavenges and is promoted with its
 * attributes, events and ids, and every scavenge copies the queue; bytes in a buffer outside the
 * JavaScript heap cost neither.
 */
export class EncodedSpanQueue {
  private w = new Writer(64 * 1024);
  /** Per queued span, in order: where its bytes end in the buffer, its resource and its scope. */
  private ends: number[] = [];
  private resources: Resource[] = [];
  private scopes: Scope[] = [];

  get length(): number {
    return this.ends.length;
  }

  /** The encoded size of the spans queued. */
  get bytes(): number {
    return this.w.pos;
  }

  /** Encodes `span` at the end of the queue; on an error nothing is queued. */
  push(span: ReadableSpan): void {
    const w = this.w;
    const start = w.pos;
    try {
      writeSpan(w, span);
    } catch (error) {
      w.pos = start;
      throw error;
    }
    this.ends.push(w.pos);
    this.resources.push(span.resource);
    this.scopes.push(span.instrumentationScope);
  }

  /**
   * Takes the first `max` spans off the queue (all of them when fewer are queued), as many of
   * them as fit in `maxBytes` (at least one).
   */
  take(max: number, maxBytes = Infinity): EncodedSpanBatch {
    let count = Math.min(max, this.ends.length);
    if (count > 1 && this.ends[count - 1]! > maxBytes) {
      let fit = 1;
      while (fit < count && this.ends[fit]! <= maxBytes) fit++;
      count = fit;
    }
    const w = this.w;
    const size = count === 0 ? 0 : this.ends[count - 1]!;
    const bytes = Buffer.allocUnsafe(size);
    w.buf.copy(bytes, 0, 0, size);
    const batch = new EncodedSpanBatch(
      bytes,
      this.ends.splice(0, count),
      this.resources.splice(0, count),
      this.scopes.splice(0, count),
    );
    const ends = this.ends;
    for (let i = 0; i < ends.length; i++) ends[i]! -= size;
    if (ends.length === 0 && w.buf.length > MAX_IDLE_QUEUE_BYTES) {
      this.w = new Writer(64 * 1024);
    } else {
      w.buf.copyWithin(0, size, w.pos);
      w.pos -= size;
    }
    return batch;
  }
}

/** Spans taken off an {@link EncodedSpanQueue}, to be sent as one request. */
export class EncodedSpanBatch {
  constructor(
    private readonly bytes: Buffer,
    /** Where each span's bytes end in `bytes`. */
    private readonly ends: readonly number[],
    readonly resources: readonly Resource[],
    private readonly scopes: readonly Scope[],
  ) {}

  /** How many spans (OpenTelemetry's exporter metrics count an export's items by `length`). */
  get length(): number {
    return this.ends.length;
  }

  /** The `ExportTraceServiceRequest`: the same bytes {@link serializeSpans} writes for the spans. */
  serialize(): Uint8Array {
    const { bytes, ends, resources, scopes } = this;
    const count = ends.length;
    let oneGroup = true;
    for (let i = 1; i < count && oneGroup; i++) {
      oneGroup = resources[i] === resources[0] && scopes[i] === scopes[0];
    }
    if (oneGroup && count > 0) {
      // The usual batch (one provider, one tracer): every span's bytes in one copy.
      return writeRequest(
        1,
        () => resources[0]!,
        () => scopes[0]!,
        (w) => {
          w.ensure(bytes.length);
          w.pos += bytes.copy(w.buf, w.pos, 0, bytes.length);
        },
      );
    }
    return writeRequest(
      count,
      (i) => resources[i]!,
      (i) => scopes[i]!,
      (w, i) => {
        const start = i === 0 ? 0 : ends[i - 1]!;
        const end = ends[i]!;
        w.ensure(end - start);
        w.pos += bytes.copy(w.buf, w.pos, start, end);
      },
    );
  }
}
