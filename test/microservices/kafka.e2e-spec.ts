import { Module, type INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ClientKafka, ServerKafka, type MicroserviceOptions } from '@nestjs/microservices';
import {
  context,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
} from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { firstValueFrom, lastValueFrom } from 'rxjs';
import { TracingModule } from '../../lib/index.js';
import {
  TestSpans,
  TracingTestingModule,
  expectChildOf,
  expectKind,
  expectParentId,
  expectRoot,
} from '../../lib/testing/index.js';
import { useSpanHygiene } from './support/span-hygiene.js';
import { EventLog, PATTERNS, ServiceModule } from './support/service-app.js';
import {
  PARENT_ID,
  randomSpanId,
  randomTraceId,
  TRACE_ID,
  TRACEPARENT,
} from './support/transport-suite.js';

/**
 * There is no Kafka broker on this machine, so Kafka is tested in process: Nest's own ClientKafka
 * and ServerKafka, their serializers, parser, KafkaContext and record types, with the broker
 * replaced by capturing what the producer would send and handing it to the server as kafkajs
 * would deliver it (Buffers for values and header values).
 */
interface KafkaRecord {
  key?: string | Buffer | null;
  value: string | Buffer | null;
  headers?: Record<string, string | Buffer | undefined>;
}
interface SentBatch {
  topic: string;
  messages: KafkaRecord[];
}

/** Stands in for a connected kafkajs producer: keeps what is sent. */
class CapturingProducer {
  readonly sent: SentBatch[] = [];
  async send(batch: SentBatch): Promise<unknown[]> {
    this.sent.push(batch);
    return [];
  }
  async disconnect(): Promise<void> {}
}

/** A record as kafkajs hands it to `eachMessage`: Buffers everywhere. */
function delivered(topic: string, record: KafkaRecord, offset: number) {
  const buffer = (v: string | Buffer | null | undefined) =>
    v === null || v === undefined ? null : Buffer.isBuffer(v) ? v : Buffer.from(String(v));
  const headers: Record<string, Buffer> = {};
  for (const [k, v] of Object.entries(record.headers ?? {})) {
    if (v !== undefined) headers[k] = buffer(v)!;
  }
  return {
    topic,
    partition: 0,
    message: {
      key: buffer(record.key),
      value: buffer(record.value),
      headers,
      offset: String(offset),
      timestamp: String(Date.now()),
      attributes: 0,
      size: 0,
    },
    heartbeat: async () => undefined,
    pause: () => () => undefined,
  };
}

describe('the Kafka transport (in process: no broker on this machine)', () => {
  const openSpans = useSpanHygiene();
  const serverProducer = new CapturingProducer();
  const clientProducer = new CapturingProducer();
  let service: INestMicroservice;
  let gateway: INestMicroservice;
  let server: ServerKafka;
  let client: ClientKafka;
  let spans: TestSpans;
  let events: EventLog;
  let offset = 0;

  beforeAll(async () => {
    server = new ServerKafka({ client: { brokers: ['kafka.invalid:9092'] } });
    (server as unknown as { producer: CapturingProducer }).producer = serverProducer;
    @Module({
      imports: [
        TracingModule.forRoot({ serviceName: 'kafka-service', spanProcessor: openSpans }),
        ServiceModule,
      ],
    })
    class ServiceAppModule {}
    // init() registers the handlers; listen() would connect to a broker.
    service = await NestFactory.createMicroservice<MicroserviceOptions>(ServiceAppModule, {
      strategy: server,
      logger: false,
    });
    await service.init();
    events = service.get(EventLog);

    @Module({ imports: [TracingTestingModule.forRoot({ serviceName: 'kafka-gateway' })] })
    class GatewayAppModule {}
    gateway = (await NestFactory.createApplicationContext(GatewayAppModule, {
      logger: false,
    })) as never;
    spans = gateway.get(TestSpans);

    client = new ClientKafka({ client: { brokers: ['kafka.invalid:9092'] } });
    const internals = client as unknown as Record<string, unknown>;
    internals._producer = clientProducer;
    internals.initialized = Promise.resolve();
    internals.consumerAssignments = { [`${PATTERNS.sum}.reply`]: 0 };
  });

  afterAll(async () => {
    await gateway?.close();
    await service?.close();
  });

  beforeEach(() => {
    spans.reset();
    events.seen.length = 0;
    serverProducer.sent.length = 0;
    clientProducer.sent.length = 0;
  });

  it("emit: a PRODUCER span whose context rides in the record headers, beside the app's own; a CONSUMER span continues it", async () => {
    const record = {
      key: 'order-1',
      value: { id: 'k1' },
      headers: { 'x-tenant': 'acme', traceparent: TRACEPARENT },
    };
    await trace.getTracer('e2e').startActiveSpan('caller', async (caller) => {
      await lastValueFrom(client.emit(PATTERNS.created, record), { defaultValue: undefined });
      caller.end();
    });
    const producer = spans.one(`send ${PATTERNS.created}`);
    expectChildOf(producer, spans.one('caller'));
    expectKind(producer, SpanKind.PRODUCER);
    expect(producer.attributes).toMatchObject({
      'messaging.system': 'kafka',
      'messaging.operation.type': 'send',
      'messaging.destination.name': PATTERNS.created,
      // Known before it goes: the record's key.
      'kafka.message.key': 'order-1',
    });
    const [batch] = clientProducer.sent;
    expect(batch?.topic).toBe(PATTERNS.created);
    const sent = batch!.messages[0]!;
    const { traceId, spanId } = producer.spanContext();
    expect(sent.headers).toEqual({ 'x-tenant': 'acme', traceparent: `00-${traceId}-${spanId}-01` });
    // The payload is what Nest would send without tracing.
    expect(sent.value).toBe(JSON.stringify({ id: 'k1' }));
    expect(sent.key).toBe('order-1');

    await server.handleMessage(delivered(PATTERNS.created, sent, ++offset) as never);
    await events.waitFor(1);
    const consumer = await spans.waitForOne(`process ${PATTERNS.created}`);
    expectChildOf(consumer, producer);
    expectKind(consumer, SpanKind.CONSUMER);
    expectChildOf(spans.one('EventLog.record'), consumer);
    expect(events.seen[0]?.traceId).toBe(traceId);
    expect(consumer.attributes).toMatchObject({
      'messaging.system': 'kafka',
      'messaging.operation.type': 'process',
      'messaging.destination.name': PATTERNS.created,
      'messaging.destination.partition.id': '0',
      'kafka.offset': offset,
      'kafka.message.key': 'order-1',
      // ServerKafka's group: its groupId with Nest's `-server` postfix.
      'messaging.consumer.group.name': 'nestjs-group-server',
    });
  });

  it('records a key Nest parses as JSON, and the partition a record asks for, as their strings', async () => {
    const record = { key: { id: 7 }, value: { id: 'k7' }, partition: 2 };
    await lastValueFrom(client.emit(PATTERNS.created, record), { defaultValue: undefined });
    const producer = spans.one(`send ${PATTERNS.created}`);
    expect(producer.attributes).toMatchObject({
      'kafka.message.key': '{"id":7}',
      'messaging.destination.partition.id': '2',
    });
    const sent = clientProducer.sent[0]!.messages[0]!;
    await server.handleMessage(delivered(PATTERNS.created, sent, ++offset) as never);
    await events.waitFor(1);
    const consumer = await spans.waitForOne(`process ${PATTERNS.created}`);
    expect(consumer.attributes['kafka.message.key']).toBe('{"id":7}');
  });

  it('makes no span for an empty batch, which Nest does not send', async () => {
    await lastValueFrom(client.emitBatch(PATTERNS.created, { messages: [] }), {
      defaultValue: undefined,
    });
    expect(clientProducer.sent).toEqual([]);
    expect(spans.byName(`send ${PATTERNS.created}`)).toEqual([]);
  });

  it("sends a record object used twice with each send's own context, and leaves it as it was", async () => {
    const record = { key: 'order-2', value: { id: 'k2' }, headers: { 'x-tenant': 'acme' } };
    const withAlice = propagation.setBaggage(
      context.active(),
      propagation.createBaggage({ 'user.id': { value: 'alice' } }),
    );
    await context.with(withAlice, () =>
      lastValueFrom(client.emit(PATTERNS.created, record), { defaultValue: undefined }),
    );
    await lastValueFrom(client.emit(PATTERNS.created, record), { defaultValue: undefined });
    const [first, second] = clientProducer.sent.map((batch) => batch.messages[0]!);
    const producers = spans.byName(`send ${PATTERNS.created}`);
    expect(producers).toHaveLength(2);
    const traceparentOf = (span: ReadableSpan) =>
      `00-${span.spanContext().traceId}-${span.spanContext().spanId}-01`;
    expect(first!.headers).toEqual({
      'x-tenant': 'acme',
      traceparent: traceparentOf(producers[0]!),
      baggage: 'user.id=alice',
    });
    expect(second!.headers).toEqual({
      'x-tenant': 'acme',
      traceparent: traceparentOf(producers[1]!),
    });
    expect(record.headers).toEqual({ 'x-tenant': 'acme' });
  });

  it('send: a CLIENT span that ends with the reply, and a SERVER span between', async () => {
    const reply = trace.getTracer('e2e').startActiveSpan('caller', async (caller) => {
      const value = await firstValueFrom(client.send<number>(PATTERNS.sum, { numbers: [4, 5] }));
      caller.end();
      return value;
    });
    await new Promise((resolve) => setImmediate(resolve));
    const request = clientProducer.sent[0]!.messages[0]!;
    expect(request.headers?.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    expect(request.headers?.kafka_correlationId).toBeDefined();

    await server.handleMessage(delivered(PATTERNS.sum, request, ++offset) as never);
    // The server replied through its producer; the client reads the reply as its consumer would.
    const deadline = Date.now() + 2000;
    while (serverProducer.sent.length === 0 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 5));
    const answer = serverProducer.sent[0]!;
    const respond = (
      client as unknown as { createResponseCallback(): (p: unknown) => Promise<void> }
    ).createResponseCallback();
    for (const message of answer.messages)
      await respond(delivered(answer.topic, message, ++offset));
    // Kafka replies travel as strings.
    expect(await reply).toBe('9');

    const clientSpan = spans.one(`send ${PATTERNS.sum}`);
    const serverSpan = spans.one(`process ${PATTERNS.sum}`);
    expectKind(clientSpan, SpanKind.CLIENT);
    expectKind(serverSpan, SpanKind.SERVER);
    expectChildOf(clientSpan, spans.one('caller'));
    expectChildOf(serverSpan, clientSpan);
    expectChildOf(spans.one('Calculator.sum'), serverSpan);
    expectChildOf(spans.one('guard.check'), serverSpan);
  });

  it('emitBatch: one PRODUCER span counting the messages, its context in every record', async () => {
    await trace.getTracer('e2e').startActiveSpan('caller', async (caller) => {
      await lastValueFrom(
        client.emitBatch(PATTERNS.created, {
          messages: [{ value: 'a' }, { value: 'b' }, { value: 'c' }],
        }),
        { defaultValue: undefined },
      );
      caller.end();
    });
    const producer = spans.one(`send ${PATTERNS.created}`);
    expect(producer.attributes['messaging.batch.message_count']).toBe(3);
    const { traceId, spanId } = producer.spanContext();
    const messages = clientProducer.sent[0]!.messages;
    expect(messages.map((m) => m.value)).toEqual(['a', 'b', 'c']);
    for (const message of messages)
      expect(message.headers?.traceparent).toBe(`00-${traceId}-${spanId}-01`);
  });

  it('continues a trace from a record a non-Nest producer wrote (Buffer header values)', async () => {
    await server.handleMessage(
      delivered(
        PATTERNS.created,
        {
          value: JSON.stringify({ id: 'java' }),
          headers: { traceparent: Buffer.from(TRACEPARENT) },
        },
        ++offset,
      ) as never,
    );
    await events.waitFor(1);
    const consumer = await spans.waitForOne(`process ${PATTERNS.created}`);
    expect(consumer.spanContext().traceId).toBe(TRACE_ID);
    expectParentId(consumer, PARENT_ID);
  });

  it.each([
    ['no headers', {}],
    ['a malformed traceparent', { traceparent: 'xx-nope' }],
  ])('handles a record with %s as the root of a new trace', async (_label, headers) => {
    await server.handleMessage(
      delivered(
        PATTERNS.created,
        { value: JSON.stringify({ id: 'r' }), headers },
        ++offset,
      ) as never,
    );
    await events.waitFor(1);
    expectRoot(await spans.waitForOne(`process ${PATTERNS.created}`));
  });

  it('keeps 200 concurrent events in their own traces, through the carrier and back', async () => {
    const ids = Array.from({ length: 200 }, randomTraceId);
    await Promise.all(
      ids.map((id) =>
        context.with(
          trace.setSpanContext(ROOT_CONTEXT, {
            traceId: id,
            spanId: randomSpanId(),
            traceFlags: 1,
            isRemote: true,
          }),
          () =>
            lastValueFrom(client.emit(PATTERNS.created, { value: { id } }), {
              defaultValue: undefined,
            }),
        ),
      ),
    );
    const records = clientProducer.sent.map((batch) => batch.messages[0]!);
    expect(records).toHaveLength(200);
    for (const record of records) {
      const { id } = JSON.parse(String(record.value)) as { id: string };
      expect(String(record.headers?.traceparent).slice(3, 35)).toBe(id);
    }
    await Promise.all(
      records.map((record) =>
        server.handleMessage(delivered(PATTERNS.created, record, ++offset) as never),
      ),
    );
    await events.waitFor(200);
    for (const { data, traceId } of events.seen) expect(traceId).toBe((data as { id: string }).id);
  });

  it('marks the CONSUMER span ERROR when the handler throws', async () => {
    await server
      .handleMessage(
        delivered(
          PATTERNS.broken,
          { value: '{}', headers: { traceparent: TRACEPARENT } },
          ++offset,
        ) as never,
      )
      .catch(() => undefined);
    const consumer = await spans.waitForOne(`process ${PATTERNS.broken}`);
    expect(consumer.status).toEqual({ code: SpanStatusCode.ERROR, message: 'consumer broke' });
  });
});
