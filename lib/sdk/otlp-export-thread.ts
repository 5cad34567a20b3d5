import { diag } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { OTLPExporterError } from '@opentelemetry/otlp-exporter-base';
import { Worker } from 'node:worker_threads';

/** An export request, or the end. */
export type ToWorker = { id: number; body: Uint8Array; spans: number } | { shutdown: true };

/** The worker is ready; an export's result; a warning for the app's diag logger; the end. */
export type FromWorker =
  | { ready: true }
  | { id: number; ok: true }
  | {
      id: number;
      ok: false;
      error: { name: string; message: string; code?: number; data?: string };
    }
  | { log: 'error' | 'warn'; message: string }
  | { shutdown: true };

type Done = (result: ExportResult) => void;

/** Sends one encoded request on the app's own thread. */
export type SendInProcess = (body: Uint8Array, spans: number, done: Done) => void;

interface Request {
  body: Uint8Array;
  spans: number;
  done: Done;
}

/** How long shutdown waits for the thread to answer its stop before terminating it. */
export const STOP_WAIT_MS = 2000;

/** The body of a request the thread has (only unsent bodies are ever sent again, in-process). */
const SENT = new Uint8Array(0);

const WORKER_URL = new URL('./otlp-export-worker.js', import.meta.url);

/**
 * Sends the default exporter's encoded OTLP/HTTP requests from a worker thread, which runs
 * OpenTelemetry's own OTLP/HTTP delegate (see otlp-http-delegate.js) with the same settings.
 *
 * Why: Node's HTTP client (`ClientRequest`, its response, agent and parser) costs an HTTP server
 * far more per export in its own thread than the bytes explain, and its stream and message code
 * is the server's own; sent from here, the app's thread spent 3% (Node 20) to 12% (Node 24) less
 * CPU per traced request (README, Performance). Spans are still encoded on the app's thread as
 * they end; only the finished request body crosses, copied (see `post`).
 *
 * The thread starts with the first export and holds the process open only while an export is in
 * flight, as an in-process request would. If it cannot start, its requests and every later one
 * are sent in-process; if it stops after it started, the exports in flight fail (they may have
 * reached the collector) and later ones go in-process.
 */
export class OtlpExportThread {
  private worker: Worker | undefined;
  private ready = false;
  /** The thread could not start or has stopped: everything goes in-process. */
  private failed = false;
  /** Sent to the thread (or waiting for it to be ready), not answered yet. */
  private readonly requests = new Map<number, Request>();
  private nextId = 0;
  private drained: Array<() => void> = [];
  private stopped: (() => void) | undefined;

  constructor(
    /** `process.env` as it was when the exporter was made: what the in-process exporter reads. */
    private readonly env: NodeJS.ProcessEnv,
    private readonly sendInProcess: SendInProcess,
    private readonly workerUrl: URL = WORKER_URL,
  ) {}

  send(body: Uint8Array, spans: number, done: Done): void {
    if (this.failed) {
      this.sendInProcess(body, spans, done);
      return;
    }
    let worker = this.worker;
    if (worker === undefined) {
      try {
        worker = this.start();
      } catch (error) {
        // No worker threads here, say: this request and the next ones go in-process.
        this.onStopped(error as Error);
        this.sendInProcess(body, spans, done);
        return;
      }
    }
    const id = this.nextId++;
    if (this.requests.size === 0) worker.ref();
    this.requests.set(id, { body, spans, done });
    if (this.ready) this.post(worker, id, body, spans);
  }

  /** Resolves once every request sent so far is answered. */
  flush(): Promise<void> {
    if (this.requests.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.drained.push(resolve));
  }

  /** Waits for the requests in flight, then lets the thread finish and stops it. */
  async shutdown(): Promise<void> {
    await this.flush();
    const worker = this.worker;
    if (worker === undefined || this.failed) return;
    this.failed = true; // nothing more goes to this thread
    // The thread is unref'd once drained: without this, a process with nothing else left to do
    // (a server that has just closed) would exit while `app.close()` waits for the answer below,
    // which then never settles (and Nest never re-raises the signal it is shutting down on).
    worker.ref();
    if (this.ready) {
      await new Promise<void>((resolve) => {
        // A thread that does not answer (stuck in a request) is stopped all the same: referenced
        // now, it would otherwise hold the process open for good.
        const timer = setTimeout(resolve, STOP_WAIT_MS);
        this.stopped = () => {
          clearTimeout(timer);
          resolve();
        };
        worker.postMessage({ shutdown: true } satisfies ToWorker);
      });
    }
    await worker.terminate();
  }

  private start(): Worker {
    const worker = new Worker(this.workerUrl, {
      env: workerEnv(this.env),
      // Not the app's flags: an `--import` that starts an SDK or a loader must not run twice.
      execArgv: [],
    });
    worker.unref();
    worker.on('message', (message: FromWorker) => this.onMessage(worker, message));
    worker.on('error', (error) => this.onStopped(error));
    worker.on('exit', (code) => {
      if (!this.failed) this.onStopped(new Error(`the export thread exited with code ${code}`));
      this.stopped?.();
    });
    this.worker = worker;
    return worker;
  }

  private onMessage(worker: Worker, message: FromWorker): void {
    if ('ready' in message) {
      this.ready = true;
      for (const [id, { body, spans }] of this.requests) this.post(worker, id, body, spans);
    } else if ('id' in message) {
      const request = this.requests.get(message.id);
      if (request === undefined) return;
      this.answer(message.id, request, toResult(message));
    } else if ('log' in message) {
      diag[message.log](`OTLP export thread: ${message.message}`);
    } else {
      this.stopped?.();
    }
  }

  private post(worker: Worker, id: number, body: Uint8Array, spans: number): void {
    // Copied, never transferred: transferring detaches an ArrayBuffer, and the first detach in a
    // process invalidates a V8 guarantee for good; optimized code then checks typed array
    // accesses for a detached buffer (a loop copying and hex-decoding into a Buffer ran ~35%
    // slower after one detach, micro-benchmark; a traced Fastify request took ~3k instructions
    // more with the transfer, callgrind). A body that shares its memory (a pooled Buffer, a view
    // of a larger buffer) is cut to its own bytes first, as cloning copies the whole buffer.
    const own =
      body.byteOffset === 0 && body.byteLength === body.buffer.byteLength
        ? body
        : new Uint8Array(body);
    // The thread has the bytes now: keep no reference to the app's copy while the answer is due.
    this.requests.get(id)!.body = SENT;
    worker.postMessage({ id, body: own, spans } satisfies ToWorker);
  }

  private answer(id: number, request: Request, result: ExportResult): void {
    this.requests.delete(id);
    this.settleIfDrained();
    request.done(result);
  }

  private settleIfDrained(): void {
    if (this.requests.size > 0) return;
    this.worker?.unref();
    const drained = this.drained;
    this.drained = [];
    for (const resolve of drained) resolve();
  }

  private onStopped(error: Error): void {
    if (this.failed) return;
    this.failed = true;
    const unsent = !this.ready;
    diag.warn(
      `nestjs-tracing: the OTLP export thread ${unsent ? 'could not start' : 'stopped'} ` +
        `(${error.message}); spans are exported from the application's thread from now on.`,
    );
    for (const [id, request] of this.requests) {
      if (unsent) {
        // Nothing reached the thread: these requests go in-process, as if sent there first.
        this.requests.delete(id);
        this.sendInProcess(request.body, request.spans, request.done);
      } else {
        this.answer(id, request, {
          code: ExportResultCode.FAILED,
          error: new Error(`nestjs-tracing: the OTLP export thread stopped: ${error.message}`),
        });
      }
    }
    this.settleIfDrained();
  }
}

/** The flags of `NODE_OPTIONS` that load code: a worker given them would run it again. */
const LOADING_FLAGS = new Set(['--require', '-r', '--import', '--loader', '--experimental-loader']);

/**
 * Yarn Plug'n'Play's runtime (`.pnp.cjs`, `.pnp.loader.mjs`), which Yarn loads through
 * `NODE_OPTIONS`: without it a thread cannot resolve a package, nor read the package's own files
 * inside Yarn's zip archives. It only resolves modules, and runs in every thread.
 */
const PNP_RUNTIME = /(^|[\\/])\.pnp\.(c?js|loader\.mjs)$/;

/**
 * The environment of the export thread: the app's, but for what `NODE_OPTIONS` would load into
 * it. Node applies a worker's `NODE_OPTIONS` to it, so a `--require`/`--import` given there (an
 * agent, a loader, a server on a fixed port) would run a second time in the thread. The other
 * flags (TLS, DNS order, …) are kept, and so is Yarn Plug'n'Play's runtime ({@link PNP_RUNTIME}).
 */
export function workerEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const options = env.NODE_OPTIONS;
  // A quick look for the flags' text anywhere (a flag may be quoted whole: `"--require=a b.cjs"`).
  if (options === undefined || !/-r|--import|--(experimental-)?loader/.test(options)) return env;
  const kept: string[] = [];
  const tokens = nodeOptionTokens(options);
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    const eq = token.indexOf('=');
    const flag = eq === -1 ? token : token.slice(0, eq);
    if (!LOADING_FLAGS.has(flag)) {
      kept.push(token);
      continue;
    }
    // Its value is the rest of the token, or the next token.
    const value = eq === -1 ? (tokens[++i] ?? '') : token.slice(eq + 1);
    if (PNP_RUNTIME.test(value)) kept.push(eq === -1 ? `${flag}=${value}` : token);
  }
  const copy = { ...env };
  if (kept.length === 0) delete copy.NODE_OPTIONS;
  else copy.NODE_OPTIONS = kept.map(quoted).join(' ');
  return copy;
}

/** `NODE_OPTIONS` split as Node splits it: on spaces, outside double quotes (`\` escapes). */
function nodeOptionTokens(options: string): string[] {
  const tokens: string[] = [];
  let current = '';
  let inToken = false;
  let inQuotes = false;
  for (let i = 0; i < options.length; i++) {
    const c = options[i]!;
    if (inQuotes && c === '\\' && i + 1 < options.length) {
      current += options[++i];
    } else if (c === '"') {
      inQuotes = !inQuotes;
      inToken = true;
    } else if (!inQuotes && /\s/.test(c)) {
      if (inToken) tokens.push(current);
      current = '';
      inToken = false;
    } else {
      current += c;
      inToken = true;
    }
  }
  if (inToken) tokens.push(current);
  return tokens;
}

function quoted(token: string): string {
  return /[\s"\\]/.test(token) ? `"${token.replace(/["\\]/g, '\\$&')}"` : token;
}

function toResult(message: Extract<FromWorker, { id: number }>): ExportResult {
  if (message.ok) return { code: ExportResultCode.SUCCESS };
  const { name, message: text, code, data } = message.error;
  // OpenTelemetry's exporter metrics and callers tell errors by class and name.
  // A network error keeps its Node code (ECONNREFUSED), as on the main thread.
  const error =
    name === 'OTLPExporterError'
      ? new OTLPExporterError(text, code, data)
      : Object.assign(new Error(text), code === undefined ? { name } : { name, code });
  return { code: ExportResultCode.FAILED, error };
}
