import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { SpanKind, SpanStatusCode, type Attributes } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { Module, type INestApplication, type INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import type { ClientOptions, MicroserviceOptions } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { randomBytes } from 'node:crypto';
import { TracingModule } from '../../../lib/index.js';
import {
  TestSpans,
  TracingTestingModule,
  expectChildOf,
  expectKind,
  expectParentId,
  expectRoot,
} from '../../../lib/testing/index.js';
import type { OpenSpans } from '../../support/otel-harness.js';
import { gatewayModule, type ClientStyle } from './gateway-app.js';
import { EventLog, JobBus, PATTERNS, ServiceModule } from './service-app.js';
import { useSpanHygiene } from './span-hygiene.js';

export const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
export const PARENT_ID = '00f067aa0ba902b7';
export const TRACEPARENT = `00-${TRACE_ID}-${PARENT_ID}-01`;
const OTHER_TRACE_ID = 'a'.repeat(32);
const OTHER_TRACEPARENT = `00-${OTHER_TRACE_ID}-${'b'.repeat(16)}-01`;

/**
 * A message sent by a plain client library of the broker, with headers of its choosing: an array
 * is one name given several values, as that broker's format repeats a name.
 */
export type RawPublish = (
  pattern: string,
  data: unknown,
  headers: Record<string, unknown>,
) => Promise<void>;

/** One Nest transport as the shared suite drives it. */
export interface TransportSpec {
  name: string;
  /** `messaging.system` expected on both sides. */
  system: string;
  /** How the gateway gets its ClientProxy. */
  clientStyle: ClientStyle;
  /** Connect the server to an HTTP application (hybrid) instead of a standalone microservice. */
  hybrid?: boolean;
  /** Server options, on a destination of this run's own. */
  server(): MicroserviceOptions | Promise<MicroserviceOptions>;
  /** Client options matching `server()` (called after it). */
  client(): ClientOptions;
  /** `messaging.destination.name` each side reports for a pattern. */
  destination(pattern: string): { client: string; server: string };
  /** Attributes the server span must also have, per pattern. */
  serverAttributes?(pattern: string): Attributes;
  /** Publishes an event the way a non-Nest producer would; absent where that is not tested. */
  rawPublish?: () => RawPublish;
  /**
   * Whether a producer can send header values with control characters (NATS's library refuses
   * them; Mosquitto drops an MQTT client that publishes one).
   */
  controlCharacters?: boolean;
  /** Releases what `server()` created (queues, connections of the raw client). */
  cleanup?(): Promise<void>;
}

export interface TransportApps {
  gateway: INestApplication;
  service: INestMicroservice | INestApplication;
  url: string;
  spans: TestSpans;
  events: EventLog;
  openSpans: OpenSpans;
}

/** A fresh, random 32-hex trace id. */
export function randomTraceId(): string {
  return randomBytes(16).toString('hex');
}

export function randomSpanId(): string {
  return randomBytes(8).toString('hex');
}

/** A name unique to this run, for queues, subjects and topics. */
export function runScoped(name: string): string {
  return `${name}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

/**
 * Starts the service (standalone microservice, or hybrid) and an HTTP gateway that reaches it
 * through the transport, both traced, for one describe block. The two apps share this process's
 * tracer provider, so the gateway's TestSpans sees the spans of both. The service's module also
 * registers the open-span tracker of `useSpanHygiene`.
 */
export function useTransportApps(spec: TransportSpec): TransportApps {
  const apps = {} as TransportApps;
  apps.openSpans = useSpanHygiene();

  beforeAll(async () => {
    @Module({
      imports: [
        TracingModule.forRoot({
          serviceName: `${spec.name}-service`,
          spanProcessor: apps.openSpans,
        }),
        ServiceModule,
      ],
    })
    class ServiceAppModule {}

    const serverOptions = await spec.server();
    if (spec.hybrid) {
      const app = await NestFactory.create(ServiceAppModule, new ExpressAdapter(), {
        logger: false,
      });
      app.connectMicroservice(serverOptions);
      await app.startAllMicroservices();
      await app.init();
      apps.service = app;
    } else {
      const app = await NestFactory.createMicroservice<MicroserviceOptions>(ServiceAppModule, {
        ...serverOptions,
        logger: false,
      } as never);
      await app.listen();
      apps.service = app;
    }
    apps.events = apps.service.get(EventLog);

    const moduleRef = await Test.createTestingModule({
      imports: [
        TracingTestingModule.forRoot({ serviceName: `${spec.name}-gateway` }),
        gatewayModule(spec.client(), spec.clientStyle),
      ],
    }).compile();
    apps.gateway = moduleRef.createNestApplication(new ExpressAdapter(), { logger: false });
    await apps.gateway.listen(0, '127.0.0.1');
    const { port } = apps.gateway.getHttpServer().address() as { port: number };
    apps.url = `http://127.0.0.1:${port}`;
    apps.spans = apps.gateway.get(TestSpans);
  }, 60_000);

  afterAll(async () => {
    await apps.gateway?.close();
    await apps.service?.close();
    await spec.cleanup?.();
  }, 30_000);

  beforeEach(() => {
    apps.spans.reset();
    apps.events.seen.length = 0;
    apps.events.baggage.length = 0;
  });

  return apps;
}

const isCheck = (span: ReadableSpan): boolean => span.name === `send ${PATTERNS.check}`;

function get(apps: TransportApps, path: string, traceparent?: string): Promise<Response> {
  return fetch(`${apps.url}${path}`, {
    headers: traceparent === undefined ? {} : { traceparent },
  });
}

/** The messaging attributes one side of a hop must carry. */
function expectMessaging(
  span: ReadableSpan,
  spec: TransportSpec,
  side: 'client' | 'server',
  pattern: string,
): void {
  expect(span.attributes).toMatchObject({
    'messaging.system': spec.system,
    'messaging.operation.name': side === 'client' ? 'send' : 'process',
    'messaging.operation.type': side === 'client' ? 'send' : 'process',
    'messaging.destination.name': spec.destination(pattern)[side],
    ...(side === 'server' ? (spec.serverAttributes?.(pattern) ?? {}) : {}),
  });
}

/**
 * The behaviour every Nest transport must show, both directions: one trace from the HTTP caller
 * through the client and the transport to the handler and its @Trace spans, with the right
 * parents, kinds, names and attributes; errors; messages with no or broken context; 200 requests
 * and 200 events in flight at once, each in its own trace.
 */
export function describeTransport(
  spec: TransportSpec,
  extra?: (apps: TransportApps) => void,
): void {
  describe(`the ${spec.name} transport`, () => {
    const apps = useTransportApps(spec);

    it('carries a request/response call in one trace: HTTP → CLIENT → SERVER → guard, @Trace', async () => {
      const res = await get(apps, '/sum?n=3', TRACEPARENT);
      expect(res.status).toBe(200);
      // The reply comes back, and code after it still runs in the caller's trace.
      expect(await res.json()).toEqual({ sum: 6, traceIdAfterReply: TRACE_ID });

      const { spans } = apps;
      const server = await spans.waitForOne(`process ${PATTERNS.sum}`);
      await spans.waitFor((all) => all.some((s) => s.name === 'GET /sum'));
      const http = spans.one('GET /sum');
      const client = spans.one(`send ${PATTERNS.sum}`);
      expectParentId(http, PARENT_ID);
      expectChildOf(client, http);
      expectChildOf(server, client);
      expectChildOf(spans.one('guard.check'), server);
      expectChildOf(spans.one('Calculator.sum'), server);
      expect(spans.trace(TRACE_ID)).toHaveLength(5);
      expectKind(client, SpanKind.CLIENT);
      expectKind(server, SpanKind.SERVER);
      expectMessaging(client, spec, 'client', PATTERNS.sum);
      expectMessaging(server, spec, 'server', PATTERNS.sum);
      expect(client.status.code).toBe(SpanStatusCode.UNSET);
      expect(server.status.code).toBe(SpanStatusCode.UNSET);
      // The server span covers the handler's work: it ends after it (spans are listed as they end).
      const order = spans.names();
      expect(order.indexOf(`process ${PATTERNS.sum}`)).toBeGreaterThan(
        order.indexOf('Calculator.sum'),
      );
    });

    it('carries an event in one trace: HTTP → PRODUCER → CONSUMER → @Trace', async () => {
      const res = await get(apps, '/emit?id=e1', TRACEPARENT);
      expect(res.status).toBe(200);
      await apps.events.waitFor(1);
      expect(apps.events.seen).toEqual([{ data: { id: 'e1' }, traceId: TRACE_ID }]);

      const { spans } = apps;
      const consumer = await spans.waitForOne(`process ${PATTERNS.created}`);
      const record = await spans.waitForOne('EventLog.record');
      await spans.waitFor((all) => all.some((s) => s.name === 'GET /emit'));
      const producer = spans.one(`send ${PATTERNS.created}`);
      expectChildOf(producer, spans.one('GET /emit'));
      expectChildOf(consumer, producer);
      expectChildOf(record, consumer);
      expectKind(producer, SpanKind.PRODUCER);
      expectKind(consumer, SpanKind.CONSUMER);
      expectMessaging(producer, spec, 'client', PATTERNS.created);
      expectMessaging(consumer, spec, 'server', PATTERNS.created);
    });

    it('marks both sides ERROR when the handler throws an RpcException', async () => {
      const res = await get(apps, '/fail', TRACEPARENT);
      expect(res.status).toBe(500);
      const { spans } = apps;
      const server = await spans.waitForOne(`process ${PATTERNS.fail}`);
      const client = await spans.waitForOne(`send ${PATTERNS.fail}`);
      expectChildOf(server, client);
      expect(server.status).toEqual({ code: SpanStatusCode.ERROR, message: 'payment refused' });
      expect(server.attributes['error.type']).toBe('RpcException');
      const exception = server.events.find((e) => e.name === 'exception');
      expect(exception?.attributes?.['exception.message']).toBe('payment refused');
      // The event names the error as error.type does (RpcException keeps the name 'Error').
      expect(exception?.attributes?.['exception.type']).toBe('RpcException');
      expect(client.status).toEqual({ code: SpanStatusCode.ERROR, message: 'payment refused' });
      expect(client.events.some((e) => e.name === 'exception')).toBe(true);
    });

    it("keeps a failed call's error on its own spans, not on the next call of the pattern", async () => {
      // The spans of one client and pattern start from attributes built once: each must get its
      // own copy, or the first call's error.type would be on every later span.
      expect((await get(apps, '/check?ok=0')).status).toBe(500);
      expect((await get(apps, '/check?ok=1')).status).toBe(200);
      const { spans } = apps;
      const sends = (await spans.waitFor((all) => all.filter(isCheck).length === 2)).filter(
        isCheck,
      );
      // In the order they ended: the second call was made after the first had its reply.
      const [failed, passed] = sends;
      expect(failed!.attributes['error.type']).toEqual(expect.any(String));
      expect(failed!.status.code).toBe(SpanStatusCode.ERROR);
      expect(passed!.attributes).not.toHaveProperty(['error.type']);
      expect(passed!.status.code).toBe(SpanStatusCode.UNSET);
      expectMessaging(passed!, spec, 'client', PATTERNS.check);
      expect(passed!.attributes).not.toBe(failed!.attributes);
    });

    it('marks the CONSUMER span ERROR when an event handler throws', async () => {
      const res = await get(apps, `/emit?id=b1&pattern=${PATTERNS.broken}`, TRACEPARENT);
      expect(res.status).toBe(200);
      const consumer = await apps.spans.waitForOne(`process ${PATTERNS.broken}`, 5000);
      expectKind(consumer, SpanKind.CONSUMER);
      expect(consumer.spanContext().traceId).toBe(TRACE_ID);
      expect(consumer.status).toEqual({ code: SpanStatusCode.ERROR, message: 'consumer broke' });
      expect(consumer.attributes['error.type']).toBe('Error');
      expect(
        consumer.events.find((e) => e.name === 'exception')?.attributes?.['exception.message'],
      ).toBe('consumer broke');
    });

    it.each([
      ['an Observable', PATTERNS.recovered],
      ['a plain value', PATTERNS.recoveredPlain],
      ['a Promise', PATTERNS.recoveredAsync],
    ])(
      'marks neither side ERROR when an exception filter answers normally, with %s',
      async (_label, pattern) => {
        const res = await get(apps, `/call?pattern=${pattern}`, TRACEPARENT);
        expect(await res.json()).toEqual({ reply: { fallback: true } });
        const server = await apps.spans.waitForOne(`process ${pattern}`);
        const client = await apps.spans.waitForOne(`send ${pattern}`);
        expectChildOf(server, client);
        expect(server.status.code).toBe(SpanStatusCode.UNSET);
        expect(server.attributes).not.toHaveProperty(['error.type']);
        // What happened stays on record.
        const exception = server.events.find((e) => e.name === 'exception');
        expect(exception?.attributes?.['exception.message']).toBe('recovered by the filter');
        expect(client.status.code).toBe(SpanStatusCode.UNSET);
      },
    );

    it("marks the server span ERROR when an async filter hands the error on to Nest's own", async () => {
      const res = await get(apps, `/call?pattern=${PATTERNS.reraised}`, TRACEPARENT);
      expect(await res.json()).toMatchObject({ error: { status: 'error' } });
      const server = await apps.spans.waitForOne(`process ${PATTERNS.reraised}`);
      expect(server.status).toEqual({
        code: SpanStatusCode.ERROR,
        message: 're-raised by the filter',
      });
      expect(server.attributes['error.type']).toBe('RpcException');
    });

    it('records an error from a Node callback on the span of its message', async () => {
      const res = await get(apps, `/call?pattern=${PATTERNS.readMissing}`, TRACEPARENT);
      expect(await res.json()).toMatchObject({ error: { status: 'error' } });
      const server = await apps.spans.waitForOne(`process ${PATTERNS.readMissing}`);
      expect(server.spanContext().traceId).toBe(TRACE_ID);
      expect(server.status.code).toBe(SpanStatusCode.ERROR);
      expect(server.status.message).toMatch(/ENOENT/);
      expect(server.attributes['error.type']).toBe('ENOENT');
      expect(server.events.some((e) => e.name === 'exception')).toBe(true);
    });

    it('records an error on the message that waited for it, not on the one being handled', async () => {
      const jobs = apps.service.get(JobBus);
      jobs.reset();
      const waited = get(apps, `/call?pattern=${PATTERNS.jobWait}`);
      await jobs.waiting;
      const failer = await get(apps, `/call?pattern=${PATTERNS.jobFail}`);
      expect(await failer.json()).toEqual({ reply: 'failed it' });
      expect(await (await waited).json()).toMatchObject({ error: { status: 'error' } });
      const { spans } = apps;
      const waiter = await spans.waitForOne(`process ${PATTERNS.jobWait}`);
      const failing = await spans.waitForOne(`process ${PATTERNS.jobFail}`);
      expect(waiter.status).toEqual({ code: SpanStatusCode.ERROR, message: 'the job failed' });
      expect(waiter.events.some((e) => e.name === 'exception')).toBe(true);
      expect(failing.status.code).toBe(SpanStatusCode.UNSET);
      expect(failing.events).toEqual([]);
      expect(failing.attributes).not.toHaveProperty(['error.type']);
    });

    it('keeps 200 concurrent requests in their own traces', async () => {
      const ids = Array.from({ length: 200 }, randomTraceId);
      const replies = await Promise.all(
        ids.map(async (id) => {
          const res = await get(apps, '/trace-id?delay=5', `00-${id}-${randomSpanId()}-01`);
          return ((await res.json()) as { traceId: string }).traceId;
        }),
      );
      // Every handler ran in the trace of its own request.
      expect(replies).toEqual(ids);
      const servers = (
        await apps.spans.waitFor(
          (all) => all.filter((s) => s.name === `process ${PATTERNS.traceId}`).length === 200,
          10_000,
        )
      ).filter((s) => s.name === `process ${PATTERNS.traceId}`);
      const clients = new Map(
        apps.spans.byName(`send ${PATTERNS.traceId}`).map((s) => [s.spanContext().spanId, s]),
      );
      expect(new Set(servers.map((s) => s.spanContext().traceId))).toEqual(new Set(ids));
      for (const server of servers) {
        const client = clients.get(server.parentSpanContext?.spanId ?? '');
        expect(client?.spanContext().traceId).toBe(server.spanContext().traceId);
      }
    }, 30_000);

    it('keeps 200 concurrent events in their own traces', async () => {
      const ids = Array.from({ length: 200 }, randomTraceId);
      await Promise.all(
        ids.map((id) => get(apps, `/emit?id=${id}`, `00-${id}-${randomSpanId()}-01`)),
      );
      await apps.events.waitFor(200, 15_000);
      // Each handler saw the trace its own event was sent in: the payload names it.
      for (const { data, traceId } of apps.events.seen) {
        expect(traceId).toBe((data as { id: string }).id);
      }
      const consumers = (
        await apps.spans.waitFor(
          (all) => all.filter((s) => s.name === `process ${PATTERNS.created}`).length === 200,
          10_000,
        )
      ).filter((s) => s.name === `process ${PATTERNS.created}`);
      const producers = new Map(
        apps.spans.byName(`send ${PATTERNS.created}`).map((s) => [s.spanContext().spanId, s]),
      );
      for (const consumer of consumers) {
        const producer = producers.get(consumer.parentSpanContext?.spanId ?? '');
        expect(producer?.spanContext().traceId).toBe(consumer.spanContext().traceId);
      }
    }, 30_000);

    if (spec.rawPublish !== undefined) {
      const raw = spec.rawPublish;
      describe('a message from a producer that is not Nest', () => {
        let publish: RawPublish;
        beforeAll(() => {
          publish = raw();
        });

        it('continues the trace of a standard traceparent header', async () => {
          await publish(PATTERNS.created, { id: 'foreign' }, { traceparent: TRACEPARENT });
          await apps.events.waitFor(1);
          const consumer = await apps.spans.waitForOne(`process ${PATTERNS.created}`);
          expect(consumer.spanContext().traceId).toBe(TRACE_ID);
          expectParentId(consumer, PARENT_ID);
          expect(apps.events.seen[0]).toEqual({ data: { id: 'foreign' }, traceId: TRACE_ID });
        });

        it('handles a message with no context as the root of a new trace', async () => {
          await publish(PATTERNS.created, { id: 'bare' }, {});
          await apps.events.waitFor(1);
          const consumer = await apps.spans.waitForOne(`process ${PATTERNS.created}`);
          expectRoot(consumer);
          expect(apps.events.seen[0]?.traceId).toBe(consumer.spanContext().traceId);
        });

        it.each([
          ['garbage', 'not-a-traceparent'],
          ['an all-zero trace id', `00-${'0'.repeat(32)}-${PARENT_ID}-01`],
          ['a truncated value', TRACEPARENT.slice(0, 40)],
        ])('handles %s as the root of a new trace', async (_label, value) => {
          await publish(PATTERNS.created, { id: 'broken' }, { traceparent: value });
          await apps.events.waitFor(1);
          const consumer = await apps.spans.waitForOne(`process ${PATTERNS.created}`);
          expectRoot(consumer);
          expect(consumer.spanContext().traceId).not.toBe(TRACE_ID);
        });

        // W3C Trace Context: a traceparent that arrives more than once is no context to continue.
        it.each([
          ['a repeated traceparent', { traceparent: [TRACEPARENT, OTHER_TRACEPARENT] }],
          [
            'a traceparent under two cases of its name',
            { traceparent: TRACEPARENT, TRACEPARENT: OTHER_TRACEPARENT },
          ],
        ])('handles %s as the root of a new trace', async (_label, headers) => {
          await publish(PATTERNS.created, { id: 'repeated' }, headers);
          await apps.events.waitFor(1);
          const consumer = await apps.spans.waitForOne(`process ${PATTERNS.created}`);
          expectRoot(consumer);
          expect([TRACE_ID, OTHER_TRACE_ID]).not.toContain(consumer.spanContext().traceId);
          expect(apps.events.seen[0]?.traceId).toBe(consumer.spanContext().traceId);
        });

        it.each(
          [
            ['a line break', 'k=v;p\r\nX-Injected: 1', '', true],
            ['a NUL', 'k=v\u0000', '', true],
            ['no control character', 'k=v;p', 'k=v', false],
          ].filter(([, , , control]) => spec.controlCharacters === true || control === false),
        )(
          'continues the trace of a message whose baggage holds %s, without that baggage',
          async (_label, baggage, seen) => {
            // No header value holds a control character: carried on, it would be refused by the
            // handler's own outbound HTTP call (undici throws, out of the request's reach).
            await publish(
              PATTERNS.created,
              { id: 'baggage' },
              { traceparent: TRACEPARENT, baggage },
            );
            await apps.events.waitFor(1);
            const consumer = await apps.spans.waitForOne(`process ${PATTERNS.created}`);
            expectParentId(consumer, PARENT_ID);
            expect(apps.events.baggage).toEqual([seen]);
          },
        );

        it('accepts a traceparent padded with whitespace', async () => {
          await publish(PATTERNS.created, { id: 'padded' }, { traceparent: `  ${TRACEPARENT}  ` });
          await apps.events.waitFor(1);
          const consumer = await apps.spans.waitForOne(`process ${PATTERNS.created}`);
          expectParentId(consumer, PARENT_ID);
        });
      });
    }

    extra?.(apps);
  });
}
