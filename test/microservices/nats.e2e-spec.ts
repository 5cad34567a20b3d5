import {
  ClientProxyFactory,
  NatsRecordBuilder,
  Transport,
  type ClientProxy,
} from '@nestjs/microservices';
import { connect, headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node';
import { trace } from '@opentelemetry/api';
import { lastValueFrom } from 'rxjs';
import { expectChildOf } from '../../lib/testing/index.js';
import { HANDLER_QUEUE, PATTERNS } from './support/service-app.js';
import {
  describeTransport,
  runScoped,
  TRACEPARENT,
  type RawPublish,
} from './support/transport-suite.js';

const SERVERS = ['nats://127.0.0.1:4222'];
const QUEUE = 'nats-service';
let nc: NatsConnection | undefined;
const connection = async (): Promise<NatsConnection> =>
  (nc ??= await connect({ servers: SERVERS }));

/** A plain NATS client (not Nest) publishing plain JSON with NATS headers. */
function rawPublish(): RawPublish {
  return async (subject, data, values) => {
    const conn = await connection();
    const h = natsHeaders();
    for (const [key, value] of Object.entries(values)) {
      for (const item of Array.isArray(value) ? value : [value]) h.append(key, String(item));
    }
    conn.publish(subject, JSON.stringify(data), { headers: h });
    await conn.flush();
  };
}

describeTransport(
  {
    name: 'nats',
    system: 'nats',
    clientStyle: 'factory',
    // In a queue group, as services scaled out subscribe.
    server: () => ({ transport: Transport.NATS, options: { servers: SERVERS, queue: QUEUE } }),
    client: () => ({ transport: Transport.NATS, options: { servers: SERVERS } }),
    destination: (pattern) => ({ client: pattern, server: pattern }),
    serverAttributes: () => ({ 'messaging.consumer.group.name': QUEUE }),
    rawPublish,
    cleanup: async () => {
      await nc?.drain();
    },
  },
  (apps) => {
    it("records a handler's own queue group rather than the server's", async () => {
      const res = await fetch(`${apps.url}/call?pattern=${PATTERNS.queued}`);
      expect(await res.json()).toEqual({ reply: 'queued' });
      const server = await apps.spans.waitForOne(`process ${PATTERNS.queued}`);
      expect(server.attributes['messaging.consumer.group.name']).toBe(HANDLER_QUEUE);
    });

    describe('what a Nest client sends, read by a plain NATS subscriber', () => {
      let client: ClientProxy;
      beforeAll(async () => {
        client = ClientProxyFactory.create({
          transport: Transport.NATS,
          options: { servers: SERVERS },
        });
        await client.connect();
      });
      afterAll(() => client.close());

      it('carries traceparent in the headers, keeps the headers the app set, and leaves the payload alone', async () => {
        const subject = runScoped('nats-interop');
        const conn = await connection();
        const subscription = conn.subscribe(subject, { max: 1 });
        await conn.flush();
        const received = (async () => {
          for await (const message of subscription) return message;
          throw new Error('no message');
        })();

        const appHeaders = natsHeaders();
        appHeaders.set('x-tenant', 'acme');
        appHeaders.set('traceparent', TRACEPARENT); // stale: ours must replace it
        appHeaders.set('tracestate', 'vendor=of-that-trace'); // and its tracestate go
        const record = new NatsRecordBuilder({ id: 42 }).setHeaders(appHeaders).build();
        await trace.getTracer('e2e').startActiveSpan('caller', async (caller) => {
          await lastValueFrom(client.emit(subject, record), { defaultValue: undefined });
          caller.end();
        });

        const message = await received;
        const producer = await apps.spans.waitForOne(`send ${subject}`);
        expectChildOf(producer, apps.spans.one('caller'));
        const { traceId, spanId } = producer.spanContext();
        expect(message.headers?.get('traceparent')).toBe(`00-${traceId}-${spanId}-01`);
        expect(message.headers?.get('x-tenant')).toBe('acme');
        expect(message.headers?.has('tracestate')).toBe(false);
        // Nest's own envelope, with nothing of ours inside it.
        expect(JSON.parse(message.string())).toEqual({ pattern: subject, data: { id: 42 } });
        // The application's record is not changed under it.
        expect(appHeaders.get('traceparent')).toBe(TRACEPARENT);
      });

      it("replaces trace headers in the client's headers option too, in any case", async () => {
        const headers = { 'x-static': 'yes', Traceparent: TRACEPARENT, tracestate: 'v=stale' };
        const withHeaders = ClientProxyFactory.create({
          transport: Transport.NATS,
          options: { servers: SERVERS, headers },
        });
        await withHeaders.connect();
        try {
          const subject = runScoped('nats-interop-option');
          const conn = await connection();
          const subscription = conn.subscribe(subject, { max: 2 });
          await conn.flush();
          const received = (async () => {
            const messages = [];
            for await (const message of subscription) messages.push(message);
            return messages;
          })();
          const merge = (withHeaders as unknown as { mergeHeaders: unknown }).mergeHeaders;
          for (const id of [43, 44]) {
            await trace.getTracer('e2e').startActiveSpan('caller', async (caller) => {
              await lastValueFrom(withHeaders.emit(subject, { id }), { defaultValue: undefined });
              caller.end();
            });
          }
          const messages = await received;
          const producers = await apps.spans.waitFor(
            (all) => all.filter((s) => s.name === `send ${subject}`).length === 2,
          );
          const ids = producers
            .filter((s) => s.name === `send ${subject}`)
            .map((span) => `00-${span.spanContext().traceId}-${span.spanContext().spanId}-01`);
          expect(messages).toHaveLength(2);
          for (const [i, message] of messages.entries()) {
            const sent = [...(message.headers?.keys() ?? [])].map((key) => [
              key,
              message.headers?.values(key),
            ]);
            expect(sent).toEqual(
              expect.arrayContaining([
                ['x-static', ['yes']],
                ['traceparent', [ids[i]]],
              ]),
            );
            expect(sent).toHaveLength(2);
          }
          // Nothing is added to the client per message.
          expect((withHeaders as unknown as { mergeHeaders: unknown }).mergeHeaders).toBe(merge);
        } finally {
          await withHeaders.close();
        }
      });
    });
  },
);
