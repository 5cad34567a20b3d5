// What the RPC server and client processes share: transport options and the
// module that traces a variant.
import { Transport } from '@nestjs/microservices';

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

/** The modules a side imports for its variant: TracingModule.forRoot when traced. */
export async function tracingImports(serviceName) {
  const variant = process.env.BENCH_VARIANT ?? 'untraced';
  if (variant === 'untraced') return [];
  if (variant !== 'traced') throw new Error(`unknown BENCH_VARIANT '${variant}'`);
  const { TracingModule } = await import('nestjs-tracing');
  return [TracingModule.forRoot({ serviceName })];
}
