/**
 * Metadata key `@NoTrace()` sets on a method, read by `@Traceable()`. A `Symbol.for` key so that
 * two copies of the package in one process still understand each other's marks.
 */
export const NO_TRACE_METADATA = Symbol.for('nestjs-tracing:no-trace');
