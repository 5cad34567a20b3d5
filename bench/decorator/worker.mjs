// The measuring process of bench/decorator: ns per awaited call of a method,
// bare, wrapped by hand in tracer.startActiveSpan, and decorated with @Trace()
// from the built package. A NodeTracerProvider registered here (AsyncLocalStorage
// context manager, BatchSpanProcessor) exports to a no-op exporter that counts.
import 'reflect-metadata';
import { SpanStatusCode, trace } from '@opentelemetry/api';
import { ExportResultCode } from '@opentelemetry/core';
import { BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { lastValueFrom, of } from 'rxjs';
import { Trace } from 'nestjs-tracing';

let exported = 0;
const exporter = {
  export(spans, done) {
    exported += spans.length;
    done({ code: ExportResultCode.SUCCESS });
  },
  shutdown: async () => undefined,
  forceFlush: async () => undefined,
};
const provider = new NodeTracerProvider({ spanProcessors: [new BatchSpanProcessor(exporter)] });
provider.register();
// The hand-written way holds its tracer in a module constant.
const tracer = trace.getTracer('bench-decorator');

function failed(span, error) {
  span.recordException(error);
  span.setStatus({ code: SpanStatusCode.ERROR, message: error?.message });
}

class Service {
  async bareAsync() {
    return 1;
  }

  bareSync() {
    return 1;
  }

  bareObservable() {
    return of(1);
  }

  handAsync() {
    return tracer.startActiveSpan('Service.handAsync', async (span) => {
      try {
        return 1;
        // The wrapper anyone writes around a method that can throw; this body cannot.
        // eslint-disable-next-line no-unreachable
      } catch (error) {
        failed(span, error);
        throw error;
      } finally {
        span.end();
      }
    });
  }

  handSync() {
    return tracer.startActiveSpan('Service.handSync', (span) => {
      try {
        return 1;
        // The wrapper anyone writes around a method that can throw; this body cannot.
        // eslint-disable-next-line no-unreachable
      } catch (error) {
        failed(span, error);
        throw error;
      } finally {
        span.end();
      }
    });
  }

  async traceAsync() {
    return 1;
  }

  traceSync() {
    return 1;
  }

  traceObservable() {
    return of(1);
  }
}
for (const key of ['traceAsync', 'traceSync', 'traceObservable']) {
  const descriptor = Object.getOwnPropertyDescriptor(Service.prototype, key);
  Object.defineProperty(
    Service.prototype,
    key,
    Trace()(Service.prototype, key, descriptor) ?? descriptor,
  );
}

/**
 * One loop per case, each compiled from its own source, so no case shares
 * call-site feedback with another.
 */
const CASES = [
  { name: 'bare async method', kind: 'async', call: 's.bareAsync()' },
  { name: 'startActiveSpan wrapper (async)', kind: 'async', hand: true, call: 's.handAsync()' },
  { name: '@Trace() async method', kind: 'async', traced: true, call: 's.traceAsync()' },
  { name: 'bare sync method', kind: 'sync', call: 's.bareSync()' },
  { name: 'startActiveSpan wrapper (sync)', kind: 'sync', hand: true, call: 's.handSync()' },
  { name: '@Trace() sync method', kind: 'sync', traced: true, call: 's.traceSync()' },
  { name: 'bare Observable method', kind: 'observable', call: 'lastValueFrom(s.bareObservable())' },
  {
    name: '@Trace() Observable method',
    kind: 'observable',
    traced: true,
    call: 'lastValueFrom(s.traceObservable())',
  },
].map((c) => ({
  ...c,
  loop: new Function(
    's',
    'lastValueFrom',
    `return async function loop(n) { for (let i = 0; i < n; i++) await ${c.call}; };`,
  )(new Service(), lastValueFrom),
}));

const gc = globalThis.gc ?? (() => undefined);

async function time(c, calls) {
  gc();
  const start = process.hrtime.bigint();
  await c.loop(calls);
  return Number(process.hrtime.bigint() - start) / calls;
}

process.on('message', async (message) => {
  if (message?.type !== 'run') return;
  const { calls, rounds, warmupCalls } = message;
  let spansExpected = 0;
  for (const c of CASES) {
    await time(c, warmupCalls);
    if (c.traced || c.hand) spansExpected += warmupCalls;
  }
  const results = Object.fromEntries(CASES.map((c) => [c.name, []]));
  for (let round = 0; round < rounds; round++) {
    // Interleaved, and each round starts one case further on.
    for (let i = 0; i < CASES.length; i++) {
      const c = CASES[(i + round) % CASES.length];
      results[c.name].push(await time(c, calls));
      if (c.traced || c.hand) spansExpected += calls;
    }
  }
  await provider.forceFlush();
  process.send({
    type: 'result',
    cases: CASES.map(({ name, kind, hand, traced }) => ({
      name,
      kind,
      hand,
      traced,
      ns: results[name],
    })),
    exported,
    spansExpected,
  });
});
process.send({ type: 'ready' });
