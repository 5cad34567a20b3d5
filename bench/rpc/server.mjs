// The RPC server of bench/rpc: a Nest microservice that answers `<prefix>.sum`
// requests and counts `<prefix>.event` events. Reports its counts over IPC.
import 'reflect-metadata';
import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { EventPattern, MessagePattern } from '@nestjs/microservices';
import { gcControl, inContext, patterns, tracingImports, transportOptions } from './common.mjs';

const fullGcs = gcControl();

const counts = { handled: 0, events: 0 };
const { sum, event } = patterns();

class BenchController {
  sum(data) {
    counts.handled++;
    return data.a + data.b;
  }

  event(_data) {
    counts.events++;
  }
}
for (const [key, decorator] of [
  ['sum', MessagePattern(sum)],
  ['event', EventPattern(event)],
]) {
  const descriptor = Object.getOwnPropertyDescriptor(BenchController.prototype, key);
  Object.defineProperty(
    BenchController.prototype,
    key,
    decorator(BenchController.prototype, key, descriptor) ?? descriptor,
  );
}
Controller()(BenchController);

class ServerModule {}
Module({
  imports: await tracingImports('bench-rpc-server'),
  controllers: [BenchController],
})(ServerModule);

const app = await NestFactory.createMicroservice(ServerModule, {
  ...transportOptions(),
  logger: ['error', 'warn'],
});
app.enableShutdownHooks();
await inContext(() => app.listen());

process.on('message', (message) => {
  if (message?.type === 'stats')
    process.send({ type: 'stats:reply', ...counts, majorGcs: fullGcs.majors() });
});
process.on('disconnect', () => process.kill(process.pid, 'SIGTERM'));
process.send({ type: 'ready' });
