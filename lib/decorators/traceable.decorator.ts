import type { SpanKind } from '@opentelemetry/api';
import { isNoTrace } from './no-trace.decorator.js';
import {
  isTracedMethod,
  traceMethod,
  type TracedFunction,
  type TraceOptions,
} from './trace.decorator.js';

/** Options of `@Traceable()`. */
export interface TraceableOptions {
  /** Replaces the class name in span names: `${prefix}.${methodName}`. */
  prefix?: string | undefined;
  /** Span kind of every traced method; defaults to INTERNAL. */
  kind?: SpanKind | undefined;
}

/**
 * Nest's lifecycle hooks (and a gateway's `afterInit`), which Nest calls once at start-up or
 * shutdown, outside any request:
 * traced, each would be a trace of one span at every start.
 */
const LIFECYCLE_HOOKS = new Set([
  'onModuleInit',
  'onApplicationBootstrap',
  'onModuleDestroy',
  'beforeApplicationShutdown',
  'onApplicationShutdown',
  // A WebSocket gateway's OnGatewayInit.
  'afterInit',
]);

/**
 * Traces every method the class itself declares on its prototype, as if each had `@Trace()`:
 * spans are named `ClassName.methodName` (or `prefix.methodName`) and end by the same rules.
 * Left out: the constructor, getters and setters, symbol-named methods, static methods, inherited
 * methods (decorate the parent class too), Nest's lifecycle hooks (`onModuleInit`, ...), and
 * methods marked `@NoTrace()`. A method with its own `@Trace()` keeps its options, a lifecycle
 * hook included. Decorating a class twice traces nothing twice.
 *
 * @example
 * ```ts
 * @Traceable({ prefix: 'inventory' })
 * @Injectable()
 * export class InventoryService {
 *   async reserve(sku: string) { ... }   // span "inventory.reserve"
 * }
 * ```
 */
export function Traceable(options: TraceableOptions = {}): ClassDecorator {
  const traceOptions: TraceOptions = options.kind === undefined ? {} : { kind: options.kind };
  return (target) => {
    const prototype: object = target.prototype as object;
    const prefix = options.prefix ?? target.name;
    // Method decorators, @NoTrace and @Trace included, have all run before a class decorator.
    for (const key of Object.getOwnPropertyNames(prototype)) {
      if (key === 'constructor' || LIFECYCLE_HOOKS.has(key)) continue;
      const descriptor = Object.getOwnPropertyDescriptor(prototype, key);
      const method: unknown = descriptor?.value;
      if (descriptor === undefined || typeof method !== 'function') continue;
      if (isTracedMethod(method) || isNoTrace(prototype, key, method)) continue;
      descriptor.value = traceMethod(
        method as TracedFunction,
        prefix ? `${prefix}.${key}` : key,
        traceOptions,
      );
      Object.defineProperty(prototype, key, descriptor);
    }
  };
}
