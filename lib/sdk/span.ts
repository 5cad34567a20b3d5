import {
  context,
  diag,
  INVALID_SPAN_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  TraceFlags,
  type Attributes,
  type AttributeValue,
  type Context,
  type Exception,
  type HrTime,
  type Link,
  type Span,
  type SpanContext,
  type SpanOptions,
  type SpanStatus,
  type TimeInput,
  type Tracer,
  type TraceState,
} from '@opentelemetry/api';
import {
  addHrTimes,
  hrTime,
  hrTimeDuration,
  isAttributeValue,
  isTimeInput,
  isTimeInputHrTime,
  isTracingSuppressed,
  millisToHrTime,
  otperformance,
  sanitizeAttributes,
} from '@opentelemetry/core';
import {
  SamplingDecision,
  type IdGenerator,
  type ReadableSpan,
  type Sampler,
  type SamplingResult,
  type SpanLimits,
  type SpanProcessor,
  type TimedEvent,
} from '@opentelemetry/sdk-trace-base';
import {
  ATTR_EXCEPTION_MESSAGE,
  ATTR_EXCEPTION_STACKTRACE,
  ATTR_EXCEPTION_TYPE,
} from '@opentelemetry/semantic-conventions';
import { withSpan } from './chain-context.js';
import { PooledIdGenerator, type PoolWords } from './id-generator.js';
import { DEFAULT_SPAN_LIMITS } from './tracing-config.js';

/**
 * OpenTelemetry's default span limits. The module's provider takes its limits from the
 * configuration (the `OTEL_*_LIMIT` variables) and gives them to its `NodeTracerProvider` and to
 * {@link PackageTracer} alike, so that both kinds of span agree.
 */
export const SPAN_LIMITS = DEFAULT_SPAN_LIMITS;

type Resource = ReadableSpan['resource'];
type Scope = ReadableSpan['instrumentationScope'];

interface TracerSettings {
  resource: Resource;
  sampler: Sampler;
  idGenerator: IdGenerator;
  processor: SpanProcessor;
  spanLimits: Readonly<Required<SpanLimits>>;
}

/**
 * A span's ids: a class instance, not a literal (V8 can pretenure a literal's allocation site).
 * Ids the {@link PooledIdGenerator} drew also keep where their bytes are, and how often that
 * pool had been filled: while the pool was not filled again, the encoder copies those bytes
 * rather than decoding the hex (a root span's two ids in 0.4k instructions instead of 2.6k,
 * callgrind). An `undefined` pool: an id from elsewhere (a remote parent's trace id, another
 * generator's), or one whose pool was filled again (a span that outlived four pools' ids).
 * Private, behind getters: a span context shows only the SpanContext fields (to `toEqual`,
 * `JSON.stringify`, `util.inspect`), never a pool.
 */
export class Ids implements SpanContext {
  readonly #tracePool: PoolWords | undefined;
  readonly #traceAt: number;
  readonly #traceFills: number;
  readonly #spanPool: PoolWords | undefined;
  readonly #spanAt: number;
  readonly #spanFills: number;

  constructor(
    readonly traceId: string,
    readonly spanId: string,
    readonly traceFlags: number,
    readonly traceState: TraceState | undefined,
    tracePool: PoolWords | undefined,
    traceAt: number,
    spanPool: PoolWords | undefined,
    spanAt: number,
  ) {
    this.#tracePool = tracePool;
    this.#traceAt = traceAt;
    // A pool handed in is one whose bytes are still the ids': its count now is theirs.
    this.#traceFills = tracePool === undefined ? 0 : tracePool.fills;
    this.#spanPool = spanPool;
    this.#spanAt = spanAt;
    this.#spanFills = spanPool === undefined ? 0 : spanPool.fills;
  }

  /**
   * The pool (as words) holding the trace id's 16 bytes from word {@link traceAt}, while they are
   * still there (the pool was not filled again since the id was drawn).
   */
  get tracePool(): PoolWords | undefined {
    const pool = this.#tracePool;
    return pool !== undefined && pool.fills === this.#traceFills ? pool : undefined;
  }

  get traceAt(): number {
    return this.#traceAt;
  }

  /** The pool holding the span id's 8 bytes from word {@link spanAt}, while they are there. */
  get spanPool(): PoolWords | undefined {
    const pool = this.#spanPool;
    return pool !== undefined && pool.fills === this.#spanFills ? pool : undefined;
  }

  get spanAt(): number {
    return this.#spanAt;
  }
}

/**
 * Whether a span context is the ids of a span this package's tracer started: valid by
 * construction (the tracer checks others' parents, never its own), so a hot path can skip
 * OpenTelemetry's `isSpanContextValid`, which runs two regular expressions.
 */
export function isOwnSpanContext(spanContext: SpanContext): boolean {
  return spanContext instanceof Ids;
}

/**
 * The ids of a parent from elsewhere (a propagator, another tracer), checked as OpenTelemetry's
 * `isSpanContextValid` checks them (32 and 16 hex digits, not all zeros) and decoded in the same
 * pass; undefined when they are not valid. The span keeps this as its parent, and the encoder
 * copies the bytes instead of decoding the hex again: ids a propagator cut out of a header are
 * slices of it, which V8 reads a character at a time slower than flat strings (callgrind, traced
 * TCP server: ~4k instructions a message for the check, two decodes and the encoder's compares).
 */
function checkedIds(parent: SpanContext | undefined): Ids | undefined {
  if (parent === undefined) return undefined;
  const { traceId, spanId } = parent;
  if (typeof traceId !== 'string' || typeof spanId !== 'string') return undefined;
  if (traceId.length !== 32 || spanId.length !== 16) return undefined;
  const words = new Uint32Array(6) as PoolWords;
  words.fills = 0;
  let bad = 0;
  // A digit or a lower-case letter has bit 0x20 set; an upper-case letter has not.
  let lowerCase = 0x20;
  for (let w = 0; w < 6; w++) {
    const hex = w < 4 ? traceId : spanId;
    const at = w < 4 ? 8 * w : 8 * (w - 4);
    let word = 0;
    for (let b = 0; b < 4; b++) {
      const hi = hex.charCodeAt(at + 2 * b);
      const lo = hex.charCodeAt(at + 2 * b + 1);
      const h = hi < 128 ? HEX_VALUE[hi]! : 16;
      const l = lo < 128 ? HEX_VALUE[lo]! : 16;
      bad |= h | l;
      lowerCase &= hi & lo;
      // The bytes in memory order, as the id generator's pool words hold them.
      word |= ((h << 4) | l) << (LITTLE_ENDIAN ? 8 * b : 24 - 8 * b);
    }
    words[w] = word;
  }
  if ((bad & 16) !== 0) return undefined;
  if ((words[0]! | words[1]! | words[2]! | words[3]!) === 0) return undefined;
  if ((words[4]! | words[5]!) === 0) return undefined;
  // Ids in upper case are valid (OpenTelemetry's check ignores case, and Jaeger's and B3's
  // propagators take them as sent), but W3C Trace Context writes lower case only: a child
  // carrying them on would send a `traceparent` the next service refuses, and log ids that match
  // no id in the backend. The span continues them in lower case.
  if (lowerCase === 0)
    return new ParentIds(parent, traceId.toLowerCase(), spanId.toLowerCase(), words);
  return new ParentIds(parent, traceId, spanId, words);
}

/**
 * Each ASCII code's hex digit value, 16 for a code that is none (either case, as OpenTelemetry).
 * The encoder's table (`HEX_NIBBLES`) is not this one on purpose: it must turn a character that
 * is no hex digit into the byte OpenTelemetry's encoder writes for it, where this one rejects it.
 */
const HEX_VALUE = Uint8Array.from({ length: 128 }, (_, code) => {
  if (code >= 48 && code <= 57) return code - 48;
  if (code >= 97 && code <= 102) return code - 87;
  if (code >= 65 && code <= 70) return code - 55;
  return 16;
});

const LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

/** A parent from elsewhere, with its ids decoded into words: trace id at 0, span id at 4. */
class ParentIds extends Ids {
  readonly isRemote: boolean | undefined;

  constructor(parent: SpanContext, traceId: string, spanId: string, words: PoolWords) {
    super(traceId, spanId, parent.traceFlags, parent.traceState, words, 0, words, 4);
    this.isRemote = parent.isRemote;
  }
}

/** The parent of another tracer that {@link PackageTracer} checked and is now sampling under. */
let checkedParent: SpanContext | undefined;

/**
 * Whether a span context's ids are known to be valid without checking them again: the package's
 * own ids, or a remote (or other tracer's) parent that {@link PackageTracer} checked just before it
 * called its sampler, during that call. The package's parent-based sampler uses it to skip
 * ParentBasedSampler's second check of the same parent (four regular expression tests of the
 * remote ids, ~2k instructions for each span continuing a trace from another process, callgrind).
 */
export function isCheckedSpanContext(spanContext: SpanContext): boolean {
  return spanContext instanceof Ids || spanContext === checkedParent;
}

const NOT_ENDED: HrTime = Object.freeze([0, 0]) as unknown as HrTime;
const NO_DURATION: HrTime = Object.freeze([-1, -1]) as unknown as HrTime;
const EXCEPTION_EVENT = 'exception';

/**
 * The tracer of the package's own provider. It starts the same spans as OpenTelemetry's SDK
 * tracer (the provider's sampler, id generator, resource, span processors and limits; the spans
 * are `ReadableSpan`s every processor and exporter takes), in a fraction of its time: an SDK span
 * copies and checks its attributes three times (`sanitizeAttributes` before and after sampling,
 * then `setAttribute` for each key), and allocates its status and end-time arrays before they are
 * set; here the attributes are checked once (or not copied at all, below) and unset status and
 * times are shared constants. Clocks and times follow the SDK span's (wall clock at the start,
 * the monotonic clock for the duration).
 *
 * {@link startOwned} is for the package's own hot paths, whose attribute objects are built fresh
 * for the span with valid values: the span keeps that object instead of copying it.
 */
export class PackageTracer implements Tracer {
  constructor(
    readonly instrumentationScope: Scope,
    /** What its spans are made with (read by {@link PackageSpan}). */
    readonly settings: TracerSettings,
  ) {}

  startSpan(name: string, options: SpanOptions = {}, ctx: Context = context.active()): Span {
    return this.start(name, options.kind ?? SpanKind.INTERNAL, options, undefined, ctx);
  }

  /**
   * A span whose attributes are `attributes` itself, not a copy: for callers that built that
   * object for this span alone, with valid attribute values, and do not touch it afterwards.
   */
  startOwned(name: string, kind: SpanKind, attributes: Attributes, ctx: Context): Span {
    return this.start(name, kind, undefined, attributes, ctx);
  }

  startActiveSpan<F extends (span: Span) => unknown>(name: string, fn: F): ReturnType<F>;
  startActiveSpan<F extends (span: Span) => unknown>(
    name: string,
    options: SpanOptions,
    fn: F,
  ): ReturnType<F>;
  startActiveSpan<F extends (span: Span) => unknown>(
    name: string,
    options: SpanOptions,
    ctx: Context,
    fn: F,
  ): ReturnType<F>;
  startActiveSpan<F extends (span: Span) => unknown>(
    name: string,
    arg2?: SpanOptions | F,
    arg3?: Context | F,
    arg4?: F,
  ): ReturnType<F> | undefined {
    let options: SpanOptions | undefined;
    let ctx: Context | undefined;
    let fn: F;
    if (arguments.length < 2) return undefined;
    if (arguments.length === 2) fn = arg2 as F;
    else if (arguments.length === 3) {
      options = arg2 as SpanOptions;
      fn = arg3 as F;
    } else {
      options = arg2 as SpanOptions;
      ctx = arg3 as Context;
      fn = arg4 as F;
    }
    const parent = ctx ?? context.active();
    const span = this.startSpan(name, options, parent);
    return context.with(
      withSpan(parent, span),
      fn as (span: Span) => ReturnType<F>,
      undefined,
      span,
    );
  }

  private start(
    name: string,
    kind: SpanKind,
    options: SpanOptions | undefined,
    owned: Attributes | undefined,
    ctx: Context,
  ): Span {
    if (options?.root) ctx = trace.deleteSpan(ctx);
    if (isTracingSuppressed(ctx)) return trace.wrapSpanContext(INVALID_SPAN_CONTEXT);
    const { idGenerator, sampler } = this.settings;
    const parent = trace.getSpan(ctx)?.spanContext();
    const spanId = idGenerator.generateSpanId();
    const pooled = idGenerator instanceof PooledIdGenerator ? idGenerator : undefined;
    const spanPool = pooled?.words;
    const spanAt = pooled === undefined ? 0 : pooled.lastWord;
    let traceId: string;
    let traceState: TraceState | undefined;
    let validParent: SpanContext | undefined;
    let tracePool: PoolWords | undefined;
    let traceAt = 0;
    // The ids of this tracer's own spans are valid by construction: only others' are checked,
    // and decoded while they are (the span keeps the decoded parent as its parent).
    const parentIds = parent instanceof Ids ? parent : checkedIds(parent);
    if (parentIds === undefined) {
      traceId = idGenerator.generateTraceId();
      if (pooled !== undefined) {
        tracePool = pooled.words;
        traceAt = pooled.lastWord;
      }
    } else {
      traceId = parentIds.traceId;
      traceState = parentIds.traceState;
      validParent = parent;
      tracePool = parentIds.tracePool;
      traceAt = parentIds.traceAt;
    }
    const links: Link[] =
      options?.links === undefined
        ? []
        : options.links.map((link) => ({
            context: link.context,
            attributes: sanitizeAttributes(link.attributes),
          }));
    let attributes = owned ?? sanitizeAttributes(options?.attributes);
    checkedParent = validParent;
    let result: SamplingResult;
    try {
      result = sampler.shouldSample(ctx, traceId, name, kind, attributes, links);
    } finally {
      checkedParent = undefined;
    }
    traceState = result.traceState ?? traceState;
    const flags =
      result.decision === SamplingDecision.RECORD_AND_SAMPLED
        ? TraceFlags.SAMPLED
        : TraceFlags.NONE;
    const ids = new Ids(traceId, spanId, flags, traceState, tracePool, traceAt, spanPool, spanAt);
    if (result.decision === SamplingDecision.NOT_RECORD) return trace.wrapSpanContext(ids);
    if (result.attributes !== undefined) {
      // The sampler's attributes join the span's: one merged, checked copy (as the SDK does).
      attributes = sanitizeAttributes(Object.assign(attributes, result.attributes));
    }
    return new PackageSpan(
      this,
      ctx,
      ids,
      name,
      kind,
      parentIds,
      links,
      attributes,
      options?.startTime,
    );
  }
}

/**
 * A span of the {@link PackageTracer}: OpenTelemetry's `Span` API and the SDK's `ReadableSpan`,
 * with the SDK span's behaviour for every call (limits, ignored writes after `end()`, status
 * rules, exception events, times and warnings).
 */
export class PackageSpan implements Span, ReadableSpan {
  name: string;
  readonly kind: SpanKind;
  readonly parentSpanContext: SpanContext | undefined;
  attributes: Attributes;
  links: Link[];
  events: TimedEvent[];
  // Each span its own, as the SDK span's: a processor may write to it.
  status: SpanStatus = { code: SpanStatusCode.UNSET };
  readonly startTime: HrTime;
  readonly resource: Resource;
  readonly instrumentationScope: Scope;
  droppedAttributesCount = 0;
  droppedEventsCount = 0;
  droppedLinksCount = 0;
  private _endTime: HrTime = NOT_ENDED;
  private _duration: HrTime = NO_DURATION;
  private _ended = false;
  private attributeCount = 0;
  private readonly ids: SpanContext;
  private readonly settings: TracerSettings;
  /** `performance.now()` at the start, to time the span with the monotonic clock. */
  private readonly performanceStart: number;
  /** What to add to a `performance.now()` value to make it wall-clock milliseconds. */
  private readonly performanceOffset: number;
  private readonly startTimeProvided: boolean;

  constructor(
    tracer: PackageTracer,
    parentContext: Context,
    ids: SpanContext,
    name: string,
    kind: SpanKind,
    parent: SpanContext | undefined,
    links: Link[],
    /** Fresh (the caller's own object or a checked copy): kept when it fits the limits. */
    attributes: Attributes,
    startTime: TimeInput | undefined,
  ) {
    const now = Date.now();
    const settings = tracer.settings;
    this.settings = settings;
    this.ids = ids;
    this.name = name;
    this.kind = kind;
    this.parentSpanContext = parent;
    this.resource = settings.resource;
    this.instrumentationScope = tracer.instrumentationScope;
    this.performanceStart = otperformance.now();
    this.performanceOffset = now - (this.performanceStart + otperformance.timeOrigin);
    this.startTimeProvided = startTime != null;
    this.events = [];
    this.links = [];
    for (const link of links) this.addLink(link);
    this.startTime = startTime == null ? millisToHrTime(now) : this.time(startTime);
    if (this.canAdopt(attributes)) {
      this.attributes = attributes;
    } else {
      this.attributes = {};
      this.setAttributes(attributes);
    }
    settings.processor.onStart(this, parentContext);
  }

  /**
   * Whether a fresh attribute object can be kept as it is: within the count limit, no value to
   * truncate, no null or undefined value (which a span drops). Counts the keys as it checks.
   */
  private canAdopt(attributes: Attributes): boolean {
    const limits = this.settings.spanLimits;
    if (limits.attributeValueLengthLimit !== Infinity) return false;
    let count = 0;
    for (const key in attributes) {
      if (attributes[key] == null) return false;
      count++;
    }
    if (count > limits.attributeCountLimit) return false;
    this.attributeCount = count;
    return true;
  }

  spanContext(): SpanContext {
    return this.ids;
  }

  get endTime(): HrTime {
    return this._endTime;
  }

  get duration(): HrTime {
    return this._duration;
  }

  get ended(): boolean {
    return this._ended;
  }

  isRecording(): boolean {
    return !this._ended;
  }

  setAttribute(key: string, value?: AttributeValue): this {
    if (value == null || this.isEnded()) return this;
    if (key.length === 0) {
      diag.warn(`Invalid attribute key: ${key}`);
      return this;
    }
    if (!isAttributeValue(value)) {
      diag.warn(`Invalid attribute value set for key: ${key}`);
      return this;
    }
    const attributes = this.attributes;
    const isNew = !Object.prototype.hasOwnProperty.call(attributes, key);
    if (isNew && this.attributeCount >= this.settings.spanLimits.attributeCountLimit) {
      this.droppedAttributesCount++;
      return this;
    }
    attributes[key] = this.truncate(value);
    if (isNew) this.attributeCount++;
    return this;
  }

  setAttributes(attributes: Attributes): this {
    for (const key in attributes) {
      if (Object.prototype.hasOwnProperty.call(attributes, key)) {
        this.setAttribute(key, attributes[key]);
      }
    }
    return this;
  }

  addEvent(
    name: string,
    attributesOrStartTime?: Attributes | TimeInput,
    timeStamp?: TimeInput,
  ): this {
    if (this.isEnded()) return this;
    const { eventCountLimit, attributePerEventCountLimit } = this.settings.spanLimits;
    if (eventCountLimit === 0) {
      diag.warn('No events allowed.');
      this.droppedEventsCount++;
      return this;
    }
    if (this.events.length >= eventCountLimit) {
      if (this.droppedEventsCount === 0) diag.debug('Dropping extra events.');
      this.events.shift();
      this.droppedEventsCount++;
    }
    if (isTimeInput(attributesOrStartTime)) {
      if (!isTimeInput(timeStamp)) timeStamp = attributesOrStartTime;
      attributesOrStartTime = undefined;
    }
    const { attributes, dropped } = this.limited(
      attributesOrStartTime,
      attributePerEventCountLimit,
    );
    this.events.push({
      name,
      attributes,
      time: this.time(timeStamp),
      droppedAttributesCount: dropped,
    });
    return this;
  }

  addLink(link: Link): this {
    if (this.isEnded()) return this;
    const { linkCountLimit, attributePerLinkCountLimit } = this.settings.spanLimits;
    if (linkCountLimit === 0) {
      this.droppedLinksCount++;
      return this;
    }
    if (this.links.length >= linkCountLimit) {
      if (this.droppedLinksCount === 0) diag.debug('Dropping extra links.');
      this.links.shift();
      this.droppedLinksCount++;
    }
    const { attributes, dropped, count } = this.limited(
      link.attributes,
      attributePerLinkCountLimit,
    );
    const kept: Link & { droppedAttributesCount?: number } = { context: link.context };
    if (count > 0) kept.attributes = attributes;
    if (dropped > 0) kept.droppedAttributesCount = dropped;
    this.links.push(kept);
    return this;
  }

  addLinks(links: Link[]): this {
    for (const link of links) this.addLink(link);
    return this;
  }

  setStatus(status: SpanStatus): this {
    if (this.isEnded()) return this;
    if (status.code === SpanStatusCode.UNSET) return this;
    if (this.status.code === SpanStatusCode.OK) return this;
    const next: SpanStatus = { code: status.code };
    if (status.code === SpanStatusCode.ERROR) {
      if (typeof status.message === 'string') next.message = status.message;
      else if (status.message != null) {
        diag.warn(
          `Dropping invalid status.message of type '${typeof status.message}', expected 'string'`,
        );
      }
    }
    this.status = next;
    return this;
  }

  updateName(name: string): this {
    if (!this.isEnded()) this.name = name;
    return this;
  }

  /** Whether the span has ended; a write to an ended span is ignored with a warning, as the SDK's. */
  private isEnded(): boolean {
    if (!this._ended) return false;
    const { traceId, spanId } = this.ids;
    diag.warn(
      `Cannot execute the operation on ended Span {traceId: ${traceId}, spanId: ${spanId}}`,
      new Error(`Operation attempted on ended Span {traceId: ${traceId}, spanId: ${spanId}}`),
    );
    return true;
  }

  end(endTime?: TimeInput): void {
    if (this._ended) {
      diag.error(
        `${this.name} ${this.ids.traceId}-${this.ids.spanId} - You can only call end() on a span once.`,
      );
      return;
    }
    let end = this.time(endTime);
    let duration = hrTimeDuration(this.startTime, end);
    if (duration[0] < 0) {
      diag.warn(
        'Inconsistent start and end time, startTime > endTime. Setting span duration to 0ms.',
        this.startTime,
        end,
      );
      end = [this.startTime[0], this.startTime[1]];
      duration = [0, 0];
    }
    this._endTime = end;
    // Known to the processors' onEnding, as the SDK span's.
    this._duration = duration;
    if (this.droppedEventsCount > 0) {
      diag.warn(`Dropped ${this.droppedEventsCount} events because eventCountLimit reached`);
    }
    if (this.droppedLinksCount > 0) {
      diag.warn(`Dropped ${this.droppedLinksCount} links because linkCountLimit reached`);
    }
    const processor = this.settings.processor;
    processor.onEnding?.(this);
    this._ended = true;
    processor.onEnd(this);
  }

  recordException(exception: Exception, time?: TimeInput): void {
    const attributes: Attributes = {};
    if (typeof exception === 'string') {
      attributes[ATTR_EXCEPTION_MESSAGE] = exception;
    } else if (exception) {
      if (exception.code) attributes[ATTR_EXCEPTION_TYPE] = exception.code.toString();
      else if (exception.name) attributes[ATTR_EXCEPTION_TYPE] = exception.name;
      if (exception.message) attributes[ATTR_EXCEPTION_MESSAGE] = exception.message;
      if (exception.stack) attributes[ATTR_EXCEPTION_STACKTRACE] = exception.stack;
    }
    if (attributes[ATTR_EXCEPTION_TYPE] || attributes[ATTR_EXCEPTION_MESSAGE]) {
      this.addEvent(EXCEPTION_EVENT, attributes, time);
    } else {
      // eslint-disable-next-line @typescript-eslint/no-base-to-string -- the SDK span's message
      diag.warn(`Failed to record an exception ${String(exception)}`);
    }
  }

  /** A time input as the SDK span reads it; none means now, by the monotonic clock. */
  private time(input: TimeInput | undefined): HrTime {
    if (typeof input === 'number') {
      // A small number is a performance.now() value, a large one epoch milliseconds.
      return input <= otperformance.now()
        ? hrTime(input + this.performanceOffset)
        : millisToHrTime(input);
    }
    if (input instanceof Date) return millisToHrTime(input.getTime());
    if (isTimeInputHrTime(input)) return input;
    if (this.startTimeProvided) return millisToHrTime(Date.now());
    return addHrTimes(this.startTime, millisToHrTime(otperformance.now() - this.performanceStart));
  }

  /** An event's or a link's attributes: checked, copied, at most `limit` of them. */
  private limited(
    given: Attributes | undefined,
    limit: number,
  ): { attributes: Attributes; dropped: number; count: number } {
    const sanitized = sanitizeAttributes(given);
    const attributes: Attributes = {};
    let dropped = 0;
    let count = 0;
    for (const key in sanitized) {
      if (!Object.prototype.hasOwnProperty.call(sanitized, key)) continue;
      if (count >= limit) {
        dropped++;
        continue;
      }
      attributes[key] = this.truncate(sanitized[key]!);
      count++;
    }
    return { attributes, dropped, count };
  }

  /** A value within the value length limit; arrays are copied, as the SDK span copies them. */
  private truncate(value: AttributeValue): AttributeValue {
    const limit = this.settings.spanLimits.attributeValueLengthLimit;
    if (limit <= 0) {
      diag.warn(`Attribute value limit must be positive, got ${limit}`);
      return value;
    }
    if (typeof value === 'string') return value.length <= limit ? value : value.substring(0, limit);
    if (Array.isArray(value)) {
      return (value as unknown[]).map((item) =>
        typeof item === 'string' && item.length > limit ? item.substring(0, limit) : item,
      ) as AttributeValue;
    }
    return value;
  }
}
