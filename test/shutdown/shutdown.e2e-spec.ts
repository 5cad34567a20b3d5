import { Controller, Get, Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { SpanStatusCode } from '@opentelemetry/api';
import { ExportResultCode } from '@opentelemetry/core';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import http from 'node:http';
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { Trace, TracingModule } from '../../lib/index.js';
import { OtlpSink } from '../support/otlp-sink.js';
import { platforms, startApp } from '../support/platforms.js';

@Injectable()
class WorkService {
  @Trace()
  async work(n: number): Promise<number> {
    await new Promise((r) => setTimeout(r, 1));
    return n * 2;
  }
}

@Controller()
class WorkController {
  constructor(private readonly service: WorkService) {}
  @Get('work')
  work() {
    return this.service.work(21);
  }
}

@Module({ controllers: [WorkController], providers: [WorkService] })
class WorkModule {}

/** Runs `fn` with environment variables set, restoring them afterwards. */
async function withEnv<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

describe.each([
  ['http/protobuf', platforms[0]],
  ['http/json', platforms[1]],
] as const)('shutdown with the default batch processor, OTLP %s, on %s', (protocol, platform) => {
  const sink = new OtlpSink();
  let endpoint: string;

  beforeAll(async () => {
    endpoint = await sink.start();
  });
  afterAll(() => sink.stop());

  it('exports every span of requests finished just before app.close()', async () => {
    // The batch processor would wait 5 s; nothing reaches the sink before close.
    const { app, url } = await withEnv(
      { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_EXPORTER_OTLP_PROTOCOL: protocol },
      () =>
        startApp(platform, [
          TracingModule.forRoot({ serviceName: `shutdown-${protocol}` }),
          WorkModule,
        ]),
    );
    const count = 50;
    const responses = await Promise.all(
      Array.from({ length: count }, () => fetch(`${url}/work`).then((r) => r.text())),
    );
    expect(responses.every((body) => body === '42')).toBe(true);
    expect(sink.spans).toHaveLength(0);

    await app.close();

    const servers = sink.spans.filter((s) => s.name === 'GET /work');
    const children = sink.spans.filter((s) => s.name === 'WorkService.work');
    expect(servers).toHaveLength(count);
    expect(children).toHaveLength(count);
    expect(new Set(servers.map((s) => s.traceId)).size).toBe(count);
    for (const child of children) {
      const parent = servers.find((s) => s.spanId === child.parentSpanId);
      expect(parent?.traceId).toBe(child.traceId);
    }
    expect(new Set(sink.spans.map((s) => s.serviceName))).toEqual(
      new Set([`shutdown-${protocol}`]),
    );
  });
});

/** A request that waits until it is let go, and says when it has started. */
@Controller()
class SlowController {
  static started: () => void = () => undefined;
  static release: () => void = () => undefined;
  @Get('slow')
  async slow(): Promise<string> {
    await new Promise<void>((resolve) => {
      SlowController.release = resolve;
      SlowController.started();
    });
    return 'done';
  }
}

describe.each(platforms)('a request cut off by app.close(), on $name', (platform) => {
  /** Keeps what the batch processor exports at shutdown, attributes included. */
  function recordingExporter(): SpanExporter & { spans: ReadableSpan[] } {
    const spans: ReadableSpan[] = [];
    return {
      spans,
      export: (batch, done) => {
        spans.push(...batch);
        done({ code: ExportResultCode.SUCCESS });
      },
      shutdown: async () => undefined,
    };
  }

  async function startSlowApp(forceCloseConnections: boolean) {
    const exporter = recordingExporter();
    @Module({
      imports: [TracingModule.forRoot({ serviceName: 'cut-off', exporter })],
      controllers: [SlowController],
    })
    class SlowModule {}
    const app = await NestFactory.create(SlowModule, platform.adapter(), {
      logger: false,
      forceCloseConnections,
    });
    await app.listen(0, '127.0.0.1');
    const { port } = app.getHttpServer().address() as { port: number };
    const started = new Promise<void>((resolve) => (SlowController.started = resolve));
    const request = http.get({ host: '127.0.0.1', port, path: '/slow', agent: false });
    const failed = once(request, 'error');
    await started;
    return { app, exporter, request, failed };
  }

  function expectAborted(spans: ReadableSpan[]): void {
    const server = spans.find((s) => s.name === 'GET /slow');
    expect(server?.attributes['error.type']).toBe('aborted');
    expect(server?.status.code).toBe(SpanStatusCode.ERROR);
  }

  it('exports its span when forceCloseConnections closed its connection', async () => {
    const { app, exporter, failed } = await startSlowApp(true);
    await app.close();
    await failed;
    expectAborted(exporter.spans);
    SlowController.release();
  });

  it('exports its span when its client left while app.close() waited for it', async () => {
    const { app, exporter, request, failed } = await startSlowApp(false);
    const closed = app.close();
    setTimeout(() => request.destroy(), 50);
    await closed;
    await failed;
    expectAborted(exporter.spans);
    SlowController.release();
  });
});

describe('OTEL_* environment at a real OTLP endpoint', () => {
  const sink = new OtlpSink();
  afterAll(() => sink.stop());

  it('sends the configured headers, service name and resource attributes', async () => {
    const endpoint = await sink.start();
    const { app, url } = await withEnv(
      {
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${endpoint}/v1/traces`,
        OTEL_EXPORTER_OTLP_HEADERS: 'x-api-key=secret-1,x-tenant=acme',
        OTEL_SERVICE_NAME: 'from-env',
        OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=e2e',
      },
      () => startApp(platforms[0], [TracingModule.forRoot(), WorkModule]),
    );
    expect(await (await fetch(`${url}/work`)).text()).toBe('42');
    await app.close();
    expect(sink.spans.map((s) => s.name).sort()).toEqual(['GET /work', 'WorkService.work']);
    expect(new Set(sink.spans.map((s) => s.serviceName))).toEqual(new Set(['from-env']));
    for (const span of sink.spans) {
      expect(span.resource['deployment.environment.name']).toBe('e2e');
    }
    expect(sink.headers[0]).toMatchObject({ 'x-api-key': 'secret-1', 'x-tenant': 'acme' });
    expect(sink.headers[0]?.['content-type']).toBe('application/x-protobuf');
  });
});

/** Runs fixtures/shutdown-app.mjs with these variables; `output` is its stdout so far. */
function startFixture(env: Record<string, string>): {
  child: ChildProcessByStdio<null, Readable, null>;
  output: string;
} {
  const script = fileURLToPath(new URL('./fixtures/shutdown-app.mjs', import.meta.url));
  const child = spawn(process.execPath, [script], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const fixture = { child, output: '' };
  child.stdout.on('data', (chunk: Buffer) => (fixture.output += chunk.toString()));
  return fixture;
}

describe('shutdown on SIGTERM with enableShutdownHooks()', () => {
  const sink = new OtlpSink();
  afterAll(() => sink.stop());

  it('exports the spans of every answered request before the process exits', async () => {
    const fixture = startFixture({ OTEL_EXPORTER_OTLP_ENDPOINT: await sink.start() });
    const { child } = fixture;
    const port = await new Promise<number>((resolve, reject) => {
      child.stdout.on('data', () => {
        const match = /listening on (\d+)/.exec(fixture.output);
        if (match) resolve(Number(match[1]));
      });
      child.once('exit', (code) =>
        reject(new Error(`fixture exited early with ${code}: ${fixture.output}`)),
      );
    });
    const count = 30;
    for (let i = 0; i < count; i++) {
      expect(await (await fetch(`http://127.0.0.1:${port}/hello`)).text()).toBe('hello');
    }
    expect(sink.spans).toHaveLength(0);
    child.kill('SIGTERM');
    const [, signal] = (await once(child, 'exit')) as [number | null, string | null];
    // Nest re-raises the signal once the application has closed, the export included.
    expect(signal).toBe('SIGTERM');
    expect(sink.spans.filter((s) => s.name === 'GET /hello')).toHaveLength(count);
    expect(sink.spans.filter((s) => s.name === 'HelloController.hello')).toHaveLength(count);
    // Sent from the exporter's worker thread, none from the app's own.
    expect(fixture.output).not.toContain('http client request');
  });
});

describe('app.close() in a process with nothing else to do', () => {
  const sink = new OtlpSink();
  afterAll(() => sink.stop());

  it('settles after exporting, from the export thread', async () => {
    const fixture = startFixture({
      OTEL_EXPORTER_OTLP_ENDPOINT: await sink.start(),
      CLOSE_AFTER: '3',
    });
    const [code] = (await once(fixture.child, 'exit')) as [number | null, string | null];
    // An unsettled top-level await ends the process with code 13 and no 'closed'.
    expect({ code, output: fixture.output }).toEqual({ code: 0, output: 'closed\n' });
    const servers = sink.spans.filter((s) => s.name === 'GET /hello');
    expect(servers).toHaveLength(3);
    expect(new Set(servers.map((s) => s.serviceName))).toEqual(new Set(['shutdown-app']));
    expect(sink.spans.filter((s) => s.name === 'HelloController.hello')).toHaveLength(3);
  });
});
