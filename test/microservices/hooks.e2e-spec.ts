import { Controller, Module, type INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ClientTCP, Ctx, MessagePattern, ServerTCP, type TcpContext } from '@nestjs/microservices';
import { SpanKind, trace } from '@opentelemetry/api';
import type { AddressInfo, Server } from 'node:net';
import { firstValueFrom } from 'rxjs';
import { TracingModule } from '../../lib/index.js';
import { TestSpans, expectChildOf } from '../../lib/testing/index.js';

/** What the handler saw of the packet metadata, and which span was active in the app's hook. */
const seen: Array<{ metadata: Record<string, unknown> | undefined }> = [];
const hookSaw: Array<string | undefined> = [];

@Controller()
class EchoController {
  @MessagePattern('echo')
  echo(@Ctx() ctx: TcpContext): { ok: true } {
    seen.push({ metadata: ctx.getMetadata() });
    return { ok: true };
  }
}

async function start(options: Parameters<typeof TracingModule.forRoot>[0]) {
  const server = new ServerTCP({ host: '127.0.0.1', port: 0 });
  @Module({ imports: [TracingModule.forRoot(options)], controllers: [EchoController] })
  class AppModule {}
  const app: INestMicroservice = await NestFactory.createMicroservice(AppModule, {
    strategy: server,
    logger: false,
  });
  await app.listen();
  const port = (server.unwrap<Server>().address() as AddressInfo).port;
  const client = new ClientTCP({ host: '127.0.0.1', port });
  return { app, server, client };
}

describe('hooks the application sets itself', () => {
  let app: INestMicroservice;
  let server: ServerTCP;
  let client: ClientTCP;
  let spans: TestSpans;

  beforeAll(async () => {
    ({ app, server, client } = await start({
      exporter: 'memory',
      spanProcessor: 'simple',
      httpClient: { enabled: false },
    }));
    spans = TestSpans.from(app);
  });
  afterAll(async () => {
    client.close();
    await app.close();
  });
  beforeEach(() => {
    spans.reset();
    seen.length = 0;
    hookSaw.length = 0;
  });

  it("keeps an app's dispatch hook, set before the first send and replaced after it, and its metadata", async () => {
    client.setOnDispatchHook((packet) => {
      packet.metadata = { ...packet.metadata, 'x-user': 'first' };
    });
    await trace.getTracer('e2e').startActiveSpan('caller', async (caller) => {
      await firstValueFrom(client.send('echo', {}));
      client.setOnDispatchHook((packet) => {
        packet.metadata = { ...packet.metadata, 'x-user': 'second', traceparent: 'app-value' };
      });
      await firstValueFrom(client.send('echo', {}));
      caller.end();
    });
    const sends = spans.byName('send echo');
    expect(sends).toHaveLength(2);
    expect(seen.map((s) => s.metadata?.['x-user'])).toEqual(['first', 'second']);
    // The context is ours, even where the app's hook wrote a traceparent of its own.
    seen.forEach((s, i) => {
      const { traceId, spanId } = sends[i]!.spanContext();
      expect(s.metadata?.traceparent).toBe(`00-${traceId}-${spanId}-01`);
    });
  });

  it("gives code in the client's send pipeline the CLIENT span's ids, not the span to write to", async () => {
    const inHook: Array<{ spanId?: string; recording?: boolean }> = [];
    client.setOnDispatchHook(() => {
      const active = trace.getActiveSpan();
      inHook.push({ spanId: active?.spanContext().spanId, recording: active?.isRecording() });
      active?.setAttribute('written.in.hook', true);
      trace.getTracer('e2e').startSpan('in hook').end();
    });
    try {
      await trace.getTracer('e2e').startActiveSpan('caller', async (caller) => {
        await firstValueFrom(client.send('echo', {}));
        caller.end();
      });
    } finally {
      client.setOnDispatchHook(undefined as never);
    }
    const send = spans.one('send echo');
    expect(inHook).toEqual([{ spanId: send.spanContext().spanId, recording: false }]);
    expectChildOf(spans.one('in hook'), send);
    expect(send.attributes['written.in.hook']).toBeUndefined();
  });

  it("runs an app's processing hooks, set after the server started, inside the message's span", async () => {
    // Nest chains on what the hook returns (the processing's Promise).
    const appHook = (_transportId: unknown, _ctx: unknown, done: () => Promise<void>) => {
      hookSaw.push(trace.getActiveSpan()?.spanContext().spanId);
      return done();
    };
    server.setOnProcessingStartHook(appHook as never);
    const ended: string[] = [];
    server.setOnProcessingEndHook(() => ended.push('end'));
    await trace.getTracer('e2e').startActiveSpan('caller', async (caller) => {
      await firstValueFrom(client.send('echo', {}));
      caller.end();
    });
    const handler = await spans.waitForOne('process echo');
    expectChildOf(handler, spans.one('send echo'));
    expect(handler.kind).toBe(SpanKind.SERVER);
    expect(hookSaw).toEqual([handler.spanContext().spanId]);
    expect(ended).toEqual(['end']);
  });
});

describe('microservices: { enabled: false }', () => {
  it('traces no message and sends no context', async () => {
    const { app, client } = await start({
      exporter: 'memory',
      spanProcessor: 'simple',
      microservices: { enabled: false },
      httpClient: { enabled: false },
    });
    try {
      const spans = TestSpans.from(app);
      seen.length = 0;
      await trace.getTracer('e2e').startActiveSpan('caller', async (caller) => {
        await firstValueFrom(client.send('echo', {}));
        caller.end();
      });
      expect(spans.names()).toEqual(['caller']);
      expect(seen[0]?.metadata).toBeUndefined();
    } finally {
      client.close();
      await app.close();
    }
  });
});
