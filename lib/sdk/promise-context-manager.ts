import { ROOT_CONTEXT, type Context } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { AsyncResource } from 'node:async_hooks';
import timers from 'node:timers';
import { promisify } from 'node:util';
import { promiseHooks } from 'node:v8';

/**
 * The active context, for the one manager enabled at a time (OpenTelemetry has one global
 * context manager; enabling a second one takes the hooks over).
 */
let current: Context = ROOT_CONTEXT;
/** Contexts to restore after each promise reaction (reactions do not nest; this stays short). */
const saved: Context[] = [];
/** Where each promise made in a context keeps it. */
const CONTEXT = Symbol('nestjs-tracing.context');
type WithContext = { [CONTEXT]?: Context };

let enabledBy: PromiseContextManager | undefined;
let stopPromiseHooks: (() => void) | undefined;
let restoreScheduling: (() => void) | undefined;
let restoreAsyncResource: (() => void) | undefined;

function onInit(promise: Promise<unknown>): void {
  // Promises made outside any context carry nothing: most of a server's promises.
  if (current !== ROOT_CONTEXT) (promise as WithContext)[CONTEXT] = current;
}

function onBefore(promise: Promise<unknown>): void {
  saved.push(current);
  current = (promise as WithContext)[CONTEXT] ?? ROOT_CONTEXT;
}

function onAfter(): void {
  current = saved.pop() ?? ROOT_CONTEXT;
}

/** Runs `fn` with `ctx` active, restoring the previous context however it ends. */
function runIn<R>(ctx: Context, fn: (...args: never[]) => R, thisArg: unknown, args: unknown[]): R {
  const previous = current;
  current = ctx;
  try {
    return fn.apply(thisArg, args as never[]);
  } finally {
    current = previous;
  }
}

/**
 * The context manager nestjs-tracing registers where Node's `AsyncLocalStorage` runs on promise
 * hooks (Node 20 and 22): the context follows promises and `await` as it does with
 * `AsyncLocalStorage`, at a fraction of the cost.
 *
 * Node's `AsyncLocalStorage` rides on `async_hooks` there, which gives every promise an async
 * id, a trigger id and a store, and runs a stack of async ids around every promise reaction:
 * ~1.7k CPU instructions a promise, a third of what an untraced Fastify request costs. This
 * manager sets V8's promise hooks itself (`v8.promiseHooks`, public since Node 17) and keeps
 * one thing per promise, the context it was made in, and only for promises made in a context.
 *
 * Besides promises, the context follows the callbacks of `setTimeout`, `setInterval`,
 * `setImmediate`, `process.nextTick` and `queueMicrotask`, which are wrapped while the manager
 * is enabled (only calls made in a context pay for it), anything bound with `context.bind`
 * (functions and event emitters), and the callbacks an `AsyncResource` runs (`bind`,
 * `runInAsyncScope`, `EventEmitterAsyncResource`), in the context the resource was made in, as
 * connection pools and clients that keep callbacks for later use them (see
 * {@link asyncResourceHooks}). Unlike
 * `AsyncLocalStorage`, it does not follow
 * the callbacks of Node's callback APIs (`fs.readFile(path, callback)`, `dns.lookup`, socket
 * events): use their promise forms, or `contextManager: 'async-local-storage'`.
 *
 * It extends OpenTelemetry's `AsyncLocalStorageContextManager` for its `bind` (functions and
 * event emitters), which it runs through {@link with}; its `AsyncLocalStorage` is never used.
 */
export class PromiseContextManager extends AsyncLocalStorageContextManager {
  override active(): Context {
    return current;
  }

  override with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(
    context: Context,
    fn: F,
    thisArg?: ThisParameterType<F>,
    ...args: A
  ): ReturnType<F> {
    return runIn(context, fn as unknown as (...args: never[]) => ReturnType<F>, thisArg, args);
  }

  /** Makes `context` active until the returned token is disposed (OpenTelemetry's `attach`). */
  override attach(context: Context): { dispose(): void } {
    const previous = current;
    current = context;
    let disposed = false;
    return {
      dispose(): void {
        if (disposed) return;
        disposed = true;
        current = previous;
      },
    };
  }

  override enable(): this {
    if (enabledBy === this) return this;
    enabledBy?.disable();
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- one manager holds the hooks
    enabledBy = this;
    current = ROOT_CONTEXT;
    saved.length = 0;
    stopPromiseHooks = promiseHooks.createHook({
      init: onInit,
      before: onBefore,
      after: onAfter,
    }) as () => void;
    restoreScheduling = wrapScheduling();
    const hooks = asyncResourceHooks();
    if (hooks !== undefined) {
      const lent: ResourceManager = { active: () => current, runIn };
      hooks.manager = lent;
      restoreAsyncResource = () => {
        if (hooks.manager === lent) hooks.manager = undefined;
      };
    }
    return this;
  }

  override disable(): this {
    if (enabledBy !== this) return this;
    enabledBy = undefined;
    stopPromiseHooks?.();
    stopPromiseHooks = undefined;
    restoreScheduling?.();
    restoreScheduling = undefined;
    restoreAsyncResource?.();
    restoreAsyncResource = undefined;
    current = ROOT_CONTEXT;
    saved.length = 0;
    return this;
  }
}

/** Whether the package's promise-hooks manager is the one enabled in this process. */
export function promiseContextEnabled(): boolean {
  return enabledBy !== undefined;
}

type Scheduler = (callback: unknown, ...rest: unknown[]) => unknown;

/** A scheduling function whose callback runs in the context it was scheduled in. */
function inContext(original: Scheduler): Scheduler {
  function scheduled(this: unknown, callback: unknown, ...rest: unknown[]): unknown {
    const ctx = current;
    if (ctx === ROOT_CONTEXT || typeof callback !== 'function') {
      return original.call(this, callback, ...rest);
    }
    const fn = callback as (...args: never[]) => unknown;
    return original.call(
      this,
      function (this: unknown, ...args: unknown[]) {
        return runIn(ctx, fn, this, args);
      },
      ...rest,
    );
  }
  Object.defineProperty(scheduled, 'name', { value: original.name });
  Object.defineProperty(scheduled, 'length', { value: original.length });
  // `util.promisify(setTimeout)` and `(setImmediate)` use the original's own promise form.
  const custom = (original as { [promisify.custom]?: unknown })[promisify.custom];
  if (custom !== undefined) {
    Object.defineProperty(scheduled, promisify.custom, { value: custom, configurable: true });
  }
  return scheduled;
}

/**
 * Wraps the global scheduling functions and `require('node:timers')`'s, and returns what puts
 * them back. One that was replaced again meanwhile (fake timers in a test) is left as it is.
 * ESM's `import { setTimeout } from 'node:timers'` keeps the original: refreshing the ESM
 * exports of Node's modules (`syncBuiltinESMExports`) would also publish every other patch
 * made to them, which is not this package's call.
 */
function wrapScheduling(): () => void {
  const global = globalThis as unknown as Record<string, unknown>;
  const timerExports = timers as unknown as Record<string, unknown>;
  const targets: Array<[Record<string, unknown>, string]> = [
    [global, 'setTimeout'],
    [global, 'setInterval'],
    [global, 'setImmediate'],
    [global, 'queueMicrotask'],
    [process as unknown as Record<string, unknown>, 'nextTick'],
    [timerExports, 'setTimeout'],
    [timerExports, 'setInterval'],
    [timerExports, 'setImmediate'],
  ];
  const wrappers = new Map<unknown, Scheduler>();
  const done: Array<[Record<string, unknown>, string, unknown, Scheduler]> = [];
  for (const [target, key] of targets) {
    const original = target[key];
    if (typeof original !== 'function') continue;
    let wrapper = wrappers.get(original);
    if (wrapper === undefined) wrappers.set(original, (wrapper = inContext(original as Scheduler)));
    target[key] = wrapper;
    done.push([target, key, original, wrapper]);
  }
  return () => {
    for (const [target, key, original, wrapper] of done) {
      if (target[key] === wrapper) target[key] = original;
    }
  };
}

/** What the enabled manager lends the `AsyncResource` hooks. */
interface ResourceManager {
  active(): Context;
  runIn: typeof runIn;
}

/** The process's one set of `AsyncResource` hooks, shared by every copy of the package. */
interface ResourceHooks {
  /** The manager enabled now (of whichever copy), if any. */
  manager: ResourceManager | undefined;
}

const RESOURCE_HOOKS = Symbol.for('nestjs-tracing.async-resource-hooks');

/**
 * Makes every `AsyncResource` (and subclass) run its callbacks in the context it was made in, as
 * `AsyncLocalStorage` does: a pool that hands a connection over to a callback a waiting request
 * bound with `AsyncResource.bind` runs it in that request's context, not in the context of the
 * request that released the connection. Node gives no hook at construction, but the constructor
 * assigns the resource's async id: an accessor for that property on the prototype keeps the id in
 * a property of its own and notes the context beside it (two plain stores, no property
 * definition per resource). Installed once per process, and left in place: with no manager
 * enabled it only keeps the id. A resource made under an earlier manager (before an app closed)
 * is run as Node runs it. Returns the hooks, or undefined where the property cannot be found.
 */
function asyncResourceHooks(): ResourceHooks | undefined {
  // Kept on the prototype itself: every copy of the package, and every realm (Jest gives each
  // test file globals of its own) shares Node's AsyncResource.
  const proto = AsyncResource.prototype as unknown as Record<PropertyKey, unknown> & {
    [RESOURCE_HOOKS]?: ResourceHooks | null;
  };
  const installed = proto[RESOURCE_HOOKS];
  if (installed !== undefined) return installed ?? undefined;
  const keep = (hooks: ResourceHooks | null): void => {
    Object.defineProperty(proto, RESOURCE_HOOKS, { value: hooks, configurable: true });
  };
  const idKey = Object.getOwnPropertySymbols(new AsyncResource('nestjs-tracing')).find(
    (key) => key.description === 'async_id_symbol',
  );
  const run = proto.runInAsyncScope;
  if (idKey === undefined || typeof run !== 'function' || Object.hasOwn(proto, idKey)) {
    keep(null);
    return undefined;
  }
  const hooks: ResourceHooks = { manager: undefined };
  const ID = Symbol('nestjs-tracing.async-id');
  const CONTEXT = Symbol('nestjs-tracing.resource-context');
  const MANAGER = Symbol('nestjs-tracing.resource-manager');
  type Resource = { [ID]?: unknown; [CONTEXT]?: Context; [MANAGER]?: ResourceManager };
  Object.defineProperty(proto, idKey, {
    configurable: true,
    get(this: Resource): unknown {
      return this[ID];
    },
    set(this: Resource, id: unknown): void {
      this[ID] = id;
      const manager = hooks.manager;
      if (manager === undefined) return;
      this[CONTEXT] = manager.active();
      this[MANAGER] = manager;
    },
  });
  const runInContext = function (this: Resource, ...args: unknown[]): unknown {
    const manager = hooks.manager;
    const ctx = this[CONTEXT];
    if (manager === undefined || ctx === undefined || this[MANAGER] !== manager) {
      return (run as Scheduler).apply(this, args as [unknown]);
    }
    return manager.runIn(ctx, run as (...a: never[]) => unknown, this, args);
  };
  Object.defineProperty(runInContext, 'name', { value: 'runInAsyncScope' });
  proto.runInAsyncScope = runInContext;
  keep(hooks);
  return hooks;
}

/**
 * Whether Node's `AsyncLocalStorage` runs on promise hooks in this process: up to Node 23 unless
 * started with `--experimental-async-context-frame`, and on Node 24 and later only with
 * `--no-async-context-frame`. Where it does not, `AsyncLocalStorage` costs next to nothing and
 * follows every callback, and nestjs-tracing uses it.
 */
export function asyncLocalStorageUsesPromiseHooks(
  version = process.versions.node,
  flags = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)],
): boolean {
  const major = Number(version.split('.')[0]);
  if (major >= 24) return flags.includes('--no-async-context-frame');
  return !flags.includes('--experimental-async-context-frame');
}
