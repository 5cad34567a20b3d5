import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server } from 'node:http';
import { diag, DiagLogLevel } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { OTLPExporterError } from '@opentelemetry/otlp-exporter-base';
import {
  OtlpExportThread,
  STOP_WAIT_MS,
  workerEnv,
  type SendInProcess,
} from './otlp-export-thread.js';
import { createExporter } from './tracing-sdk.js';

/** Node publishes every `http.request` made on this thread here (not a worker's). */
const CLIENT_REQUESTS = 'http.client.request.start';

interface Received {
  url: string;
  body: Buffer;
}

describe('OtlpExportThread', () => {
  let server: Server;
  let received: Received[];
  let status: number;
  let delayMs: number;
  let env: NodeJS.ProcessEnv;
  let inProcess: Array<{ body: Uint8Array; spans: number }>;
  const sendInProcess: SendInProcess = (body, spans, done) => {
    inProcess.push({ body, spans });
    done({ code: ExportResultCode.SUCCESS });
  };
  const threads: OtlpExportThread[] = [];
  const thread = (url?: URL) => {
    const made = new OtlpExportThread(env, sendInProcess, url);
    threads.push(made);
    return made;
  };
  const send = (to: OtlpExportThread, body: Uint8Array, spans = 1) =>
    new Promise<ExportResult>((resolve) => to.send(body, spans, resolve));
  /** HTTP client requests made on this thread (the test's, the app's). */
  let onThisThread: unknown[];
  const listener = (message: unknown) => onThisThread.push(message);
  const savedEndpoint = process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
  const exporters: Array<{ shutdown(): Promise<void> }> = [];
  /** The exporter `createExporter` makes, sending to this test's collector. */
  const otlp = async (exportThread: 'worker' | 'main') => {
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = env.OTEL_EXPORTER_OTLP_ENDPOINT;
    const exporter = (await createExporter('otlp', {
      otlpProtocol: 'http/protobuf',
      exportThread,
    }))!;
    exporters.push(exporter);
    return exporter;
  };
  /**
   * Exports nothing with an `otlp` exporter after the app pointed the environment elsewhere:
   * its settings are the environment's when it was made, as in OpenTelemetry's exporter (the
   * worker starts with the first export, after the change).
   */
  const exportAfterEnvChange = async (exportThread: 'worker' | 'main') => {
    const exporter = await otlp(exportThread);
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = 'http://127.0.0.1:1';
    return new Promise<ExportResult>((resolve) => exporter.export([], resolve));
  };
  const warnings = () => {
    const seen: string[] = [];
    const ignore = () => {};
    diag.setLogger(
      {
        error: ignore,
        warn: (m: string) => seen.push(m),
        info: ignore,
        debug: ignore,
        verbose: ignore,
      },
      DiagLogLevel.WARN,
    );
    return seen;
  };

  beforeEach(async () => {
    received = [];
    inProcess = [];
    status = 200;
    delayMs = 0;
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        received.push({ url: req.url ?? '', body: Buffer.concat(chunks) });
        setTimeout(() => {
          res.writeHead(status, { 'content-type': 'application/x-protobuf' });
          res.end();
        }, delayMs);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    env = { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}` };
    onThisThread = [];
    subscribe(CLIENT_REQUESTS, listener);
  });

  afterEach(async () => {
    unsubscribe(CLIENT_REQUESTS, listener);
    await Promise.all([...threads.splice(0), ...exporters.splice(0)].map((t) => t.shutdown()));
    if (savedEndpoint === undefined) delete process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
    else process.env.OTEL_EXPORTER_OTLP_ENDPOINT = savedEndpoint;
    diag.disable();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it("sends the request from a worker: no HTTP request on the app's thread", async () => {
    // Both bodies are copied to the thread, never transferred: a transfer would detach the app's
    // buffer (and, the first time, slow every typed array access of the process; see post()).
    const small = Buffer.from([1, 2, 3]);
    const large = new Uint8Array(64 * 1024).fill(7);
    const t = thread();
    const results = await Promise.all([send(t, small), send(t, large, 512)]);
    expect(results.map((r) => r.code)).toEqual([
      ExportResultCode.SUCCESS,
      ExportResultCode.SUCCESS,
    ]);
    expect(received.map((r) => r.url)).toEqual(['/v1/traces', '/v1/traces']);
    const bodies = received.map((r) => r.body.length).sort((a, b) => a - b);
    expect(bodies).toEqual([3, 64 * 1024]);
    expect(received.find((r) => r.body.length === 3)!.body).toEqual(Buffer.from([1, 2, 3]));
    expect(small).toEqual(Buffer.from([1, 2, 3])); // the app's pooled memory is untouched
    expect(large.byteLength).toBe(64 * 1024); // not detached
    expect(large.buffer.byteLength).toBe(64 * 1024);
    expect(onThisThread).toEqual([]);
    expect(inProcess).toEqual([]);
  });

  it("the check above sees the app's thread: exportThread 'main' makes its request here", async () => {
    const result = await exportAfterEnvChange('main');
    expect(result.code).toBe(ExportResultCode.SUCCESS);
    expect(received).toHaveLength(1);
    expect(onThisThread).toHaveLength(1);
  });

  it("'otlp' sends from the worker, with process.env as it was when it was made", async () => {
    const result = await exportAfterEnvChange('worker');
    expect(result.code).toBe(ExportResultCode.SUCCESS);
    expect(received).toHaveLength(1);
    expect(onThisThread).toEqual([]);
  });

  it("reports a collector's refusal as OpenTelemetry's OTLPExporterError with the status", async () => {
    status = 400;
    const result = await send(thread(), Buffer.from([1]));
    expect(result.code).toBe(ExportResultCode.FAILED);
    expect(result.error).toBeInstanceOf(OTLPExporterError);
    expect((result.error as OTLPExporterError).code).toBe(400);
    expect(received).toHaveLength(1);
  });

  it('keeps the Node code of a network error (the collector down), as on the main thread', async () => {
    env = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:1', OTEL_EXPORTER_OTLP_TIMEOUT: '2000' };
    const result = await send(thread(), Buffer.from([1]));
    expect(result.code).toBe(ExportResultCode.FAILED);
    expect(result.error).toBeInstanceOf(Error);
    expect((result.error as Error & { code?: unknown }).code).toBe('ECONNREFUSED');
  });

  it('flush waits for the requests in flight', async () => {
    delayMs = 300;
    const t = thread();
    const answered: number[] = [];
    t.send(Buffer.from([1]), 1, () => answered.push(1));
    t.send(Buffer.from([2]), 1, () => answered.push(2));
    await t.flush();
    expect(answered.sort()).toEqual([1, 2]);
    expect(received).toHaveLength(2);
  });

  it('shutdown waits for the requests in flight, then stops the thread', async () => {
    delayMs = 200;
    const t = thread();
    let answer: ExportResult | undefined;
    t.send(Buffer.from([1]), 1, (result) => (answer = result));
    await t.shutdown();
    expect(answer?.code).toBe(ExportResultCode.SUCCESS);
    // Stopped: what is sent now is the app thread's to send.
    await send(t, Buffer.from([2]));
    expect(inProcess.map((r) => [...r.body])).toEqual([[2]]);
    expect(received).toHaveLength(1);
  });

  it(
    'shutdown stops a thread that never answers its stop',
    async () => {
      // Ready, answers exports, ignores the stop.
      const deaf = new URL(
        'data:text/javascript,' +
          encodeURIComponent(
            "import { parentPort } from 'node:worker_threads';" +
              'parentPort.postMessage({ ready: true });' +
              "parentPort.on('message', (m) => { if ('id' in m) parentPort.postMessage({ id: m.id, ok: true }); });",
          ),
      );
      const t = thread(deaf);
      expect((await send(t, Buffer.from([1]))).code).toBe(ExportResultCode.SUCCESS);
      // Settles (it never did), and the thread is gone: what is sent now goes in-process.
      await t.shutdown();
      await send(t, Buffer.from([2]));
      expect(inProcess.map((r) => [...r.body])).toEqual([[2]]);
    },
    STOP_WAIT_MS + 5000,
  );

  it('a thread that cannot start: its requests and later ones go in-process, with a warning', async () => {
    const warned = warnings();
    const t = thread(new URL('./no-such-export-worker.js', import.meta.url));
    const results = await Promise.all([send(t, Buffer.from([1])), send(t, Buffer.from([2]), 3)]);
    expect(results.map((r) => r.code)).toEqual([
      ExportResultCode.SUCCESS,
      ExportResultCode.SUCCESS,
    ]);
    await send(t, Buffer.from([4]), 5);
    expect(inProcess.map((r) => [[...r.body], r.spans])).toEqual([
      [[1], 1],
      [[2], 3],
      [[4], 5],
    ]);
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatch(/OTLP export thread could not start .*application's thread/);
  });

  it("does not load what the app's NODE_OPTIONS --require/--import load into the thread", async () => {
    // A preload that could not run twice (a server on a fixed port, an agent): here it throws.
    const dir = mkdtempSync(join(tmpdir(), 'nestjs-tracing-preload-'));
    const preload = join(dir, 'preload.cjs');
    writeFileSync(
      preload,
      "if (!require('node:worker_threads').isMainThread) throw new Error('ran in the thread');",
    );
    env = { ...env, NODE_OPTIONS: `--require "${preload}" --dns-result-order=ipv4first` };
    try {
      const result = await send(thread(), Buffer.from([9]));
      expect(result.code).toBe(ExportResultCode.SUCCESS);
      expect(received).toHaveLength(1);
      expect(inProcess).toEqual([]); // the thread started, and sent it
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.each([
    ['--require ./a.cjs', undefined],
    ['-r ./a.cjs --max-http-header-size=32768', '--max-http-header-size=32768'],
    ['--import=./otel.mjs --tls-min-v1.2', '--tls-min-v1.2'],
    ['--loader ts-node/esm "--title=my app" --experimental-loader=x', '"--title=my app"'],
    ['--enable-source-maps', '--enable-source-maps'],
    ['"--require=/p/a b.cjs" --enable-source-maps', '--enable-source-maps'],
    // Yarn Plug'n'Play's resolver: the thread cannot load a package without it.
    [
      '--require /app/.pnp.cjs --experimental-loader file:///app/.pnp.loader.mjs --import ./otel.mjs',
      '--require=/app/.pnp.cjs --experimental-loader=file:///app/.pnp.loader.mjs',
    ],
    ['"--require=/my app/.pnp.cjs"', '"--require=/my app/.pnp.cjs"'],
  ])('keeps NODE_OPTIONS %p for the thread as %p', (options, kept) => {
    expect(workerEnv({ NODE_OPTIONS: options, OTHER: '1' })).toEqual(
      kept === undefined ? { OTHER: '1' } : { NODE_OPTIONS: kept, OTHER: '1' },
    );
  });

  it('a worker that cannot even be made (no such scheme): requests go in-process', async () => {
    const warned = warnings();
    // Node only starts workers from file: and data: URLs, and says so when it is made.
    const t = thread(new URL('http://127.0.0.1/otlp-export-worker.js'));
    const results = [await send(t, Buffer.from([1])), await send(t, Buffer.from([2]))];
    expect(results.map((r) => r.code)).toEqual([
      ExportResultCode.SUCCESS,
      ExportResultCode.SUCCESS,
    ]);
    expect(inProcess.map((r) => [...r.body])).toEqual([[1], [2]]);
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatch(/could not start/);
  });

  it('a thread that stops after it started: requests in flight fail, later ones go in-process', async () => {
    // Ready at once, then gone at the first request (as a crash in the middle of an export).
    const crashing = new URL(
      'data:text/javascript,' +
        encodeURIComponent(
          "import { parentPort } from 'node:worker_threads';" +
            'parentPort.postMessage({ ready: true });' +
            "parentPort.on('message', () => process.exit(7));",
        ),
    );
    const t = thread(crashing);
    const lost = await send(t, Buffer.from([1]));
    expect(lost.code).toBe(ExportResultCode.FAILED);
    expect(lost.error?.message).toMatch(/export thread stopped: .*code 7/);
    expect(inProcess).toEqual([]); // it may have reached the collector: not sent twice
    const next = await send(t, Buffer.from([2]));
    expect(next.code).toBe(ExportResultCode.SUCCESS);
    expect(inProcess.map((r) => [...r.body])).toEqual([[2]]);
  });
});
