import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Module, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import {
  ClientProxyFactory,
  EventPattern,
  MessagePattern,
  Payload,
  Transport,
  type ClientOptions,
  type ClientProxy,
  type MicroserviceOptions,
} from '@nestjs/microservices';
import { SpanKind } from '@opentelemetry/api';
import amqp from 'amqplib';
import { lastValueFrom } from 'rxjs';
import { TestSpans, TracingTestingModule } from '../../lib/testing/index.js';
import { runScoped } from './support/transport-suite.js';

/**
 * Handlers subscribed with a wildcard (NATS `*` and `>`, MQTT `+` and `#`, Redis and RabbitMQ
 * wildcards) receive messages on concrete subjects, topics, channels and routing keys. Their spans
 * are named by the handler's pattern, not by the concrete destination, which would make a span
 * name per entity id.
 */
const RUN = runScoped('wild');
const NATS = ['nats://127.0.0.1:4222'];
const RMQ = ['amqp://guest:guest@127.0.0.1:5672'];
const REDIS = { host: '127.0.0.1', port: 6379 };
const MQTT = 'mqtt://127.0.0.1:1883';
const QUEUE = `${RUN}-q`;
const SHARED_TOPIC = `${RUN}/mqtt/shared`;
const EXCHANGE = `${RUN}-x`;

interface Case {
  transport: Transport;
  system: string;
  request: { pattern: string; concrete: [string, string] };
  event: { pattern: string; concrete: string };
  server: MicroserviceOptions;
  client: ClientOptions;
  /** `messaging.destination.name` of the server span for a concrete destination. */
  destination(concrete: string): string;
}

const cases: Case[] = [
  {
    transport: Transport.NATS,
    system: 'nats',
    request: { pattern: `${RUN}.nats.req.*`, concrete: [`${RUN}.nats.req.1`, `${RUN}.nats.req.2`] },
    event: { pattern: `${RUN}.nats.ev.>`, concrete: `${RUN}.nats.ev.a.b` },
    server: { transport: Transport.NATS, options: { servers: NATS } },
    client: { transport: Transport.NATS, options: { servers: NATS } },
    destination: (concrete) => concrete,
  },
  {
    transport: Transport.MQTT,
    system: 'mqtt',
    request: { pattern: `${RUN}/mqtt/req/+`, concrete: [`${RUN}/mqtt/req/1`, `${RUN}/mqtt/req/2`] },
    event: { pattern: `${RUN}/mqtt/ev/#`, concrete: `${RUN}/mqtt/ev/a/b` },
    server: { transport: Transport.MQTT, options: { url: MQTT, protocolVersion: 5 } },
    client: { transport: Transport.MQTT, options: { url: MQTT, protocolVersion: 5 } },
    destination: (concrete) => concrete,
  },
  {
    transport: Transport.REDIS,
    system: 'redis',
    request: {
      // Redis's `*` would also match the reply channel (`….req.1.reply`).
      pattern: `${RUN}.redis.req.?`,
      concrete: [`${RUN}.redis.req.1`, `${RUN}.redis.req.2`],
    },
    event: { pattern: `${RUN}.redis.ev.*`, concrete: `${RUN}.redis.ev.a` },
    server: { transport: Transport.REDIS, options: { ...REDIS, wildcards: true } },
    client: { transport: Transport.REDIS, options: { ...REDIS } },
    destination: (concrete) => concrete,
  },
  {
    transport: Transport.RMQ,
    system: 'rabbitmq',
    request: { pattern: `${RUN}.rmq.req.*`, concrete: [`${RUN}.rmq.req.1`, `${RUN}.rmq.req.2`] },
    event: { pattern: `${RUN}.rmq.ev.#`, concrete: `${RUN}.rmq.ev.a.b` },
    server: {
      transport: Transport.RMQ,
      options: { urls: RMQ, queue: QUEUE, exchange: EXCHANGE, wildcards: true },
    },
    client: {
      transport: Transport.RMQ,
      options: { urls: RMQ, queue: QUEUE, exchange: EXCHANGE, wildcards: true },
    },
    // A message routed from an exchange is consumed from the server's queue.
    destination: () => QUEUE,
  },
];

const byTransport = (transport: Transport) => cases.find((c) => c.transport === transport)!;
const nats = byTransport(Transport.NATS);
const mqtt = byTransport(Transport.MQTT);
const redis = byTransport(Transport.REDIS);
const rmq = byTransport(Transport.RMQ);

@Controller()
class WildcardController {
  @MessagePattern(nats.request.pattern, Transport.NATS)
  natsRequest(@Payload() n: number): number {
    return n * 2;
  }
  @EventPattern(nats.event.pattern, Transport.NATS)
  natsEvent(@Payload() _data: unknown): void {}

  @MessagePattern(mqtt.request.pattern, Transport.MQTT)
  mqttRequest(@Payload() n: number): number {
    return n * 2;
  }
  @EventPattern(mqtt.event.pattern, Transport.MQTT)
  mqttEvent(@Payload() _data: unknown): void {}

  @EventPattern(`$share/audit/${SHARED_TOPIC}`, Transport.MQTT)
  mqttShared(@Payload() _data: unknown): void {}

  @MessagePattern(redis.request.pattern, Transport.REDIS)
  redisRequest(@Payload() n: number): number {
    return n * 2;
  }
  @EventPattern(redis.event.pattern, Transport.REDIS)
  redisEvent(@Payload() _data: unknown): void {}

  @MessagePattern(rmq.request.pattern, Transport.RMQ)
  rmqRequest(@Payload() n: number): number {
    return n * 2;
  }
  @EventPattern(rmq.event.pattern, Transport.RMQ)
  rmqEvent(@Payload() _data: unknown): void {}
}

@Module({ imports: [TracingTestingModule.forRoot()], controllers: [WildcardController] })
class WildcardModule {}

describe('handlers subscribed with wildcards', () => {
  let app: INestApplication;
  let spans: TestSpans;
  const clients = new Map<Transport, ClientProxy>();

  beforeAll(async () => {
    app = await NestFactory.create(WildcardModule, new ExpressAdapter(), { logger: false });
    for (const c of cases) app.connectMicroservice(c.server, { inheritAppConfig: true });
    await app.startAllMicroservices();
    await app.init();
    spans = app.get(TestSpans);
    for (const c of cases) {
      const client = ClientProxyFactory.create(c.client);
      await client.connect();
      clients.set(c.transport, client);
    }
  });

  afterAll(async () => {
    for (const client of clients.values()) await client.close();
    await app?.close();
    const connection = await amqp.connect(RMQ[0]!);
    const channel = await connection.createChannel();
    await channel.deleteQueue(QUEUE);
    await channel.deleteExchange(EXCHANGE);
    await connection.close();
  });

  it('names an MQTT shared subscription’s events by its topic, not its group', async () => {
    await lastValueFrom(clients.get(Transport.MQTT)!.emit(SHARED_TOPIC, 1), {
      defaultValue: undefined,
    });
    const consumer = await spans.waitForOne(`process ${SHARED_TOPIC}`);
    expect(consumer.kind).toBe(SpanKind.CONSUMER);
    expect(spans.byName(`process $share/audit/${SHARED_TOPIC}`)).toHaveLength(0);
  });

  describe.each(cases)('$system', (c) => {
    it('names each request by the handler’s pattern, whatever subject it came on', async () => {
      const client = clients.get(c.transport)!;
      for (const [i, destination] of c.request.concrete.entries()) {
        expect(await lastValueFrom(client.send(destination, i + 1))).toBe((i + 1) * 2);
      }
      const name = `process ${c.request.pattern}`;
      await spans.waitFor((all) => all.filter((s) => s.name === name).length === 2);
      const servers = spans.byName(name);
      for (const [i, server] of servers.entries()) {
        expect(server.kind).toBe(SpanKind.SERVER);
        expect(server.attributes['messaging.system']).toBe(c.system);
        expect(server.attributes['messaging.destination.name']).toBe(
          c.destination(c.request.concrete[i]!),
        );
      }
      // No span is named by a concrete destination.
      for (const destination of c.request.concrete) {
        expect(spans.byName(`process ${destination}`)).toHaveLength(0);
      }
    });

    it('names each event by the handler’s pattern', async () => {
      await lastValueFrom(clients.get(c.transport)!.emit(c.event.concrete, 1), {
        defaultValue: undefined,
      });
      const consumer = await spans.waitForOne(`process ${c.event.pattern}`);
      expect(consumer.kind).toBe(SpanKind.CONSUMER);
      expect(consumer.attributes['messaging.destination.name']).toBe(
        c.destination(c.event.concrete),
      );
      expect(spans.byName(`process ${c.event.concrete}`)).toHaveLength(0);
    });
  });

  it('records where a RabbitMQ client publishing through an exchange sends: the exchange, the pattern as routing key', async () => {
    spans.reset();
    const client = clients.get(Transport.RMQ)!;
    const [destination] = rmq.request.concrete;
    expect(await lastValueFrom(client.send(destination, 4))).toBe(8);
    await lastValueFrom(client.emit(rmq.event.concrete, 1), { defaultValue: undefined });
    const sent = await spans.waitFor(
      (all) => all.filter((s) => s.name.startsWith(`send ${RUN}.rmq.`)).length === 2,
    );
    for (const [name, key] of [
      [`send ${destination}`, destination],
      [`send ${rmq.event.concrete}`, rmq.event.concrete],
    ]) {
      const span = sent.find((s) => s.name === name)!;
      expect(span.attributes).toMatchObject({
        'messaging.destination.name': EXCHANGE,
        'rabbitmq.destination.routing_key': key,
      });
    }
    // The server consuming the same message agrees on the routing key.
    const server = await spans.waitForOne(`process ${rmq.request.pattern}`);
    expect(server.attributes['rabbitmq.destination.routing_key']).toBe(destination);
  });
});
