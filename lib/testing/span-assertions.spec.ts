import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Context,
  type SpanStatus,
} from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { localTracer, remoteContext } from '../../test/support/local-tracer.js';
import {
  SpanAssertionError,
  expectChildOf,
  expectError,
  expectKind,
  expectParentId,
  expectRoot,
  expectSameTrace,
} from './span-assertions.js';

const { exporter, tracer } = localTracer('assertions');

const REMOTE_TRACE = 'ab'.repeat(16);
const REMOTE_SPAN = 'cd'.repeat(8);
const remote = remoteContext;

/** Starts and ends a span, and returns what the exporter received. */
function span(
  name: string,
  options: { parent?: ReadableSpan | Context; kind?: SpanKind; status?: SpanStatus } = {},
): ReadableSpan {
  const parent = options.parent;
  const ctx =
    parent === undefined
      ? ROOT_CONTEXT
      : 'spanContext' in parent
        ? trace.setSpanContext(ROOT_CONTEXT, parent.spanContext())
        : parent;
  const started = tracer.startSpan(name, { kind: options.kind ?? SpanKind.INTERNAL }, ctx);
  if (options.status) started.setStatus(options.status);
  started.end();
  const finished = exporter.getFinishedSpans().at(-1);
  if (finished?.spanContext().spanId !== started.spanContext().spanId) {
    throw new Error(`span ${name} was not exported`);
  }
  return finished;
}

/** Runs an assertion that must fail, and returns its error. */
function failure(assertion: () => unknown): SpanAssertionError {
  try {
    assertion();
  } catch (error) {
    expect(error).toBeInstanceOf(SpanAssertionError);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).name).toBe('SpanAssertionError');
    return error as SpanAssertionError;
  }
  throw new Error('expected the assertion to throw, it passed');
}

const label = (s: ReadableSpan) =>
  `'${s.name}' (trace ${s.spanContext().traceId}, span ${s.spanContext().spanId})`;

let root: ReadableSpan;
let child: ReadableSpan;
let grandchild: ReadableSpan;
let sibling: ReadableSpan;
let otherRoot: ReadableSpan;
let remoteChild: ReadableSpan;

beforeAll(() => {
  root = span('root', { kind: SpanKind.SERVER });
  child = span('child', { parent: root });
  grandchild = span('grandchild', { parent: child, kind: SpanKind.CLIENT });
  sibling = span('sibling', { parent: root });
  otherRoot = span('other-root');
  remoteChild = span('remote-child', {
    parent: remote(REMOTE_TRACE, REMOTE_SPAN),
    kind: SpanKind.SERVER,
  });
});

it('the fixture spans form the expected trees', () => {
  expect(child.spanContext().traceId).toBe(root.spanContext().traceId);
  expect(otherRoot.spanContext().traceId).not.toBe(root.spanContext().traceId);
  expect(remoteChild.spanContext().traceId).toBe(REMOTE_TRACE);
});

describe('SpanAssertionError', () => {
  it('is an Error named SpanAssertionError carrying the message', () => {
    const error = new SpanAssertionError('readable');
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('SpanAssertionError');
    expect(error.message).toBe('readable');
  });
});

describe('expectChildOf', () => {
  it('passes for a direct child, at any level', () => {
    expect(() => expectChildOf(child, root)).not.toThrow();
    expect(() => expectChildOf(grandchild, child)).not.toThrow();
    expect(() => expectChildOf(sibling, root)).not.toThrow();
  });

  it('fails for a grandchild of the span (only direct parents count)', () => {
    const error = failure(() => expectChildOf(grandchild, root));
    expect(error.message).toBe(
      `Expected ${label(grandchild)} to be a child of ${label(root)}, but its parent is ` +
        `span ${child.spanContext().spanId} of trace ${child.spanContext().traceId}`,
    );
  });

  it('fails for a root, saying it has no parent', () => {
    const error = failure(() => expectChildOf(otherRoot, root));
    expect(error.message).toBe(
      `Expected ${label(otherRoot)} to be a child of ${label(root)}, but its parent is none (it is a root)`,
    );
  });

  it('fails the other way round (a parent is not a child of its child)', () => {
    failure(() => expectChildOf(root, child));
    failure(() => expectChildOf(child, sibling));
  });

  it('fails for a span whose parent has the same span id in another trace', () => {
    const impostor = span('impostor', {
      parent: remote(REMOTE_TRACE, root.spanContext().spanId),
    });
    expect(impostor.parentSpanContext?.spanId).toBe(root.spanContext().spanId);
    const error = failure(() => expectChildOf(impostor, root));
    expect(error.message).toContain(`of trace ${REMOTE_TRACE}`);
  });
});

describe('expectParentId', () => {
  it('passes when the parent span id matches, local or remote', () => {
    expect(() => expectParentId(child, root.spanContext().spanId)).not.toThrow();
    expect(() => expectParentId(remoteChild, REMOTE_SPAN)).not.toThrow();
  });

  it('fails for another parent, with both ids', () => {
    const error = failure(() => expectParentId(grandchild, root.spanContext().spanId));
    expect(error.message).toBe(
      `Expected ${label(grandchild)} to have parent ${root.spanContext().spanId}, got ${child.spanContext().spanId}`,
    );
  });

  it('fails for a root, saying none', () => {
    const error = failure(() => expectParentId(root, REMOTE_SPAN));
    expect(error.message).toBe(`Expected ${label(root)} to have parent ${REMOTE_SPAN}, got none`);
  });
});

describe('expectSameTrace', () => {
  it('returns the trace id of spans of one trace', () => {
    expect(expectSameTrace([root, child, grandchild, sibling])).toBe(root.spanContext().traceId);
    expect(expectSameTrace([remoteChild])).toBe(REMOTE_TRACE);
  });

  it('fails for no spans', () => {
    expect(failure(() => expectSameTrace([])).message).toBe(
      'Expected spans of one trace, got no spans',
    );
  });

  it('fails for spans of several traces, listing each with its trace', () => {
    const error = failure(() => expectSameTrace([root, child, otherRoot]));
    const a = root.spanContext().traceId;
    const b = otherRoot.spanContext().traceId;
    expect(error.message).toBe(
      `Expected one trace, found 2: root=${a}, child=${a}, other-root=${b}`,
    );
  });
});

describe('expectRoot', () => {
  it('passes for a span without a parent', () => {
    expect(() => expectRoot(root)).not.toThrow();
    expect(() => expectRoot(otherRoot)).not.toThrow();
  });

  it('fails for a child, naming its parent', () => {
    const error = failure(() => expectRoot(child));
    expect(error.message).toBe(
      `Expected ${label(child)} to be a root span, but its parent is ${root.spanContext().spanId}`,
    );
  });

  it('fails for a span with a remote parent', () => {
    const error = failure(() => expectRoot(remoteChild));
    expect(error.message).toContain(`its parent is ${REMOTE_SPAN}`);
  });
});

describe('expectKind', () => {
  it('passes for the span kind', () => {
    expect(() => expectKind(root, SpanKind.SERVER)).not.toThrow();
    expect(() => expectKind(child, SpanKind.INTERNAL)).not.toThrow();
    expect(() => expectKind(grandchild, SpanKind.CLIENT)).not.toThrow();
  });

  it('fails for another kind, with the span and both kinds', () => {
    const error = failure(() => expectKind(child, SpanKind.CLIENT));
    // By name, as printTree shows them.
    expect(error.message).toBe(`Expected ${label(child)} to be of kind CLIENT, got INTERNAL`);
    failure(() => expectKind(root, SpanKind.INTERNAL));
  });
});

describe('a lookup that found nothing, handed to an assertion', () => {
  it.each([
    ['expectChildOf', () => expectChildOf(undefined as never, root), 'the child is undefined'],
    ['expectChildOf', () => expectChildOf(child, undefined as never), 'the parent is undefined'],
    ['expectParentId', () => expectParentId(undefined as never, 'ab'), 'the span is undefined'],
    ['expectSameTrace', () => expectSameTrace([root, undefined as never]), 'spans[1] is undefined'],
    ['expectRoot', () => expectRoot(null as never), 'the span is null'],
    ['expectKind', () => expectKind(undefined as never, SpanKind.SERVER), 'the span is undefined'],
    ['expectError', () => expectError({} as never), 'the span is an object'],
  ])('%s says so in a SpanAssertionError', (name, call, what) => {
    const error = failure(call);
    expect(error.message).toBe(`${name}: ${what}, not a span (did a lookup find none?)`);
  });
});

describe('expectError', () => {
  let failed: ReadableSpan;
  let failedSilently: ReadableSpan;
  let ok: ReadableSpan;
  beforeAll(() => {
    failed = span('failed', {
      status: { code: SpanStatusCode.ERROR, message: 'upstream timed out' },
    });
    failedSilently = span('failed-silently', { status: { code: SpanStatusCode.ERROR } });
    ok = span('ok', { status: { code: SpanStatusCode.OK } });
  });

  it('passes for status ERROR when no message is asked for', () => {
    expect(() => expectError(failed)).not.toThrow();
    expect(() => expectError(failedSilently)).not.toThrow();
  });

  it('passes when the message is equal, or matches the RegExp', () => {
    expect(() => expectError(failed, 'upstream timed out')).not.toThrow();
    expect(() => expectError(failed, /timed out$/)).not.toThrow();
    expect(() => expectError(failedSilently, '')).not.toThrow();
  });

  it('fails for status UNSET and OK, naming the status', () => {
    expect(failure(() => expectError(root)).message).toBe(
      `Expected ${label(root)} to have status ERROR, got UNSET`,
    );
    expect(failure(() => expectError(ok)).message).toBe(
      `Expected ${label(ok)} to have status ERROR, got OK`,
    );
    // The status is checked before the message.
    failure(() => expectError(ok, /.*/));
  });

  it('fails for another message: a string must be equal, not a substring', () => {
    expect(failure(() => expectError(failed, 'upstream')).message).toBe(
      `Expected ${label(failed)} status message upstream, got 'upstream timed out'`,
    );
    failure(() => expectError(failed, 'Upstream timed out'));
  });

  it('fails when the RegExp does not match, and for a missing message', () => {
    expect(failure(() => expectError(failed, /refused/)).message).toBe(
      `Expected ${label(failed)} status message /refused/, got 'upstream timed out'`,
    );
    expect(failure(() => expectError(failedSilently, /./)).message).toBe(
      `Expected ${label(failedSilently)} status message /./, got ''`,
    );
  });
});
