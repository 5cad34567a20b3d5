// What the RPC server and client processes share: transport options and the
// module that traces a variant.
import { constants, PerformanceObserver } from 'node:perf_hooks';
import { Transport } from '@nestjs/microservices';
import { VARIANTS } from './variants.mjs';

export const NATS_URL = 'nats://127.0.0.1:4222';
export const RMQ_URL = 'amqp://guest:guest@127.0.0.1:5672';

/**
 * BENCH_TRANSPORT: tcp | nats | rmq. BENCH_PREFIX makes patterns (and the
 * RabbitMQ queue) unique to one run, so that nothing else using the same
 * brokers on this machine is seen, or sees the bench.
 */
export function transportOptions() {
  const transport = process.env.BENCH_TRANSPORT;
  const prefix = process.env.BENCH_PREFIX ?? 'bench';
  switch (transport) {
    case 'tcp':
      return {
        transport: Transport.TCP,
        options: { host: '127.0.0.1', port: Number(process.env.BENCH_TCP_PORT) },
      };
    case 'nats':
      return { transport: Transport.NATS, options: { servers: [NATS_URL] } };
    case 'rmq':
      return {
        transport: Transport.RMQ,
        options: {
          urls: [RMQ_URL],
          queue: prefix,
          queueOptions: { durable: false, autoDelete: true },
        },
      };
    default:
      throw new Error(`unknown BENCH_TRANSPORT '${transport}'`);
  }
}

export const patterns = () => {
  const prefix = process.env.BENCH_PREFIX ?? 'bench';
  return { sum: `${prefix}.sum`, event: `${prefix}.event` };
};

const variant = process.env.BENCH_VARIANT ?? 'untraced';
if (!VARIANTS.includes(variant)) {
  throw new Error(`unknown BENCH_VARIANT '${variant}'`);
}

/**
 * The modules a side imports for its variant (TracingModule.forRoot when traced), after
 * registering the context manager of a `untraced+...` variant; see {@link inContext}.
 */
export async function tracingImports(serviceName) {
  if (variant === 'untraced') return [];
  if (variant.startsWith('untraced+')) {
    const { context } = await import('@opentelemetry/api');
    const { AsyncLocalStorageContextManager } = await import('@opentelemetry/context-async-hooks');
    // The package's own manager where `contextManager: 'auto'` picks it (an internal module of
    // the build: the bench runs in this repository, after `npm run build`).
    const own =
      variant === 'untraced+own-context'
        ? await import('../../dist/sdk/promise-context-manager.js')
        : undefined;
    const manager = own?.asyncLocalStorageUsesPromiseHooks()
      ? new own.PromiseContextManager()
      : new AsyncLocalStorageContextManager();
    context.setGlobalContextManager(manager.enable());
    return [];
  }
  const { TracingModule } = await import('nestjs-tracing');
  // BENCH_TRACING_OPTIONS (JSON, merged over the defaults) is for profiling by hand, as in
  // bench/http: e.g. {"exporter":"none"}.
  const extra = JSON.parse(process.env.BENCH_TRACING_OPTIONS ?? '{}');
  const sampler = variant === 'traced/sampled-out' ? { sampler: { ratio: 0 } } : {};
  return [TracingModule.forRoot({ serviceName, ...sampler, ...extra })];
}

const MARK = Symbol('bench.rpc.context');

/**
 * Runs `fn` (the server's listen, the client's senders) in a context of its own for the
 * `untraced+...` variants: every promise a message makes then carries that context, as it would
 * carry a span's (on Node 20 the context manager's promise hooks run for each). Other variants:
 * `fn()`.
 */
export async function inContext(fn) {
  if (!variant.startsWith('untraced+')) return fn();
  const { context, ROOT_CONTEXT } = await import('@opentelemetry/api');
  return context.with(ROOT_CONTEXT.setValue(MARK, true), fn);
}

/**
 * What both sides do about the garbage collector: run a full GC when the bench asks (`gc`, sent
 * half-way through the warm-up, in every variant; needs `--expose-gc`), and count the full GCs
 * (mark-compacts) since start, for the table's column. See FULL_GC_NOTE in ./bench.mjs.
 */
export function gcControl() {
  let majors = 0;
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      if (entry.detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) majors++;
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  process.on('message', (message) => {
    if (message?.type === 'gc') globalThis.gc?.();
  });
  return { majors: () => majors };
}
