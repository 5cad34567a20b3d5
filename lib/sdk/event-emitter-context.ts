import type { ModulesContainer } from '@nestjs/core';

/**
 * `@OnEvent(event, { async: true })` listeners of `@nestjs/event-emitter`, under the promise-hooks
 * context manager.
 *
 * eventemitter2 runs such a listener from a `setImmediate` it saved when it loaded, before this
 * module wrapped the global one, so the listener would start outside the context of the code
 * that emitted the event: a span it starts would begin a trace of its own. Each EventEmitter2
 * instance of the application registers its async listeners through `_on`: the wrapper hands
 * eventemitter2 a listener that schedules the call itself, through the global `setImmediate`,
 * which carries the context. Timing, `this.event`, the return value and `off()` stay as they
 * were. Listeners that eventemitter2 runs through a Promise (`promisify`, an `async` function)
 * or `process.nextTick` already keep the context and are left alone.
 *
 * Returns what undoes the wrapping of `_on` (listeners registered meanwhile stay as they are).
 */
export function followAsyncEventListeners(modules: ModulesContainer): () => void {
  const patched: EventEmitterLike[] = [];
  for (const module of modules.values()) {
    for (const wrapper of module.providers.values()) {
      const instance = instanceOf(wrapper);
      if (!isEventEmitter2(instance) || Object.prototype.hasOwnProperty.call(instance, '_on')) {
        continue;
      }
      const register = instance._on;
      instance._on = function (this: EventEmitterLike, type, listener, prepend, options) {
        if (
          typeof listener !== 'function' ||
          !runsFromSavedImmediate(listener as Listener, options)
        ) {
          return register.call(this, type, listener, prepend, options);
        }
        const own = options === false ? {} : { ...(options as object), async: false };
        return register.call(this, type, scheduledListener(listener as Listener), prepend, own);
      };
      patched.push(instance);
    }
  }
  return () => {
    for (const instance of patched.splice(0)) delete (instance as Partial<EventEmitterLike>)._on;
  };
}

type Listener = ((this: unknown, ...args: unknown[]) => unknown) & {
  _origin?: unknown;
  _async?: boolean;
};

interface EventEmitterLike {
  _on(type: unknown, listener: unknown, prepend: unknown, options: unknown): unknown;
  emitAsync: unknown;
  listenTo: unknown;
}

function instanceOf(wrapper: unknown): unknown {
  try {
    return (wrapper as { instance?: unknown }).instance;
  } catch {
    return undefined;
  }
}

function isEventEmitter2(value: unknown): value is EventEmitterLike {
  if (value === null || typeof value !== 'object') return false;
  const emitter = value as Partial<Record<keyof EventEmitterLike, unknown>>;
  return (
    typeof emitter._on === 'function' &&
    typeof emitter.emitAsync === 'function' &&
    typeof emitter.listenTo === 'function'
  );
}

/** What eventemitter2's `setupListener` schedules with its saved `setImmediate`. */
function runsFromSavedImmediate(listener: Listener, options: unknown): boolean {
  let async: unknown;
  let nextTick: unknown;
  let promisify: unknown;
  if (options === false) {
    // eventemitter2's shorthand for `{ async: true }`.
    async = true;
  } else if (options !== null && typeof options === 'object') {
    ({ async, nextTick, promisify } = options as Record<string, unknown>);
  } else {
    return false;
  }
  if (!async || nextTick) return false;
  // As eventemitter2 decides: only a missing `promisify` defaults to "is an async function".
  if (promisify === undefined) promisify = listener.constructor?.name === 'AsyncFunction';
  return !promisify;
}

/** The listener, run on the next turn through the global `setImmediate`, as eventemitter2 would. */
function scheduledListener(listener: Listener): Listener {
  const scheduled: Listener = function (this: unknown, ...args: unknown[]) {
    const emitter = this as { event?: unknown };
    const event = emitter.event;
    return setImmediate(() => {
      emitter.event = event;
      listener.apply(emitter, args);
    });
  };
  // How eventemitter2 finds the listener again for off() and listeners().
  scheduled._origin = listener._origin ?? listener;
  scheduled._async = true;
  return scheduled;
}
