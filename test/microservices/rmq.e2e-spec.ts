import {
  ClientProxyFactory,
  RmqRecordBuilder,
  Transport,
  type ClientProxy,
} from '@nestjs/microservices';
import { SpanStatusCode, trace } from '@opentelemetry/api';
import amqp, { type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';
import { firstValueFrom, lastValueFrom } from 'rxjs';
import { expectChildOf, expectParentId } from '../../lib/testing/index.js';
import { PATTERNS } from './support/service-app.js';
import {
  describeTransport,
  PARENT_ID,
  runScoped,
  TRACE_ID,
  TRACEPARENT,
  type RawPublish,
} from './support/transport-suite.js';

const URL = 'amqp://guest:guest@127.0.0.1:5672';
const queue = runScoped('nestjs-tracing-e2e');
const queueOptions = { durable: false, autoDelete: true };
let connection: ChannelModel | undefined;
let channel: Channel | undefined;
const amqpChannel = async (): Promise<Channel> => {
  connection ??= await amqp.connect(URL);
  channel ??= await connection.createChannel();
  return channel;
};

/** A plain amqplib publisher, as any AMQP service would publish: headers in the properties. */
function rawPublish(): RawPublish {
  return async (pattern, data, headers) => {
    const ch = await amqpChannel();
    ch.sendToQueue(queue, Buffer.from(JSON.stringify({ pattern, data })), { headers });
  };
}

describeTransport(
  {
    name: 'rabbitmq',
    system: 'rabbitmq',
    clientStyle: 'decorator',
    server: () => ({ transport: Transport.RMQ, options: { urls: [URL], queue, queueOptions } }),
    client: () => ({ transport: Transport.RMQ, options: { urls: [URL], queue, queueOptions } }),
    // Every pattern goes to the service's one queue.
    destination: () => ({ client: queue, server: queue }),
    serverAttributes: () => ({ 'rabbitmq.destination.routing_key': queue }),
    rawPublish,
    controlCharacters: true,
    cleanup: async () => {
      await connection?.close();
    },
  },
  (apps) => {
    it('records a broker it cannot reach by the error amqp-connection-manager wraps', async () => {
      // Nothing listens on port 1: Nest's client rejects with the manager's { err, url }.
      const down = ClientProxyFactory.create({
        transport: Transport.RMQ,
        options: { urls: ['amqp://guest:guest@127.0.0.1:1'], queue: runScoped('unreachable') },
      });
      try {
        await expect(firstValueFrom(down.send('unreachable.sum', [1]))).rejects.toBeDefined();
      } finally {
        await down.close();
      }
      const span = await apps.spans.waitForOne('send unreachable.sum');
      expect(span.status.code).toBe(SpanStatusCode.ERROR);
      expect(span.status.message).toMatch(/ECONNREFUSED/);
      expect(span.attributes['error.type']).toBe('ECONNREFUSED');
      const exception = span.events.find((e) => e.name === 'exception');
      expect(exception?.attributes?.['exception.type']).toBe('ECONNREFUSED');
    });

    it('reads a traceparent that arrives as an AMQP byte array (a Buffer)', async () => {
      await rawPublish()(
        PATTERNS.created,
        { id: 'bytes' },
        { traceparent: Buffer.from(TRACEPARENT) },
      );
      await apps.events.waitFor(1);
      const consumer = await apps.spans.waitForOne(`process ${PATTERNS.created}`);
      expectParentId(consumer, PARENT_ID);
      expect(consumer.spanContext().traceId).toBe(TRACE_ID);
    });

    it('ignores numeric and table header values beside the context', async () => {
      await rawPublish()(
        PATTERNS.created,
        { id: 'mixed' },
        { 'x-retries': 3, 'x-meta': { nested: true }, traceparent: TRACEPARENT },
      );
      await apps.events.waitFor(1);
      expectParentId(await apps.spans.waitForOne(`process ${PATTERNS.created}`), PARENT_ID);
    });

    describe('what a Nest client sends, read by a plain amqplib consumer', () => {
      const interopQueue = runScoped('nestjs-tracing-interop');
      let client: ClientProxy;
      beforeAll(async () => {
        const ch = await amqpChannel();
        await ch.assertQueue(interopQueue, queueOptions);
        client = ClientProxyFactory.create({
          transport: Transport.RMQ,
          options: { urls: [URL], queue: interopQueue, queueOptions },
        });
        await client.connect();
      });
      afterAll(() => client.close());

      it('carries traceparent in the AMQP headers, keeps the headers the app set, and leaves the payload alone', async () => {
        const ch = await amqpChannel();
        const received = new Promise<ConsumeMessage>((resolve) => {
          void ch.consume(interopQueue, (message) => {
            if (message !== null) {
              ch.ack(message);
              resolve(message);
            }
          });
        });
        // A stale traceparent, which ours must replace, and its tracestate, which must go.
        const headers = { 'x-tenant': 'acme', traceparent: TRACEPARENT, tracestate: 'v=stale' };
        const options = { headers, priority: 1 };
        const record = new RmqRecordBuilder({ id: 7 }).setOptions(options).build();
        await trace.getTracer('e2e').startActiveSpan('caller', async (caller) => {
          await lastValueFrom(client.emit('audit.recorded', record), { defaultValue: undefined });
          caller.end();
        });

        const message = await received;
        const producer = await apps.spans.waitForOne('send audit.recorded');
        expectChildOf(producer, apps.spans.one('caller'));
        const { traceId, spanId } = producer.spanContext();
        expect(message.properties.headers).toMatchObject({
          'x-tenant': 'acme',
          traceparent: `00-${traceId}-${spanId}-01`,
        });
        expect(message.properties.headers).not.toHaveProperty('tracestate');
        expect(message.properties.priority).toBe(1);
        expect(JSON.parse(message.content.toString())).toEqual({
          pattern: 'audit.recorded',
          data: { id: 7 },
        });
        // The application's record is not changed under it.
        expect(options.headers.traceparent).toBe(TRACEPARENT);
      });

      it("replaces trace headers in the client's headers option too, in any case", async () => {
        const queue = runScoped('nestjs-tracing-interop-option');
        const ch = await amqpChannel();
        await ch.assertQueue(queue, queueOptions);
        const headers = { 'x-static': 'yes', Traceparent: TRACEPARENT, tracestate: 'v=stale' };
        const withHeaders = ClientProxyFactory.create({
          transport: Transport.RMQ,
          options: { urls: [URL], queue, queueOptions, headers },
        });
        await withHeaders.connect();
        try {
          const messages: ConsumeMessage[] = [];
          const received = new Promise<ConsumeMessage[]>((resolve) => {
            void ch.consume(queue, (message) => {
              if (message !== null) {
                ch.ack(message);
                messages.push(message);
                if (messages.length === 2) resolve(messages);
              }
            });
          });
          const merge = (withHeaders as unknown as { mergeHeaders: unknown }).mergeHeaders;
          for (const id of [8, 9]) {
            await trace.getTracer('e2e').startActiveSpan('caller', async (caller) => {
              await lastValueFrom(withHeaders.emit('audit.optioned', { id }), {
                defaultValue: undefined,
              });
              caller.end();
            });
          }
          await received;
          const producers = (
            await apps.spans.waitFor(
              (all) => all.filter((s) => s.name === 'send audit.optioned').length === 2,
            )
          ).filter((s) => s.name === 'send audit.optioned');
          for (const [i, message] of messages.entries()) {
            const { traceId, spanId } = producers[i]!.spanContext();
            expect(message.properties.headers).toEqual({
              'x-static': 'yes',
              traceparent: `00-${traceId}-${spanId}-01`,
            });
          }
          expect(headers.Traceparent).toBe(TRACEPARENT);
          // Nothing is added to the client per message.
          expect((withHeaders as unknown as { mergeHeaders: unknown }).mergeHeaders).toBe(merge);
        } finally {
          await withHeaders.close();
        }
      });
    });
  },
);
