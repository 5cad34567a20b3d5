import {
  context,
  SpanStatusCode,
  type Attributes,
  type Context,
  type Span,
  type SpanKind,
  type SpanOptions,
} from '@opentelemetry/api';
import { ATTR_ERROR_TYPE } from '@opentelemetry/semantic-conventions';
import { finalize, isObservable, Observable, Subject, Subscriber, tap } from 'rxjs';
import { withSpan } from '../sdk/chain-context.js';
import { addExceptionEvent, errorMessage, errorText, errorTypeOf } from '../sdk/errors.js';
import { getTracer } from '../sdk/tracer.js';

/** Options of `@Trace()`; `@Traceable()` passes the same ones to every method it traces. */
export interface TraceOptions {
  /** Span name; defaults to `ClassName.methodName` (static methods included). */
  name?: string | undefined;
  /** Span kind; defaults to INTERNAL. */
  kind?: SpanKind | undefined;
  /** Attributes set when the span starts, the same on every call. */
  attributes?: Attributes | undefined;
  /**
   * Attributes computed from the call's arguments. Evaluated only when the span is recording; if
   * it throws, the method still runs and the span simply goes without these attributes.
   */
  attributesFrom?: ((args: unknown[]) => Attributes) | undefined;
  /** Start a new trace instead of a child of the active span. */
  root?: boolean | undefined;
}

/**
 * A method as the wrapper sees it. `unknown` everywhere: the wrapper never looks at the arguments
 * and only inspects the shape of the result.
 *
 * @internal
 */
export type TracedFunction = (this: unknown, ...args: unknown[]) => unknown;

// `Symbol.for` so that two copies of the package in one process still see each other's wrappers
// and never trace one call twice.
const ORIGINAL_METHOD = Symbol.for('nestjs-tracing:original-method');

/**
 * Calls `fn` with `self` and `args`. Handed to `context.with` as a module-level function with no
 * `thisArg`, so that the context manager does not `bind` a fresh function on every call.
 *
 * @internal
 */
export function invoke(fn: (...args: never[]) => unknown, self: unknown, args: unknown[]): unknown {
  return Reflect.apply(fn, self, args);
}

interface Wrapper extends TracedFunction {
  readonly [ORIGINAL_METHOD]: TracedFunction;
}

/** What a wrapper needs per call, fixed when the method is decorated. */
interface CallSite {
  readonly name: string;
  readonly options: SpanOptions;
  readonly attributesFrom: ((args: unknown[]) => Attributes) | undefined;
}

/**
 * Traces a method: each call runs inside a new span named `ClassName.methodName` (or `name`), a
 * child of the span active at the call. Works on any class, Nest provider or not, on instance and
 * static methods, and in any order with `@Get`, `@MessagePattern`, `@OnEvent` or `@SetMetadata`:
 * their metadata is kept on the method.
 *
 * When the span ends is decided by what the method returns:
 * - a native Promise: when it settles (the caller gets the Promise chained on it);
 * - a thenable that is not a native Promise (a Prisma `PrismaPromise`, a Mongoose `Query`, a Knex
 *   builder) is returned as it is: same object, prototype, methods and `Symbol.toStringTag`, and
 *   its `then` is not called by the wrapper, so a lazy query still runs only when awaited. Its
 *   span ends when it settles after being awaited (the first `then()` call runs inside the span),
 *   and is never exported if nobody awaits it. Work started some other way (`exec()`, `catch()`,
 *   `finally()` where they bypass `then`, or a Prisma `$transaction([...])`) leaves the span
 *   unended. A thenable whose `then` cannot be hooked (frozen, sealed, or a non-configurable own
 *   `then`) is returned as it is too, with its span ended at return;
 * - an async generator, or a plain object that is async iterable: when iteration finishes, throws,
 *   or is left early (`break`, `return()`); each step runs inside the span. It has one consumer,
 *   so it keeps the span of the call: like a Promise that never settles, a generator nobody
 *   iterates leaves its span unended (and so never exported);
 * - an rxjs Observable: the first subscription continues the span of the call, and every later
 *   one gets a span of its own, a child of the context active at the call; the source is
 *   subscribed inside the span, which ends on complete, error or unsubscribe. So the usual single
 *   subscription (Nest's own, `lastValueFrom`) gives one span, two subscriptions give two, and
 *   an Observable nobody subscribes to is never exported, like an unawaited lazy thenable.
 *   Subjects are returned untouched (callers need their `next()`), and their span ends at return;
 * - anything else, including other async iterables such as streams and cursors (returned as they
 *   are, since a wrapper would hide their API): at return.
 *
 * A thrown or rejected error is recorded on the span, sets its status to ERROR and is rethrown as
 * the very same object. Applying `@Trace()` again, or `@Traceable()` on the class, never wraps a
 * method twice: the first `@Trace()` applied (the lowest written) wins.
 *
 * @example
 * ```ts
 * @Trace('orders.create', {
 *   kind: SpanKind.INTERNAL,
 *   attributesFrom: ([dto]) => ({ 'order.sku': (dto as OrderDto).sku }),
 * })
 * async create(dto: OrderDto): Promise<Order> { ... }
 * ```
 */
export function Trace(name?: string, options?: TraceOptions): MethodDecorator;
export function Trace(options: TraceOptions): MethodDecorator;
export function Trace(
  nameOrOptions?: string | TraceOptions,
  maybeOptions?: TraceOptions,
): MethodDecorator {
  const options = typeof nameOrOptions === 'object' ? nameOrOptions : (maybeOptions ?? {});
  const name = typeof nameOrOptions === 'string' ? nameOrOptions : options.name;
  return (target, propertyKey, descriptor) => {
    const method: unknown = descriptor.value;
    if (typeof method !== 'function') {
      throw new TypeError(
        `@Trace() can only decorate methods, and ${spanNameOf(target, propertyKey)} is not one ` +
          '(to trace an accessor, trace the method it calls).',
      );
    }
    if (isTracedMethod(method)) return;
    descriptor.value = traceMethod(
      method as TracedFunction,
      name ?? spanNameOf(target, propertyKey),
      options,
    ) as typeof descriptor.value;
  };
}

/**
 * `ClassName.methodName`; `target` is the prototype for an instance method and the class itself
 * for a static one.
 */
function spanNameOf(target: object, propertyKey: string | symbol): string {
  const className = typeof target === 'function' ? target.name : target.constructor.name;
  const method =
    typeof propertyKey === 'symbol' ? `[${propertyKey.description ?? ''}]` : propertyKey;
  return className ? `${className}.${method}` : method;
}

/** @internal Whether `fn` is a wrapper made by `traceMethod`, so that nothing wraps it again. */
export function isTracedMethod(fn: unknown): boolean {
  return typeof fn === 'function' && ORIGINAL_METHOD in fn;
}

/**
 * Wraps `original` so that every call runs in a span named `spanName` (see `@Trace()` for the
 * rules). Everything that does not depend on the call is computed here, once.
 *
 * @internal
 */
export function traceMethod(
  original: TracedFunction,
  spanName: string,
  options: TraceOptions,
): TracedFunction {
  const site: CallSite = {
    name: spanName,
    options: spanOptionsOf(options),
    attributesFrom: options.attributesFrom,
  };

  // A plain function, not an arrow: `this` is the instance (or class) the method is called on.
  const wrapper = function (this: unknown, ...args: unknown[]): unknown {
    const parent = context.active();
    // The tracer is looked up per call: the provider may be registered after decoration.
    const span = getTracer().startSpan(site.name, site.options, parent);
    const active = withSpan(parent, span);
    if (!span.isRecording()) {
      // Nothing to record and nothing to end: still make the span active so that children keep
      // its sampling decision, but hand the caller's result back untouched.
      return context.with(active, invoke, undefined, original, this, args);
    }
    const extra =
      site.attributesFrom === undefined ? undefined : attributesOf(site.attributesFrom, args, span);
    let result: unknown;
    try {
      result = context.with(active, invoke, undefined, original, this, args);
    } catch (err) {
      failSpan(span, err);
      throw err;
    }
    return endWithResult(result, span, active, parent, site, extra);
  } as Wrapper;

  // Nest and its tools list handlers by `name`, and `length` is part of a method's contract.
  Object.defineProperty(wrapper, 'name', { value: original.name, configurable: true });
  Object.defineProperty(wrapper, 'length', { value: original.length, configurable: true });
  Object.defineProperty(wrapper, ORIGINAL_METHOD, { value: original });
  copyMetadata(original, wrapper);
  return wrapper;
}

/**
 * Records `err` as an exception event on `span` and, unless told not to, sets its status to
 * ERROR and `error.type` (as the exception event's type); does not end the span.
 *
 * @internal
 */
export function recordError(span: Span, err: unknown, setStatus = true): void {
  addExceptionEvent(span, err);
  if (setStatus) {
    if (span.isRecording()) span.setAttribute(ATTR_ERROR_TYPE, errorTypeOf(err));
    span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(err) ?? errorText(err) });
  }
}

/**
 * Whether `value` has a `then` method: a Promise, or any other thenable.
 *
 * @internal
 */
export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as Partial<PromiseLike<unknown>>).then === 'function'
  );
}

/**
 * Ends `span` when `thenable` settles, and returns what the caller gets in its place.
 *
 * - A native Promise: the Promise chained on it, which settles the same way.
 * - Any other thenable: `thenable` itself, untouched but for a one-shot own `then` that restores
 *   the original on its first call and makes that call inside the span's context (a lazy thenable,
 *   a query builder for one, only starts its work there) with callbacks that end the span exactly
 *   once. The wrapper itself never calls `then`, so a thenable nobody awaits never runs and its
 *   span is never ended nor exported. When `then` cannot be hooked, the span ends at once.
 *
 * @internal
 */
export function endWhenSettled<T extends PromiseLike<unknown>>(
  thenable: T,
  span: Span,
  active: Context,
): T {
  if (isNativePromise(thenable)) return endWithPromise(thenable, span) as unknown as T;
  if (!hookThen(thenable, span, active)) span.end();
  return thenable;
}

/**
 * A Promise made by the Promise constructor itself. An object that merely inherits from it (a
 * subclass with methods of its own such as `cancel()` or got's `json()`, or whose constructor
 * takes no executor) is a thenable like any other: chaining on it would hand the caller another
 * object, made through its species.
 */
function isNativePromise(value: unknown): value is Promise<unknown> {
  return (
    value !== null &&
    typeof value === 'object' &&
    Object.getPrototypeOf(value) === Promise.prototype
  );
}

/** The fast path: one `then`, no `await`, no extra Promise. */
function endWithPromise(promise: Promise<unknown>, span: Span): Promise<unknown> {
  return promise.then(
    (value: unknown) => {
      span.end();
      return value;
    },
    (err: unknown) => {
      failSpan(span, err);
      throw err;
    },
  );
}

type ThenMethod = (
  this: unknown,
  onFulfilled?: ((value: unknown) => unknown) | null,
  onRejected?: ((reason: unknown) => unknown) | null,
) => unknown;

/**
 * Installs a one-shot own `then` on `thenable` (see `endWhenSettled`); false, with nothing
 * changed, when it cannot: the object is not extensible, its own `then` is not configurable, or a
 * Proxy refuses the change.
 */
function hookThen(thenable: PromiseLike<unknown>, span: Span, active: Context): boolean {
  const original = thenable.then as ThenMethod;
  // `then` is read once, here: a getter is not run again at the first call.
  const own = Object.getOwnPropertyDescriptor(thenable, 'then');
  if (own === undefined ? !Object.isExtensible(thenable) : own.configurable !== true) return false;

  let hooked = true;
  const hook = function (this: unknown, ...args: unknown[]): unknown {
    if (!hooked) return Reflect.apply(original, this, args);
    hooked = false;
    // Put the object back as it was before anything else can observe it: later calls reach the
    // original `then` directly.
    if (own === undefined) Reflect.deleteProperty(thenable, 'then');
    else Reflect.defineProperty(thenable, 'then', own);
    return thenInSpan(original, this, args[0], args[1], span, active);
  };
  Object.defineProperty(hook, 'name', { value: 'then', configurable: true });
  Object.defineProperty(hook, 'length', { value: original.length, configurable: true });
  try {
    return Reflect.defineProperty(thenable, 'then', {
      value: hook,
      writable: true,
      enumerable: own?.enumerable ?? false,
      configurable: true,
    });
  } catch {
    // A Proxy whose defineProperty trap throws.
    return false;
  }
}

/**
 * The first `then` of a hooked thenable: the original, called inside the span's context with
 * callbacks that end the span once (however often a faulty thenable calls them) and then behave
 * like the caller's, run in the caller's context; a missing callback passes the outcome on, as
 * with a Promise.
 */
function thenInSpan(
  original: ThenMethod,
  self: unknown,
  onFulfilled: unknown,
  onRejected: unknown,
  span: Span,
  active: Context,
): unknown {
  const caller = context.active();
  let open = true;
  const fulfilled = (value: unknown): unknown => {
    if (open) {
      open = false;
      span.end();
    }
    if (typeof onFulfilled !== 'function') return value;
    return context.with(caller, onFulfilled as (value: unknown) => unknown, undefined, value);
  };
  const rejected = (err: unknown): unknown => {
    if (open) {
      open = false;
      failSpan(span, err);
    }
    // The caller must get the very value the thenable rejected with, Error or not.
    if (typeof onRejected !== 'function') throw err;
    return context.with(caller, onRejected as (reason: unknown) => unknown, undefined, err);
  };
  try {
    return context.with(active, invoke, undefined, original, self, [fulfilled, rejected]);
  } catch (err) {
    // A `then` that throws: `await` turns that into a rejection, so the span records it as one.
    if (open) {
      open = false;
      failSpan(span, err);
    }
    throw err;
  }
}

function spanOptionsOf(options: TraceOptions): SpanOptions {
  const spanOptions: SpanOptions = {};
  if (options.kind !== undefined) spanOptions.kind = options.kind;
  if (options.attributes !== undefined) spanOptions.attributes = options.attributes;
  if (options.root === true) spanOptions.root = true;
  return spanOptions;
}

function attributesOf(
  attributesFrom: (args: unknown[]) => Attributes,
  args: unknown[],
  span: Span,
): Attributes | undefined {
  try {
    const attributes = attributesFrom(args);
    span.setAttributes(attributes);
    return attributes;
  } catch {
    // A bug in an attribute callback must never break the traced call.
    return undefined;
  }
}

function endWithResult(
  result: unknown,
  span: Span,
  active: Context,
  parent: Context,
  site: CallSite,
  extra: Attributes | undefined,
): unknown {
  // The common case first, and without `await`: one `then` is all a native Promise needs.
  if (isNativePromise(result)) return endWithPromise(result, span);
  if (result === null || (typeof result !== 'object' && typeof result !== 'function')) {
    span.end();
    return result;
  }
  if (typeof (result as Partial<PromiseLike<unknown>>).then === 'function') {
    if (!hookThen(result as PromiseLike<unknown>, span, active)) span.end();
    return result;
  }
  if (isObservable(result) && !(result instanceof Subject)) {
    return traceSubscriptions(result, site, parent, extra, span);
  }
  if (isWrappableAsyncIterable(result)) {
    return new TracedAsyncIterator(result, span, active);
  }
  span.end();
  return result;
}

/**
 * A span per subscription: an Observable may be subscribed to many times, or never. The first
 * subscription takes over the span of the call, so one call subscribed once is one span.
 */
function traceSubscriptions(
  source: Observable<unknown>,
  site: CallSite,
  parent: Context,
  extra: Attributes | undefined,
  callSpan: Span,
): Observable<unknown> {
  let unclaimed: Span | undefined = callSpan;
  return new Observable<unknown>((subscriber) => {
    let span = unclaimed;
    unclaimed = undefined;
    if (span === undefined) {
      span = getTracer().startSpan(site.name, site.options, parent);
      if (extra !== undefined) span.setAttributes(extra);
    }
    const current = span;
    // finalize runs exactly once, whichever of complete, error or unsubscribe comes first.
    const traced = source.pipe(
      tap({ error: (err: unknown) => recordError(current, err) }),
      finalize(() => current.end()),
    );
    // The source runs in the span; what it hands on runs where the subscriber subscribed.
    const forward = new CallerSubscriber(subscriber, context.active());
    return context.with(withSpan(parent, current), () => traced.subscribe(forward));
  });
}

/**
 * Hands each notification of a traced Observable on in the context its subscriber subscribed in,
 * as an awaited Promise's continuation runs in the caller's: an interceptor's `tap` after a traced
 * handler belongs to the request's span, not to the handler's. A `Subscriber` of its own (rather
 * than a plain observer), made as a child of the downstream one, so that an unsubscribe
 * downstream during a synchronous emission reaches the source at once.
 */
class CallerSubscriber extends Subscriber<unknown> {
  constructor(
    private readonly downstream: Subscriber<unknown>,
    private readonly caller: Context,
  ) {
    super(downstream);
  }

  protected override _next(value: unknown): void {
    context.with(this.caller, this.downstream.next, this.downstream, value);
  }

  protected override _error(error: unknown): void {
    try {
      context.with(this.caller, this.downstream.error, this.downstream, error);
    } finally {
      this.unsubscribe();
    }
  }

  protected override _complete(): void {
    try {
      context.with(this.caller, this.downstream.complete, this.downstream);
    } finally {
      this.unsubscribe();
    }
  }
}

/**
 * Async generators, and the plain objects down-levelled async generators compile to (`next`,
 * `throw`, `return` and `Symbol.asyncIterator`, nothing else). Other async iterables (streams,
 * cursors, an object with a `total` beside its iterator) have an API of their own that a wrapper
 * would hide: they are returned as they are.
 */
function isWrappableAsyncIterable(value: object): value is AsyncIterable<unknown> {
  if (typeof (value as Partial<AsyncIterable<unknown>>)[Symbol.asyncIterator] !== 'function') {
    return false;
  }
  if ((value as { [Symbol.toStringTag]?: unknown })[Symbol.toStringTag] === 'AsyncGenerator') {
    return true;
  }
  const prototype: unknown = Object.getPrototypeOf(value);
  if (prototype !== Object.prototype && prototype !== null && !isAsyncIteratorPrototype(prototype))
    return false;
  for (const key of Reflect.ownKeys(value)) {
    if (key !== Symbol.asyncIterator && key !== 'next' && key !== 'throw' && key !== 'return') {
      return false;
    }
  }
  return true;
}

/** `AsyncIterator.prototype` (what newer down-levelling helpers make their objects from). */
function isAsyncIteratorPrototype(prototype: unknown): boolean {
  const global = globalThis as { AsyncIterator?: { prototype?: unknown } };
  return global.AsyncIterator !== undefined && prototype === global.AsyncIterator.prototype;
}

type IteratorMethod = (...args: unknown[]) => Promise<IteratorResult<unknown>>;

/**
 * Iterates the result of a traced method inside the method's span, and ends the span when the
 * iteration does. An async generator has one consumer, so it keeps the span of the call.
 */
class TracedAsyncIterator implements AsyncIterableIterator<unknown> {
  readonly #iterable: AsyncIterable<unknown>;
  readonly #span: Span;
  readonly #active: Context;
  #iterator: AsyncIterator<unknown> | undefined;
  #open = true;

  constructor(iterable: AsyncIterable<unknown>, span: Span, active: Context) {
    this.#iterable = iterable;
    this.#span = span;
    this.#active = active;
  }

  // Lets a traced method that returns another traced method's generator wrap it in turn.
  get [Symbol.toStringTag](): string {
    return 'AsyncGenerator';
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(...args: [] | [unknown]): Promise<IteratorResult<unknown>> {
    return this.#step('next', args);
  }

  return(value?: unknown): Promise<IteratorResult<unknown>> {
    return this.#step('return', [value]);
  }

  throw(err?: unknown): Promise<IteratorResult<unknown>> {
    return this.#step('throw', [err]);
  }

  async #step(
    method: 'next' | 'return' | 'throw',
    args: unknown[],
  ): Promise<IteratorResult<unknown>> {
    try {
      const iterator = (this.#iterator ??= context.with(this.#active, () =>
        this.#iterable[Symbol.asyncIterator](),
      ));
      const fn = iterator[method] as IteratorMethod | undefined;
      if (fn === undefined) {
        // What `for await` and `yield*` do with an iterator that lacks the method.
        if (method === 'throw') throw args[0];
        this.#end();
        return { done: true, value: args[0] };
      }
      const result = (await context.with(
        this.#active,
        invoke,
        undefined,
        fn,
        iterator,
        args,
      )) as IteratorResult<unknown>;
      if (result.done === true || method === 'return') this.#end();
      return result;
    } catch (err) {
      if (this.#open) {
        this.#open = false;
        failSpan(this.#span, err);
      }
      throw err;
    }
  }

  #end(): void {
    if (this.#open) {
      this.#open = false;
      this.#span.end();
    }
  }
}

function failSpan(span: Span, err: unknown): void {
  recordError(span, err);
  span.end();
}

/**
 * Moves every `Reflect` metadata entry of the original method onto the wrapper: decorators
 * applied before `@Trace()` (written below it) stored theirs on the original, and Nest reads them
 * from whatever function ends up on the prototype.
 */
function copyMetadata(from: object, to: object): void {
  // reflect-metadata is a peer dependency that Nest loads; outside Nest it may be absent.
  if (typeof Reflect.getMetadataKeys !== 'function') return;
  for (const key of Reflect.getMetadataKeys(from) as unknown[]) {
    Reflect.defineMetadata(key, Reflect.getMetadata(key, from), to);
  }
}
