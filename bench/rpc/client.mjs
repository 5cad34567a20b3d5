// The load side of bench/rpc: a Nest application context with a ClientsModule
// client, keeping `inFlight` requests (`send`, answered) or events (`emit`,
// confirmed by the broker) in flight. Driven over IPC by ./bench.mjs:
//   'run' → warm-up → 'measuring' → measured window → 'measured' → drain → 'done'.
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ClientsModule } from '@nestjs/microservices';
import { lastValueFrom } from 'rxjs';
import { gcControl, inContext, patterns, tracingImports, transportOptions } from './common.mjs';

const fullGcs = gcControl();

const CLIENT = 'BENCH_CLIENT';
const events = process.env.BENCH_MODE === 'emit';
const { sum, event } = patterns();

class ClientModule {}
Module({
  imports: [
    ...(await tracingImports('bench-rpc-client')),
    ClientsModule.register([{ name: CLIENT, ...transportOptions() }]),
  ],
})(ClientModule);

const app = await NestFactory.createApplicationContext(ClientModule, {
  logger: ['error', 'warn'],
});
app.enableShutdownHooks();
const client = app.get(CLIENT);
await client.connect();

const payload = { a: 1, b: 2 };
const operation = events
  ? () => lastValueFrom(client.emit(event, payload), { defaultValue: undefined })
  : () => lastValueFrom(client.send(sum, payload));

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const cpu = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

async function run({ warmupSeconds, seconds, inFlight }) {
  const totals = { issued: 0, completed: 0, errors: 0 };
  let firstError;
  let stop = false;
  const worker = async () => {
    while (!stop) {
      totals.issued++;
      try {
        await operation();
        totals.completed++;
      } catch (error) {
        totals.errors++;
        firstError ??= String(error?.message ?? error);
      }
    }
  };
  const workers = await inContext(() => Array.from({ length: inFlight }, worker));
  await sleep(warmupSeconds * 1000);
  const start = {
    completed: totals.completed,
    t: performance.now(),
    cpu: cpu(),
    gcs: fullGcs.majors(),
  };
  process.send({ type: 'measuring' });
  await sleep(seconds * 1000);
  const end = {
    completed: totals.completed,
    t: performance.now(),
    cpu: cpu(),
    gcs: fullGcs.majors(),
  };
  process.send({
    type: 'measured',
    completed: end.completed - start.completed,
    seconds: (end.t - start.t) / 1000,
    cpuMicros: end.cpu - start.cpu,
    majorGcs: end.gcs - start.gcs,
  });
  stop = true;
  await Promise.all(workers);
  process.send({ type: 'done', ...totals, firstError });
}

process.on('message', (message) => {
  if (message?.type === 'run') {
    run(message).catch((error) =>
      process.send({ type: 'done', fatal: String(error?.stack ?? error) }),
    );
  }
});
process.on('disconnect', () => process.kill(process.pid, 'SIGTERM'));
process.send({ type: 'ready' });
