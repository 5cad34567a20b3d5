import { createServer, type ServerResponse, type Server } from 'node:http';
import { diag, DiagLogLevel, TraceFlags, type DiagLogger, type Tracer } from '@opentelemetry/api';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
  type ReadableSpan,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import type { BatchProcessorOptions } from '../interfaces/tracing-module-options.interface.js';
import { EncodingBatchSpanProcessor, MAX_BATCH_BYTES } from './encoding-batch-processor.js';
import { BATCH_DEFAULTS, resolveTracingConfig } from './tracing-config.js';
import { createSpanProcessors } from './tracing-sdk.js';
import { OtlpProtoTraceExporter } from './otlp-proto-exporter.js';
import { EncodedSpanQueue } from './otlp-span-serializer.js';
import { decodeProtobuf } from '../../test/support/otlp-sink.js';

/** Span names of an encoded request, in order. */
const spanNames = (body: Buffer) => decodeProtobuf(body).map((span) => span.name);

/** OpenTelemetry's own encoding of the same spans: the reference, byte for byte. */
const reference = (spans: ReadableSpan[]) =>
  Buffer.from(ProtobufTraceSerializer.serializeRequest(spans) ?? new Uint8Array());

/** A provider whose spans go to `processor` and, for the reference, to memory. */
function provider(processor?: SpanProcessor, resource = { 'service.name': 'encoding-spec' }) {
  const memory = new InMemorySpanExporter();
  const spanProcessors: SpanProcessor[] = [new SimpleSpanProcessor(memory)];
  if (processor) spanProcessors.push(processor);
  const p = new BasicTracerProvider({ resource: resourceFromAttributes(resource), spanProcessors });
  return {
    tracer: p.getTracer('encoding-spec', '1.0.0'),
    p,
    spans: () => memory.getFinishedSpans(),
  };
}

describe('EncodedSpanQueue', () => {
  it('encodes spans as they are pushed and writes the request OpenTelemetry writes for them', () => {
    // Two resources and two scopes, interleaved: grouped by identity, in first-seen order.
    const a = provider(undefined, { 'service.name': 'a' });
    const b = provider(undefined, { 'service.name': 'b' });
    const spans: ReadableSpan[] = [];
    const record = (tracer: Tracer, name: string, get: () => ReadableSpan[]) => {
      tracer.startSpan(name, { attributes: { 'x.name': name, 'x.n': spans.length } }).end();
      spans.push(get().at(-1)!);
    };
    const otherScope = a.p.getTracer('other-scope');
    record(a.tracer, 'a1', a.spans);
    record(b.tracer, 'b1', b.spans);
    record(otherScope, 'a-other', a.spans);
    record(a.tracer, 'a2', a.spans);
    record(b.tracer, 'b2', b.spans);

    const queue = new EncodedSpanQueue();
    for (const span of spans) queue.push(span);
    expect(queue.length).toBe(5);
    const batch = queue.take(10);
    expect(batch.length).toBe(5);
    expect(queue.length).toBe(0);
    expect(Buffer.from(batch.serialize()).equals(reference(spans))).toBe(true);
  });

  it('takes batches off the front in order, the rest staying queued', () => {
    const { tracer, spans } = provider();
    const queue = new EncodedSpanQueue();
    for (let i = 0; i < 7; i++) {
      tracer.startSpan(`span ${i}`, { attributes: { 'x.body': 'b'.repeat(i * 50) } }).end();
      queue.push(spans().at(-1)!);
    }
    const first = queue.take(3);
    // Pushed after a take: lands behind what is still queued.
    tracer.startSpan('late').end();
    queue.push(spans().at(-1)!);
    const second = queue.take(3);
    const third = queue.take(3);
    expect([first.length, second.length, third.length, queue.length]).toEqual([3, 3, 2, 0]);
    const all = spans();
    expect(Buffer.from(first.serialize()).equals(reference(all.slice(0, 3)))).toBe(true);
    expect(Buffer.from(second.serialize()).equals(reference(all.slice(3, 6)))).toBe(true);
    expect(Buffer.from(third.serialize()).equals(reference(all.slice(6)))).toBe(true);
  });

  it('takes as many spans as fit in a byte limit, and at least one', () => {
    const { tracer, spans } = provider();
    const queue = new EncodedSpanQueue();
    for (const size of [300, 300, 300, 2_000, 10]) {
      tracer.startSpan(`span ${size}`, { attributes: { 'x.body': 'b'.repeat(size) } }).end();
      queue.push(spans().at(-1)!);
    }
    const all = spans();
    const first = queue.take(10, 1_000);
    expect(first.length).toBe(2);
    expect(Buffer.from(first.serialize()).equals(reference(all.slice(0, 2)))).toBe(true);
    expect(queue.take(10, 1_000).length).toBe(1);
    // Larger than the limit alone: it goes alone.
    const large = queue.take(10, 1_000);
    expect(large.length).toBe(1);
    expect(Buffer.from(large.serialize()).equals(reference(all.slice(3, 4)))).toBe(true);
    expect(queue.take(10, 1_000).length).toBe(1);
    expect(queue.length).toBe(0);
  });

  it('queues nothing for a span it cannot encode', () => {
    const { tracer, spans } = provider();
    const queue = new EncodedSpanQueue();
    tracer.startSpan('good').end();
    const [good] = spans();
    const broken = Object.create(good!, {
      name: {
        get() {
          throw new Error('no name');
        },
      },
    }) as ReadableSpan;
    expect(() => queue.push(broken)).toThrow('no name');
    queue.push(good!);
    expect(queue.length).toBe(1);
    expect(Buffer.from(queue.take(5).serialize()).equals(reference([good!]))).toBe(true);
  });
});

describe('EncodingBatchSpanProcessor', () => {
  let server: Server;
  let bodies: Buffer[];
  /** Responses held back while `hold` is on (a collector that accepts and does not answer). */
  let held: ServerResponse[];
  let hold: boolean;
  const saved = { ...process.env };
  const processors: EncodingBatchSpanProcessor[] = [];

  beforeEach(async () => {
    bodies = [];
    held = [];
    hold = false;
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        bodies.push(Buffer.concat(chunks));
        if (hold) {
          held.push(res);
          return;
        }
        res.writeHead(200, { 'content-type': 'application/x-protobuf' });
        res.end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = `http://127.0.0.1:${port}/v1/traces`;
  });

  afterEach(async () => {
    for (const res of held) res.destroy();
    await Promise.all(processors.splice(0).map((p) => p.shutdown().catch(() => undefined)));
    process.env = { ...saved };
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    diag.disable();
  });

  const start = (options: BatchProcessorOptions = {}, exporter = new OtlpProtoTraceExporter()) => {
    const processor = new EncodingBatchSpanProcessor(exporter, {
      ...BATCH_DEFAULTS,
      ...options,
    });
    processors.push(processor);
    return { processor, ...provider(processor) };
  };
  const until = async (what: () => boolean, ms = 5000) => {
    const deadline = Date.now() + ms;
    while (!what()) {
      if (Date.now() > deadline) throw new Error('timed out waiting');
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  const diagnostics = () => {
    const messages: string[] = [];
    const keep = (message: string) => messages.push(message);
    const logger: DiagLogger = { error: keep, warn: keep, info: keep, debug: keep, verbose: keep };
    diag.setLogger(logger, DiagLogLevel.WARN);
    return messages;
  };

  it('exports a full batch at once, the bytes OpenTelemetry writes for those spans', async () => {
    const { tracer, spans } = start({ maxExportBatchSize: 3, scheduledDelayMillis: 60_000 });
    for (let i = 0; i < 4; i++) tracer.startSpan(`op ${i}`, { attributes: { 'x.i': i } }).end();
    await until(() => bodies.length === 1);
    expect(bodies[0]!.equals(reference(spans().slice(0, 3)))).toBe(true);
    // The fourth waits for the schedule delay (or a flush).
    await new Promise((r) => setTimeout(r, 50));
    expect(bodies).toHaveLength(1);
  });

  it('exports what is queued once the schedule delay has passed', async () => {
    const { tracer, spans } = start({ scheduledDelayMillis: 50 });
    tracer.startSpan('alone').end();
    expect(bodies).toHaveLength(0);
    await until(() => bodies.length === 1);
    expect(bodies[0]!.equals(reference(spans()))).toBe(true);
  });

  it('does not queue unsampled spans', async () => {
    const { processor, tracer, spans } = start();
    tracer.startSpan('sampled').end();
    // A non-recording span never reaches a processor; a recording one that is not sampled can.
    const [sampled] = spans();
    const notSampled = Object.create(sampled!, {
      spanContext: { value: () => ({ ...sampled!.spanContext(), traceFlags: TraceFlags.NONE }) },
    }) as ReadableSpan;
    processor.onEnd(notSampled);
    await processor.forceFlush();
    expect(bodies).toHaveLength(1);
    expect(bodies[0]!.equals(reference([sampled!]))).toBe(true);
  });

  it('forceFlush exports everything queued, in batches, and resolves once answered', async () => {
    const { processor, tracer, spans } = start({
      maxExportBatchSize: 2,
      scheduledDelayMillis: 60_000,
    });
    hold = true;
    for (let i = 0; i < 5; i++) tracer.startSpan(`op ${i}`).end();
    // The two full batches went at once and are held by the collector; forceFlush sends the rest.
    await until(() => bodies.length === 2);
    let flushed = false;
    const flush = processor.forceFlush().then(() => (flushed = true));
    await until(() => bodies.length === 3);
    expect(flushed).toBe(false);
    hold = false;
    for (const res of held.splice(0)) res.writeHead(200).end();
    await flush;
    await until(() => bodies.length === 3);
    const all = spans();
    expect(bodies.map((b) => spanNames(b))).toEqual([['op 0', 'op 1'], ['op 2', 'op 3'], ['op 4']]);
    expect(all.map((s) => s.name)).toEqual(['op 0', 'op 1', 'op 2', 'op 3', 'op 4']);
  });

  it('forceFlush sends a long queue a few batches at a time, and loses none', async () => {
    const { processor, tracer, spans } = start({
      maxQueueSize: 200,
      maxExportBatchSize: 2,
      scheduledDelayMillis: 60_000,
    });
    hold = true;
    for (let i = 0; i < 100; i++) tracer.startSpan(`op ${i}`).end();
    await until(() => bodies.length === 4);
    const flush = processor.forceFlush();
    // Eight more, not the 46 batches left at once (OpenTelemetry's exporter takes 30 at most).
    await until(() => bodies.length === 12);
    await new Promise((r) => setTimeout(r, 100));
    expect(bodies.length).toBe(12);
    hold = false;
    for (const res of held.splice(0)) res.writeHead(200).end();
    await flush;
    expect(bodies.length).toBe(50);
    const names = new Set(spans().map((s) => s.name));
    expect(names.size).toBe(100);
    for (let i = 0; i < 100; i++) expect(names.has(`op ${i}`)).toBe(true);
  });

  it(`cuts a batch of long spans at ${MAX_BATCH_BYTES} bytes, in the background and on flush`, async () => {
    const { processor, tracer } = start({ scheduledDelayMillis: 60_000 });
    // A 15 KB value a client chose (a User-Agent): 512 of them would be a 7.7 MB request.
    const agent = 'a'.repeat(15_000);
    for (let i = 0; i < 200; i++) {
      tracer.startSpan(`op ${i}`, { attributes: { 'user_agent.original': agent } }).end();
    }
    // Full by bytes long before 512 spans: those batches went at once.
    await until(() => bodies.length >= 3);
    await processor.forceFlush();
    const names = bodies.flatMap((body) => spanNames(body));
    expect(names).toEqual(Array.from({ length: 200 }, (_, i) => `op ${i}`));
    for (const body of bodies) expect(body.length).toBeLessThan(1_000_000);
    expect(bodies.length).toBe(4);
  });

  it('forceFlush and shutdown resolve only once every batch queued before them is answered', async () => {
    // Answers after 10 ms: each background answer starts the next full batch on its own.
    let pending = 0;
    let exported = 0;
    const exporter = {
      exportEncoded(batch: { length: number }, done: (result: { code: number }) => void) {
        pending++;
        setTimeout(() => {
          pending--;
          exported += batch.length;
          done({ code: 0 });
        }, 10);
      },
      shutdown: () => Promise.resolve(),
    } as unknown as OtlpProtoTraceExporter;
    for (const end of ['forceFlush', 'shutdown'] as const) {
      pending = 0;
      exported = 0;
      const { processor, tracer } = start(
        { maxQueueSize: 200, maxExportBatchSize: 2, scheduledDelayMillis: 60_000 },
        exporter,
      );
      for (let i = 0; i < 100; i++) tracer.startSpan(`op ${i}`).end();
      await processor[end]();
      expect({ end, exported, pending }).toEqual({ end, exported: 100, pending: 0 });
    }
  });

  it('forceFlush resolves while spans keep ending (a busy process)', async () => {
    const exporter = {
      exportEncoded(_batch: unknown, done: (result: { code: number }) => void) {
        setTimeout(() => done({ code: 0 }), 5);
      },
      shutdown: () => Promise.resolve(),
    } as unknown as OtlpProtoTraceExporter;
    const { processor, tracer } = start(
      { maxQueueSize: 400, maxExportBatchSize: 4, scheduledDelayMillis: 60_000 },
      exporter,
    );
    for (let i = 0; i < 40; i++) tracer.startSpan(`before ${i}`).end();
    // Full batches keep going out in the background for as long as the load lasts.
    const load = setInterval(() => {
      for (let i = 0; i < 8; i++) tracer.startSpan('during').end();
    }, 1);
    try {
      const outcome = await Promise.race([
        processor.forceFlush().then(() => 'flushed'),
        new Promise((resolve) => setTimeout(() => resolve('still waiting'), 3_000)),
      ]);
      expect(outcome).toBe('flushed');
    } finally {
      clearInterval(load);
    }
  });

  it('drops spans beyond maxQueueSize while exports hang, and says how many', async () => {
    const messages = diagnostics();
    const { processor, tracer } = start({ maxQueueSize: 4, maxExportBatchSize: 1 });
    hold = true;
    // Four exports of one span each go at once and hang; four more spans fill the queue.
    for (let i = 0; i < 4; i++) tracer.startSpan(`in flight ${i}`).end();
    await until(() => bodies.length === 4);
    for (let i = 0; i < 10; i++) tracer.startSpan(`queued ${i}`).end();
    await new Promise((r) => setTimeout(r, 50));
    expect(bodies).toHaveLength(4);
    hold = false;
    for (const res of held.splice(0)) res.writeHead(200).end();
    // The next span after the drops is kept, and the drops are reported with their count.
    await until(() => messages.length > 0 || bodies.length > 4);
    tracer.startSpan('after').end();
    expect(messages).toContain('Dropped 6 spans because maxQueueSize reached');
    await processor.forceFlush();
    // Exports in flight together reach the collector in any order.
    const names = bodies.slice(4).flatMap((b) => spanNames(b));
    expect(names.sort()).toEqual(['after', 'queued 0', 'queued 1', 'queued 2', 'queued 3']);
  });

  it('sends full batches up to four at a time; a partial one waits until none is in flight', async () => {
    const { processor, tracer } = start({ maxExportBatchSize: 2, scheduledDelayMillis: 20 });
    hold = true;
    for (let i = 0; i < 11; i++) tracer.startSpan(`op ${i}`).end();
    // Five full batches and one span: four batches go, one waits for an answer.
    await until(() => bodies.length === 4);
    await new Promise((r) => setTimeout(r, 100));
    // Exports in flight together reach the collector in any order.
    expect(bodies.map((b) => spanNames(b).join()).sort()).toEqual([
      'op 0,op 1',
      'op 2,op 3',
      'op 4,op 5',
      'op 6,op 7',
    ]);
    // One answer: the fifth full batch goes in its place; the lone span still waits.
    held.shift()!.writeHead(200).end();
    await until(() => bodies.length === 5);
    await new Promise((r) => setTimeout(r, 100));
    expect(bodies).toHaveLength(5);
    expect(spanNames(bodies[4]!)).toEqual(['op 8', 'op 9']);
    // Every answer in: the lone span goes after the schedule delay.
    hold = false;
    for (const res of held.splice(0)) res.writeHead(200).end();
    await until(() => bodies.length === 6);
    expect(spanNames(bodies[5]!)).toEqual(['op 10']);
    await processor.forceFlush();
    expect(bodies).toHaveLength(6);
  });

  it('forceFlush also waits for the exports already in flight', async () => {
    const { processor, tracer } = start({ maxExportBatchSize: 1, scheduledDelayMillis: 60_000 });
    hold = true;
    tracer.startSpan('in flight').end();
    await until(() => bodies.length === 1);
    let flushed = false;
    const flush = processor.forceFlush().then(() => (flushed = true));
    await new Promise((r) => setTimeout(r, 50));
    expect(flushed).toBe(false);
    held.shift()!.writeHead(200).end();
    await flush;
    expect(bodies.map((b) => spanNames(b))).toEqual([['in flight']]);
  });

  it('gives up on an export after exportTimeoutMillis and lets the next batch go', async () => {
    // The export thread starts with the first export: started here, it is not what times out.
    const exporter = new OtlpProtoTraceExporter();
    await new Promise((resolve) => exporter.export([], resolve));
    bodies.length = 0;
    const { processor, tracer } = start(
      { exportTimeoutMillis: 100, scheduledDelayMillis: 60_000 },
      exporter,
    );
    hold = true;
    tracer.startSpan('lost').end();
    await expect(processor.forceFlush()).rejects.toThrow('Timeout');
    hold = false;
    tracer.startSpan('next').end();
    await processor.forceFlush();
    expect(bodies.map((b) => spanNames(b))).toEqual([['lost'], ['next']]);
  });

  it('shutdown exports what is queued, then ignores later spans', async () => {
    const { processor, tracer } = start({ scheduledDelayMillis: 60_000 });
    tracer.startSpan('before').end();
    const first = processor.shutdown();
    expect(processor.shutdown()).toBe(first);
    await first;
    tracer.startSpan('after').end();
    await processor.forceFlush();
    expect(bodies.map((b) => spanNames(b))).toEqual([['before']]);
  });

  it('waits for a resource still detecting attributes, and exports them', async () => {
    const processor = new EncodingBatchSpanProcessor(new OtlpProtoTraceExporter(), {
      ...BATCH_DEFAULTS,
      scheduledDelayMillis: 60_000,
    });
    processors.push(processor);
    let resolveRegion!: (v: string) => void;
    const region = new Promise<string>((r) => (resolveRegion = r));
    const resource = resourceFromAttributes({ 'service.name': 'async', 'cloud.region': region });
    expect(resource.asyncAttributesPending).toBe(true);
    const p = new BasicTracerProvider({ resource, spanProcessors: [processor] });
    p.getTracer('async').startSpan('waits').end();
    const flushed = processor.forceFlush();
    await new Promise((r) => setTimeout(r, 50));
    expect(bodies).toHaveLength(0);
    resolveRegion('eu-west-1');
    await flushed;
    expect(bodies).toHaveLength(1);
    expect(decodeProtobuf(bodies[0]!)[0]!.resource).toMatchObject({
      'service.name': 'async',
      'cloud.region': 'eu-west-1',
    });
  });

  it('sends batches no larger than the queue when OTEL_BSP_* makes the queue the smaller', async () => {
    const config = resolveTracingConfig(
      { batch: { maxExportBatchSize: 10, scheduledDelayMillis: 60_000 } },
      { OTEL_BSP_MAX_QUEUE_SIZE: '3' },
    );
    expect(config.warnings).toEqual([
      'The batch size (10) exceeds the span queue (3); batches are 3 spans.',
    ]);
    const [processor] = createSpanProcessors(config, [new OtlpProtoTraceExporter()]) as [
      EncodingBatchSpanProcessor,
    ];
    processors.push(processor);
    const { tracer } = provider(processor);
    hold = true;
    // The batch size became the queue size (3): three spans go at once, the rest is dropped.
    for (let i = 0; i < 3; i++) tracer.startSpan(`op ${i}`).end();
    await until(() => bodies.length === 1);
    expect(spanNames(bodies[0]!)).toEqual(['op 0', 'op 1', 'op 2']);
    hold = false;
    for (const res of held.splice(0)) res.writeHead(200).end();
    await processor.forceFlush();
  });
});
