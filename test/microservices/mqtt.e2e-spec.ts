import { Logger, Module, type LoggerService } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import {
  ClientProxyFactory,
  MqttRecordBuilder,
  Transport,
  type ClientProxy,
} from '@nestjs/microservices';
import { trace } from '@opentelemetry/api';
import mqtt, { type MqttClient } from 'mqtt';
import { lastValueFrom } from 'rxjs';
import { TracingModule } from '../../lib/index.js';
import { expectChildOf } from '../../lib/testing/index.js';
import { PATTERNS } from './support/service-app.js';
import {
  describeTransport,
  runScoped,
  TRACEPARENT,
  type RawPublish,
} from './support/transport-suite.js';

const URL = 'mqtt://127.0.0.1:1883';
// MQTT 3.1.1 has no user properties: both sides speak MQTT 5.
const OPTIONS = { url: URL, protocolVersion: 5 as const };
let raw: MqttClient | undefined;
const rawClient = async (): Promise<MqttClient> => {
  if (raw === undefined) {
    raw = mqtt.connect(URL, { protocolVersion: 5 });
    await new Promise<void>((resolve, reject) =>
      raw!.once('connect', () => resolve()).once('error', reject),
    );
  }
  return raw;
};

/** A plain mqtt.js v5 client publishing plain JSON with user properties. */
function rawPublish(): RawPublish {
  return async (topic, data, properties) => {
    const client = await rawClient();
    const userProperties = Object.fromEntries(
      // A list repeats the name (mqtt.js writes one user property per item).
      Object.entries(properties).map(([k, v]) => [k, Array.isArray(v) ? v.map(String) : String(v)]),
    );
    // An empty userProperties object is not delivered at all: leave it out when there is none.
    const props = Object.keys(userProperties).length > 0 ? { properties: { userProperties } } : {};
    await client.publishAsync(topic, JSON.stringify(data), { qos: 1, ...props });
  };
}

describeTransport(
  {
    name: 'mqtt',
    system: 'mqtt',
    clientStyle: 'register',
    server: () => ({ transport: Transport.MQTT, options: OPTIONS }),
    client: () => ({ transport: Transport.MQTT, options: OPTIONS }),
    destination: (pattern) => ({ client: pattern, server: pattern }),
    rawPublish,
    cleanup: async () => {
      await raw?.endAsync();
    },
  },
  (apps) => {
    it("records no messaging.message.id: a QoS 1 packet's id is its connection's, not the message's", async () => {
      await rawPublish()(PATTERNS.created, { id: 'qos1' }, { traceparent: TRACEPARENT });
      await apps.events.waitFor(1);
      const consumer = await apps.spans.waitForOne(`process ${PATTERNS.created}`);
      expect(consumer.spanContext().traceId).toBe(TRACEPARENT.split('-')[1]);
      expect(consumer.attributes).not.toHaveProperty(['messaging.message.id']);
    });

    describe('what a Nest client sends, read by a plain MQTT 5 subscriber', () => {
      let client: ClientProxy;
      beforeAll(async () => {
        client = ClientProxyFactory.create({ transport: Transport.MQTT, options: OPTIONS });
        await client.connect();
      });
      afterAll(() => client.close());

      it('carries traceparent in the user properties, keeps those the app set, and leaves the payload alone', async () => {
        const topic = runScoped('mqtt-interop');
        const subscriber = await rawClient();
        await subscriber.subscribeAsync(topic, { qos: 1 });
        const received = new Promise<{ payload: Buffer; userProperties: unknown }>((resolve) => {
          subscriber.on('message', (t, payload, packet) => {
            if (t === topic)
              resolve({ payload, userProperties: packet.properties?.userProperties });
          });
        });
        const options = {
          qos: 1 as const,
          properties: { userProperties: { 'x-tenant': 'acme', traceparent: TRACEPARENT } },
        };
        const record = new MqttRecordBuilder({ id: 9 })
          .setQoS(1)
          .setProperties(options.properties)
          .build();
        await trace.getTracer('e2e').startActiveSpan('caller', async (caller) => {
          await lastValueFrom(client.emit(topic, record), { defaultValue: undefined });
          caller.end();
        });
        const message = await received;
        const producer = await apps.spans.waitForOne(`send ${topic}`);
        expectChildOf(producer, apps.spans.one('caller'));
        const { traceId, spanId } = producer.spanContext();
        expect(message.userProperties).toEqual({
          'x-tenant': 'acme',
          traceparent: `00-${traceId}-${spanId}-01`,
        });
        expect(JSON.parse(message.payload.toString())).toEqual({ pattern: topic, data: { id: 9 } });
        expect(options.properties.userProperties.traceparent).toBe(TRACEPARENT);
      });
    });
  },
);

describe('an MQTT server left on MQTT 3.1.1', () => {
  const warnings: string[] = [];
  const logger: LoggerService = {
    log: () => undefined,
    error: () => undefined,
    warn: (message: unknown) => void warnings.push(String(message)),
  };
  afterAll(() => Logger.overrideLogger(false));

  @Module({ imports: [TracingModule.forRoot({ serviceName: 'mqtt-311', exporter: 'none' })] })
  class Mqtt311Module {}

  async function startAndClose(options: Record<string, unknown>): Promise<void> {
    const app = await NestFactory.createMicroservice(Mqtt311Module, {
      transport: Transport.MQTT,
      options,
      logger,
    });
    await app.listen();
    await app.close();
  }
  const about311 = () => warnings.filter((w) => w.includes('MQTT 3.1.1'));

  it('is told once that no trace context can reach it; one on MQTT 5 is not', async () => {
    await startAndClose(OPTIONS);
    expect(about311()).toEqual([]);
    await startAndClose({ url: URL });
    await startAndClose({ url: URL, protocolVersion: 4 });
    expect(about311()).toHaveLength(1);
    expect(about311()[0]).toMatch(/protocolVersion: 5/);
  }, 30_000);
});
