export { TracingTestingModule } from './tracing-testing.module.js';
export type { TracingTestingOptions } from './tracing-testing.module.js';
export { TestSpans } from './test-spans.js';
export type { SpanNode, ProviderLookup } from './test-spans.js';
export {
  SpanAssertionError,
  expectChildOf,
  expectError,
  expectKind,
  expectParentId,
  expectRoot,
  expectSameTrace,
} from './span-assertions.js';
