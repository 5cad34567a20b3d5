// @ts-check
// The thread that sends the default exporter's OTLP/HTTP requests (see otlp-export-thread.ts).
// Plain JavaScript so that Node can start it from the source tree as well as from dist/.
import { diag, DiagLogLevel } from '@opentelemetry/api';
import { ExportResultCode } from '@opentelemetry/core';
import { format } from 'node:util';
import { parentPort } from 'node:worker_threads';
import { createOtlpProtoHttpDelegate } from './otlp-http-delegate.js';

/** @typedef {import('./otlp-export-thread.js').ToWorker} ToWorker */
/** @typedef {import('./otlp-export-thread.js').FromWorker} FromWorker */

const port = parentPort;
if (port === null) throw new Error('nestjs-tracing: otlp-export-worker runs as a worker thread');

/** @param {FromWorker} message */
const post = (message) => port.postMessage(message);

// The exporter's warnings (a partial success, an unreadable response) reach the app's diag logger.
/** @param {'error' | 'warn'} level */
const forward =
  (level) =>
  /** @param {unknown[]} args */
  (...args) =>
    post({ log: level, message: format(...args) });
const ignore = () => {};
diag.setLogger(
  {
    error: forward('error'),
    warn: forward('warn'),
    info: ignore,
    debug: ignore,
    verbose: ignore,
  },
  DiagLogLevel.WARN,
);

/** The bytes arrive encoded; `length` is what OpenTelemetry's exporter metrics count. */
const delegate = createOtlpProtoHttpDelegate(
  /** @param {{ body: Uint8Array, length: number }} request */
  (request) => request.body,
);

port.on('message', (/** @type {ToWorker} */ message) => {
  if ('shutdown' in message) {
    delegate.shutdown().then(
      () => post({ shutdown: true }),
      () => post({ shutdown: true }),
    );
    return;
  }
  const { id, body, spans } = message;
  delegate.export({ body, length: spans }, (result) => {
    if (result.code === ExportResultCode.SUCCESS) {
      post({ id, ok: true });
      return;
    }
    const error = /** @type {Error & { code?: number, data?: string }} */ (
      result.error ?? new Error('OTLP export failed')
    );
    post({
      id,
      ok: false,
      error: { name: error.name, message: error.message, code: error.code, data: error.data },
    });
  });
});

post({ ready: true });
