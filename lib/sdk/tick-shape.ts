import { executionAsyncResource } from 'node:async_hooks';

/** At most this many are kept, however often the SDK starts (a test suite starts it often). */
const MAX_KEPT = 4;
const kept: object[] = [];

/**
 * Keeps one `process.nextTick` record alive for the life of the process, so that V8 keeps the
 * hidden classes every such record is built with.
 *
 * Node builds each tick as an object literal with computed keys (its async id symbols, then
 * `callback` and `args`). V8 holds the hidden classes of those objects only weakly: a full GC
 * that finds no tick waiting (between two requests, say) drops them, and the next tick builds
 * new ones. After a few such GCs the inline caches that define those keys have seen too many
 * classes and give up: from then on every `nextTick` defines three of its keys through V8's
 * runtime, about 3.8k instructions a tick; with nine ticks a Fastify `GET /hello` that is some
 * 34k of the request's 200k (callgrind, Node 20; Node 24 keeps its caches either way). Whether
 * it happens depends on when the GCs of an app's start fall: a traced app loads more code at
 * start, and in the benches it happened in about one start in three. With one record kept the
 * classes stay, and the caches see one class each. Called when the package loads, and again
 * once the context manager runs, whose store adds a key to every record after it is made.
 */
export function keepTickShape(): void {
  if (kept.length >= MAX_KEPT) return;
  process.nextTick(keepCurrentTick);
}

function keepCurrentTick(): void {
  // Inside a nextTick callback the current async resource is that tick's record.
  if (kept.length < MAX_KEPT) kept.push(executionAsyncResource());
}

/** The records kept so far (for tests). */
export function keptTicks(): readonly object[] {
  return kept;
}
