// The app every HTTP variant serves: two routes on Express or Fastify.
//   GET /hello  returns a string;
//   GET /work   awaits WorkService.a(), which awaits b(), which awaits c(),
//               each with a few awaits of its own.
// BENCH_VARIANT picks how it is traced (see VARIANTS in ./bench.mjs);
// BENCH_PLATFORM is 'express' or 'fastify'. Decorators are applied by hand,
// the way TypeScript compiles them.
import 'reflect-metadata';
import { Controller, Get, Inject, Injectable, Module } from '@nestjs/common';
import { APP_INTERCEPTOR, NestFactory } from '@nestjs/core';

const variant = process.env.BENCH_VARIANT ?? 'untraced';
const platform = process.env.BENCH_PLATFORM ?? 'express';
const serviceName = process.env.BENCH_SERVICE_NAME ?? 'bench-http';

/** Applies method decorators listed top to bottom, as `@A() @B() method()` does. */
function decorate(target, key, decorators) {
  let descriptor = Object.getOwnPropertyDescriptor(target, key);
  for (const decorator of [...decorators].reverse()) {
    descriptor = decorator(target, key, descriptor) ?? descriptor;
  }
  Object.defineProperty(target, key, descriptor);
}

// What decorates the service methods for /work, per variant.
let methodDecorators = [];
let handWritten;
const imports = [];
const providers = [];

if (variant === 'nestjs-tracing' || variant === 'nestjs-tracing/main-thread') {
  const { Trace, TracingModule } = await import('nestjs-tracing');
  // BENCH_TRACING_OPTIONS (JSON, merged over the defaults) is for profiling by hand: which
  // part of the module costs what (e.g. {"exporter":"none"}, {"http":{"traceResponse":false}}).
  const extra = JSON.parse(process.env.BENCH_TRACING_OPTIONS ?? '{}');
  const thread = variant === 'nestjs-tracing/main-thread' ? { exportThread: 'main' } : {};
  imports.push(TracingModule.forRoot({ serviceName, ...thread, ...extra }));
  methodDecorators = [Trace()];
} else if (variant === 'nestjs-otel') {
  // Its README: the NodeSDK started first (here by --import ../common/otel-register.mjs),
  // then OpenTelemetryModule.forRoot(), and @Span() on the methods to trace.
  const { OpenTelemetryModule, Span } = await import('nestjs-otel');
  imports.push(OpenTelemetryModule.forRoot());
  methodDecorators = [Span()];
} else if (variant === 'untraced+interceptor') {
  class PassThroughInterceptor {
    intercept(_context, next) {
      return next.handle();
    }
  }
  Injectable()(PassThroughInterceptor);
  providers.push({ provide: APP_INTERCEPTOR, useClass: PassThroughInterceptor });
} else if (variant === 'hand-written' || variant === 'untraced+context') {
  // The two floors a hand-rolled tracer starts from, installed in front of Nest
  // (an Express middleware, a Fastify onRequest hook) once the app exists:
  //   untraced+context  what AsyncLocalStorage alone costs: every request runs
  //                     in a context of its own, no span;
  //   hand-written      one SERVER span per request, named by the method, a
  //                     few attributes, exported like the others (OTLP/protobuf,
  //                     BatchSpanProcessor defaults), no route, no headers out.
  handWritten = await import('./hand-written.mjs');
} else if (variant !== 'untraced' && variant !== 'otel-sdk') {
  throw new Error(`unknown BENCH_VARIANT '${variant}'`);
}

const tick = () => Promise.resolve();

class WorkService {
  async a() {
    await tick();
    const value = await this.b();
    await tick();
    return value + 1;
  }

  async b() {
    await tick();
    const value = await this.c();
    await tick();
    return value + 1;
  }

  async c() {
    await tick();
    await tick();
    await tick();
    return 1;
  }
}
for (const key of ['a', 'b', 'c']) decorate(WorkService.prototype, key, methodDecorators);
Injectable()(WorkService);

class BenchController {
  constructor(service) {
    this.service = service;
  }

  hello() {
    return 'hello';
  }

  async work() {
    return { result: await this.service.a() };
  }
}
decorate(BenchController.prototype, 'hello', [Get('hello')]);
decorate(BenchController.prototype, 'work', [Get('work')]);
Inject(WorkService)(BenchController, undefined, 0);
Controller()(BenchController);

class AppModule {}
Module({
  imports,
  controllers: [BenchController],
  providers: [WorkService, ...providers],
})(AppModule);

let adapter;
if (platform === 'fastify') {
  const { FastifyAdapter } = await import('@nestjs/platform-fastify');
  adapter = new FastifyAdapter();
} else if (platform !== 'express') {
  throw new Error(`unknown BENCH_PLATFORM '${platform}'`);
}

const options = { logger: ['error', 'warn'] };
const app = adapter
  ? await NestFactory.create(AppModule, adapter, options)
  : await NestFactory.create(AppModule, options);
handWritten?.install(app, platform, { spans: variant === 'hand-written', serviceName });
// With the NodeSDK (and the hand-written tracers) their own SIGTERM handler flushes and exits;
// otherwise Nest's shutdown hooks close the app (and TracingModule flushes).
const sdkOwnsShutdown =
  variant === 'otel-sdk' || variant === 'nestjs-otel' || handWritten !== undefined;
if (!sdkOwnsShutdown) app.enableShutdownHooks();
await app.listen(0, '127.0.0.1');
const { port } = app.getHttpServer().address();
// bench/outage follows the heap as well as RSS.
process.on('message', (message) => {
  if (message?.type !== 'memory') return;
  if (message.gc) globalThis.gc?.(); // only with --expose-gc, for leak hunting by hand
  process.send({ type: 'memory:reply', ...process.memoryUsage() });
});
process.on('disconnect', () => process.kill(process.pid, 'SIGTERM'));
process.send?.({ type: 'ready', port });
