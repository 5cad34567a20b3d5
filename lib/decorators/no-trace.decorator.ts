import { NO_TRACE_METADATA } from './decorators.constants.js';

// Where the mark goes when reflect-metadata is not loaded (plain classes outside Nest).
const markedWithoutMetadata = new WeakSet<object>();

/**
 * Keeps one method of a `@Traceable()` class out of tracing, for hot or trivial methods whose
 * spans would only be noise. It has no effect on a method that also has `@Trace()`.
 *
 * @example
 * ```ts
 * @Traceable()
 * export class PricingService {
 *   quote(sku: string) { ... }     // traced
 *   @NoTrace()
 *   round(n: number) { ... }       // not traced
 * }
 * ```
 */
export function NoTrace(): MethodDecorator {
  return (target, propertyKey, descriptor) => {
    const method: unknown = descriptor.value;
    if (typeof Reflect.defineMetadata !== 'function') {
      if (typeof method === 'function') markedWithoutMetadata.add(method);
      return;
    }
    // On the function, the way Nest's own method decorators store theirs; and on the property,
    // which survives a decorator above this one replacing the function without copying metadata.
    if (typeof method === 'function') Reflect.defineMetadata(NO_TRACE_METADATA, true, method);
    Reflect.defineMetadata(NO_TRACE_METADATA, true, target, propertyKey);
  };
}

/**
 * Whether `@NoTrace()` marks the method `key` of `prototype` (whose current value is `method`).
 *
 * @internal
 */
export function isNoTrace(prototype: object, key: string | symbol, method: object): boolean {
  if (markedWithoutMetadata.has(method)) return true;
  if (typeof Reflect.getMetadata !== 'function') return false;
  return (
    Reflect.getOwnMetadata(NO_TRACE_METADATA, prototype, key) === true ||
    Reflect.getMetadata(NO_TRACE_METADATA, method) === true
  );
}
