import { context, diag, TraceFlags, type Context } from '@opentelemetry/api';
import {
  BindOnceFuture,
  ExportResultCode,
  globalErrorHandler,
  suppressTracing,
} from '@opentelemetry/core';
import type { ReadableSpan, Span, SpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { BatchProcessorOptions } from '../interfaces/tracing-module-options.interface.js';
import type { OtlpProtoTraceExporter } from './otlp-proto-exporter.js';
import { EncodedSpanQueue, type EncodedSpanBatch } from './otlp-span-serializer.js';

/**
 * Background exports at a time while full batches wait. One at a time (the SDK's processor) caps
 * the export rate at one batch per round trip, and an answer is read only between two turns of
 * the event loop: a busy consumer's turns can last a second (a RabbitMQ consumer reading a
 * prefetch burst), which caps the rate at one batch per turn. OpenTelemetry's OTLP exporter takes
 * concurrent exports (its own limit is 30), as forceFlush makes them too.
 */
const MAX_CONCURRENT_EXPORTS = 4;

/** Exports at a time while forceFlush or shutdown empties the queue. */
const MAX_FLUSH_EXPORTS = 8;

/**
 * The most span bytes one request carries (a span larger than that goes alone), which keeps a
 * request's body under 1 MB with room for the resource and scope. Collectors and the proxies in
 * front of them refuse larger bodies (nginx's default limit is 1 MB, some vendors' OTLP intake
 * too), and a refused batch is lost whole. A batch of 512 usual spans is ~150 KB; one whose spans
 * carry long values (a 15 KB `User-Agent` a client chose, say) is cut short instead.
 */
export const MAX_BATCH_BYTES = 960_000;

/** Every setting resolved (options, else `OTEL_BSP_*`, else the defaults; see tracing-config). */
type Settings = Required<BatchProcessorOptions>;

/**
 * The batch processor of the default exporter (OTLP over `http/protobuf`). It behaves as
 * OpenTelemetry's BatchSpanProcessor: the same settings and defaults; a bounded queue that drops
 * new spans when full and says how many; an export as soon as a batch is full, else after the
 * schedule delay; an export timeout after which the next batch may go;
 * forceFlush and shutdown export everything queued. But a span is encoded when it ends and only
 * its bytes are queued (see {@link EncodedSpanQueue}), which under load keeps span objects out of
 * V8's old generation; and while full batches wait, up to {@link MAX_CONCURRENT_EXPORTS} go at
 * once instead of one at a time (a partial batch still waits for the schedule delay and for
 * nothing else to be in flight).
 */
export class EncodingBatchSpanProcessor implements SpanProcessor {
  private readonly queue = new EncodedSpanQueue();
  private readonly shutdownOnce: BindOnceFuture<void>;
  /** Background exports awaiting their answer (settled as they end; they never reject). */
  private readonly inFlight = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | undefined;
  private dropped = 0;

  constructor(
    private readonly exporter: OtlpProtoTraceExporter,
    private readonly settings: Settings,
  ) {
    this.shutdownOnce = new BindOnceFuture(this.doShutdown, this);
  }

  onStart(_span: Span, _parentContext: Context): void {}

  onEnd(span: ReadableSpan): void {
    if (this.shutdownOnce.isCalled) return;
    if ((span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0) return;
    if (this.queue.length >= this.settings.maxQueueSize) {
      if (this.dropped === 0) diag.debug('maxQueueSize reached, dropping spans');
      this.dropped++;
      return;
    }
    if (this.dropped > 0) {
      diag.warn(`Dropped ${this.dropped} spans because maxQueueSize reached`);
      this.dropped = 0;
    }
    try {
      this.queue.push(span);
    } catch (error) {
      // A span the encoder cannot write (an attribute getter that throws, say) is dropped alone.
      globalErrorHandler(error as Error);
      return;
    }
    this.maybeStartTimer();
  }

  forceFlush(): Promise<void> {
    if (this.shutdownOnce.isCalled) return this.shutdownOnce.promise;
    return this.flushAll();
  }

  shutdown(): Promise<void> {
    return this.shutdownOnce.call();
  }

  private async doShutdown(): Promise<void> {
    await this.flushAll();
    await this.exporter.shutdown();
  }

  /**
   * Exports everything queued now, batch by batch, and waits for the exports already in flight
   * too (forceFlush and shutdown).
   */
  private async flushAll(): Promise<void> {
    // The spans queued now; a batch takes them off at once, as many as fit.
    let remaining = this.queue.length;
    const inFlight = [...this.inFlight];
    // A few at a time: OpenTelemetry's exporter refuses exports beyond its own limit (30), which
    // a large queue (maxQueueSize raised for bursts) would otherwise lose at shutdown.
    let failure: { error: unknown } | undefined;
    const lane = async (): Promise<void> => {
      // A background export may take counted spans too (from the front, as the lanes do).
      while ((remaining = Math.min(remaining, this.queue.length)) > 0) {
        const queued = this.queue.length;
        const sent = this.flushOneBatch();
        remaining -= queued - this.queue.length;
        try {
          await sent;
        } catch (error) {
          failure ??= { error };
        }
      }
    };
    const batches = Math.max(
      Math.ceil(remaining / this.settings.maxExportBatchSize),
      Math.ceil(this.queue.bytes / MAX_BATCH_BYTES),
    );
    const lanes = Math.min(batches, MAX_FLUSH_EXPORTS);
    const exports: Promise<void>[] = inFlight;
    for (let i = 0; i < lanes; i++) exports.push(lane());
    await Promise.all(exports);
    // A background export answered meanwhile starts the next full batch itself, which may hold
    // spans the lanes counted: wait for those in flight now (they settle, never reject). Once
    // the lanes are done every span queued before the flush has been taken, so later exports
    // carry only newer spans, which a steady load would never let a loop wait out.
    await Promise.all([...this.inFlight]);
    if (failure !== undefined) throw failure.error;
  }

  private flushOneBatch(): Promise<void> {
    this.clearTimer();
    if (this.queue.length === 0) return Promise.resolve();
    const batch = this.queue.take(this.settings.maxExportBatchSize, MAX_BATCH_BYTES);
    return new Promise<void>((resolve, reject) => {
      // Past the timeout the next batch may go; this one's late result is ignored.
      const timer = setTimeout(
        () => reject(new Error('Timeout')),
        this.settings.exportTimeoutMillis,
      );
      // The exporter's own requests are not traced.
      context.with(suppressTracing(context.active()), () => {
        const send = () =>
          this.exporter.exportEncoded(batch, (result) => {
            clearTimeout(timer);
            if (result.code === ExportResultCode.SUCCESS) resolve();
            else reject(result.error ?? new Error('BatchSpanProcessor: span export failed'));
          });
        const pending = pendingResources(batch);
        if (pending === undefined) {
          send();
          return;
        }
        Promise.all(pending).then(send, (error: unknown) => {
          clearTimeout(timer);
          globalErrorHandler(error as Error);
          reject(error instanceof Error ? error : new Error(String(error)));
        });
      });
    });
  }

  /**
   * A full batch goes at once, next to those in flight up to {@link MAX_CONCURRENT_EXPORTS};
   * a partial one after the schedule delay, once nothing is in flight.
   */
  private maybeStartTimer(): void {
    while (
      (this.queue.length >= this.settings.maxExportBatchSize ||
        this.queue.bytes >= MAX_BATCH_BYTES) &&
      this.inFlight.size < MAX_CONCURRENT_EXPORTS
    ) {
      this.flushInBackground();
    }
    if (this.inFlight.size > 0 || this.queue.length === 0 || this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flushInBackground();
    }, this.settings.scheduledDelayMillis);
    this.timer.unref();
  }

  /** One batch; when it is answered, what waits goes on. Failures go to the global error handler. */
  private flushInBackground(): void {
    const done: Promise<void> = this.flushOneBatch().then(
      () => this.afterBackgroundFlush(done),
      (error: unknown) => {
        this.afterBackgroundFlush(done);
        globalErrorHandler(error as Error);
      },
    );
    this.inFlight.add(done);
  }

  private afterBackgroundFlush(done: Promise<void>): void {
    this.inFlight.delete(done);
    this.maybeStartTimer();
  }

  private clearTimer(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }
}

/** Resources of the batch whose asynchronous attributes are still being detected. */
function pendingResources(batch: EncodedSpanBatch): Promise<void>[] | undefined {
  let pending: Promise<void>[] | undefined;
  const seen = new Set<unknown>();
  for (const resource of batch.resources) {
    if (seen.has(resource)) continue;
    seen.add(resource);
    if (resource.asyncAttributesPending && resource.waitForAsyncAttributes) {
      (pending ??= []).push(resource.waitForAsyncAttributes());
    }
  }
  return pending;
}
