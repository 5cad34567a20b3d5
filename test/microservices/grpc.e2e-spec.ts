import {
  Catch,
  Controller,
  Get,
  Inject,
  Injectable,
  Module,
  Param,
  UseFilters,
  type OnModuleInit,
  type RpcExceptionFilter,
} from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { hrTimeToMilliseconds } from '@opentelemetry/core';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { ExpressAdapter } from '@nestjs/platform-express';
import {
  ClientsModule,
  GrpcMethod,
  GrpcStreamCall,
  GrpcStreamMethod,
  RpcException,
  Transport,
  type ClientGrpc,
  type MicroserviceOptions,
} from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import type { INestApplication, INestMicroservice } from '@nestjs/common';
import { createServer, type AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import {
  concatMap,
  delay,
  EMPTY,
  mergeMap,
  throwError,
  timer,
  firstValueFrom,
  from,
  lastValueFrom,
  map,
  of,
  toArray,
  Observable,
  Subject,
} from 'rxjs';
import { Trace, TraceService, TracingModule } from '../../lib/index.js';
import {
  TestSpans,
  TracingTestingModule,
  expectChildOf,
  expectKind,
  expectParentId,
  expectRoot,
} from '../../lib/testing/index.js';
import { useSpanHygiene } from './support/span-hygiene.js';
import {
  PARENT_ID,
  randomSpanId,
  randomTraceId,
  TRACE_ID,
  TRACEPARENT,
} from './support/transport-suite.js';

const PROTO = fileURLToPath(new URL('./fixtures/orders.proto', import.meta.url));
const METHOD = (name: string) => `shop.orders.Orders/${name}`;

interface Order {
  id: string;
  sku?: string;
  traceId?: string;
  tenant?: string;
  hasTraceparent?: boolean;
  tracestate?: string;
}
interface OrdersClient {
  create(data: { sku: string; quantity: number }, metadata?: grpc.Metadata): Observable<Order>;
  find(data: { id: string }): Observable<Order>;
  watch(data: { id: string }): Observable<Order>;
  upload(data: Observable<Order>): Observable<{ count: number; traceId: string }>;
  chat(data: Observable<Order>): Observable<Order>;
  tally(data: Observable<Order>): Observable<{ count: number; traceId: string }>;
  relay(data: Observable<Order>): Observable<Order>;
  recover(data: { id: string }): Observable<Order>;
}

/** When each `@GrpcStreamCall` handler started and answered (performance.now()). */
const streamCallTimes = new Map<string, { started: number; answered?: number }>();

/** Answers with a normal reply whatever the handler threw. */
@Catch()
class FallbackFilter implements RpcExceptionFilter {
  catch(): Observable<Order> {
    return of({ id: 'fallback' });
  }
}

/** Three orders, 20 ms apart, so that a call lasts ~60 ms; `last` ends the stream. */
const slowly = (...ids: string[]): Observable<Order> =>
  from(ids.map((id) => ({ id }))).pipe(concatMap((o) => of(o).pipe(delay(20))));

/** A job one call waits for and another fails (see the test that uses it). */
const job = { subject: new Subject<Order>(), waiting: (): void => undefined };

@Injectable()
class OrderStore {
  constructor(private readonly tracing: TraceService) {}

  @Trace()
  async save(sku: string): Promise<Order> {
    await new Promise((resolve) => setTimeout(resolve, 1));
    return { id: `o-${sku}`, sku, traceId: this.tracing.traceId() };
  }

  @Trace()
  snapshot(id: string, i: number): Order {
    return { id: `${id}-${i}`, traceId: this.tracing.traceId() };
  }
}

@Controller()
class OrdersGrpcController {
  constructor(
    private readonly store: OrderStore,
    private readonly tracing: TraceService,
  ) {}

  @GrpcMethod('Orders', 'Create')
  create(data: { sku: string }, metadata: grpc.Metadata): Promise<Order> | Observable<Order> {
    // The answer goes with the first value; the Observable completes later (a take(2), say).
    if (data.sku === 'fail-the-job') {
      job.subject.error(new Error('the job failed'));
      return Promise.resolve({ id: 'failed-it' });
    }
    if (data.sku === 'late-complete') {
      return new Observable<Order>((subscriber) => {
        subscriber.next({ id: 'early' });
        setTimeout(() => subscriber.complete(), 50);
      });
    }
    return this.createOrder(data, metadata);
  }

  private async createOrder(data: { sku: string }, metadata: grpc.Metadata): Promise<Order> {
    const order = await this.store.save(data.sku);
    return {
      ...order,
      tenant: String(metadata.get('x-tenant')[0] ?? ''),
      hasTraceparent: metadata.get('traceparent').length === 1,
      tracestate: metadata.get('tracestate').join(','),
    };
  }

  @GrpcMethod('Orders', 'Find')
  find(data: { id: string }): Order | Observable<Order> {
    if (data.id === 'wait-for-the-job') {
      job.waiting();
      return job.subject;
    }
    if (data.id === 'missing')
      throw new RpcException({ code: grpc.status.NOT_FOUND, message: 'no order missing' });
    if (data.id === 'broken') throw new Error('the order store is down');
    // A driver's error code, and a downstream call's status rethrown: not what the client gets.
    if (data.id === 'duplicate')
      throw Object.assign(new Error('E11000 duplicate'), { code: 11000 });
    if (data.id === 'downstream')
      throw Object.assign(new Error('5 NOT_FOUND: no stock'), { code: grpc.status.NOT_FOUND });
    return { id: data.id, traceId: this.tracing.traceId() };
  }

  /** Answers after 300 ms: longer than the deadline of the test that calls it. */
  @GrpcMethod('Orders', 'Recover')
  @UseFilters(new FallbackFilter())
  recover(data: { id: string }): Promise<Order> {
    if (data.id === 'slow')
      return new Promise((resolve) => setTimeout(() => resolve({ id: 'late' }), 300));
    throw new Error('the primary store is down');
  }

  /** A client stream answered through grpc-js's callback, after the stream's end. */
  @GrpcStreamCall('Orders', 'Tally')
  tally(
    call: grpc.ServerReadableStream<Order, unknown>,
    callback: grpc.sendUnaryData<{ count: number; traceId: string | undefined }>,
  ): void {
    const traceId = this.tracing.traceId();
    const times = { started: performance.now(), answered: undefined as number | undefined };
    let count = 0;
    let failing = false;
    call.on('data', (order: Order) => {
      count++;
      failing ||= order.id === 'fail';
    });
    call.on('end', () => {
      streamCallTimes.set(failing ? 'tally-failing' : 'tally', times);
      times.answered = performance.now();
      if (failing) {
        callback({ code: grpc.status.INTERNAL, details: 'the tally broke' }, null);
      } else {
        callback(null, { count, traceId });
      }
    });
  }

  /** A bidirectional stream the handler answers on, and ends, itself. */
  @GrpcStreamCall('Orders', 'Relay')
  relay(call: grpc.ServerDuplexStream<Order, Order>): void {
    const traceId = this.tracing.traceId();
    const times = { started: performance.now(), answered: undefined as number | undefined };
    let failed = false;
    call.on('data', (order: Order) => {
      if (failed) return;
      if (order.id === 'fail') {
        failed = true;
        streamCallTimes.set('relay-failing', times);
        times.answered = performance.now();
        call.emit('error', { code: grpc.status.INTERNAL, details: 'the relay broke' });
        return;
      }
      call.write({ id: `relayed-${order.id}`, traceId });
    });
    call.on('end', () => {
      if (failed) return;
      streamCallTimes.set('relay', times);
      times.answered = performance.now();
      call.end();
    });
  }

  @GrpcMethod('Orders', 'Watch')
  watch(data: { id: string }): Observable<Order> {
    // Ending from a timer: grpc-js reports its own 'cancelled' right after the status it sends.
    if (data.id === 'none-late') return timer(20).pipe(mergeMap(() => EMPTY));
    if (data.id === 'fail-late') {
      return timer(20).pipe(
        mergeMap(() =>
          throwError(() => new RpcException({ code: grpc.status.INTERNAL, message: 'gone' })),
        ),
      );
    }
    return from([1, 2, 3]).pipe(
      concatMap((i) => of(i).pipe(delay(15))),
      map((i) => this.store.snapshot(data.id, i)),
    );
  }

  @GrpcStreamMethod('Orders', 'Upload')
  upload(orders: Observable<Order>): Observable<{ count: number; traceId: string | undefined }> {
    return orders.pipe(
      map((order) => {
        if (order.id === 'poison') throw new Error('a poisoned order');
        return order;
      }),
      toArray(),
      // Checked once the request stream has ended (its 'end' comes in a tick of grpc-js's).
      mergeMap((all) => {
        if (all.some((o) => o.id === 'invalid'))
          throw new RpcException({ code: grpc.status.INVALID_ARGUMENT, message: 'invalid' });
        if (all.some((o) => o.id === 'broken')) throw new Error('the batch broke');
        return of(all);
      }),
      map((all) => ({ count: all.length, traceId: this.tracing.traceId() })),
    );
  }

  @GrpcStreamMethod('Orders', 'Chat')
  chat(orders: Observable<Order>): Observable<Order> {
    return orders.pipe(map((o) => ({ id: `echo-${o.id}`, traceId: this.tracing.traceId() })));
  }
}

const ORDERS = Symbol('ORDERS');

@Controller('orders')
class GatewayController implements OnModuleInit {
  private orders!: OrdersClient;
  constructor(@Inject(ORDERS) private readonly client: ClientGrpc) {}
  onModuleInit(): void {
    this.orders = this.client.getService<OrdersClient>('Orders');
  }

  @Get('create')
  async create(): Promise<Order & { callerMetadataTouched: boolean }> {
    const metadata = new grpc.Metadata();
    metadata.set('x-tenant', 'acme');
    const order = await firstValueFrom(this.orders.create({ sku: 'book', quantity: 1 }, metadata));
    return { ...order, callerMetadataTouched: metadata.get('traceparent').length > 0 };
  }

  /** grpc-js takes call options in the metadata's place. */
  @Get('create-with-options')
  createWithOptions(): Promise<Order> {
    const options = { deadline: Date.now() + 10_000 } as unknown as grpc.Metadata;
    return firstValueFrom(this.orders.create({ sku: 'opt', quantity: 1 }, options));
  }

  /** Forwards trace headers of another trace, as a gateway passing its metadata on might. */
  @Get('create-forwarding')
  createForwarding(): Promise<Order> {
    const metadata = new grpc.Metadata();
    metadata.set('traceparent', `00-${'b'.repeat(32)}-${'c'.repeat(16)}-01`);
    metadata.set('tracestate', 'vendor=from-another-trace');
    return firstValueFrom(this.orders.create({ sku: 'fwd', quantity: 1 }, metadata));
  }

  @Get('find/:id')
  find(@Param('id') id: string): Promise<Order> {
    return firstValueFrom(this.orders.find({ id }));
  }

  @Get('watch')
  watch(): Promise<Order[]> {
    return lastValueFrom(this.orders.watch({ id: 'w' }).pipe(toArray()));
  }

  @Get('upload')
  upload(): Promise<{ count: number; traceId: string }> {
    return firstValueFrom(this.orders.upload(from([{ id: 'a' }, { id: 'b' }, { id: 'c' }])));
  }

  @Get('upload-poisoned')
  uploadPoisoned(): Promise<{ count: number; traceId: string }> {
    return firstValueFrom(this.orders.upload(from([{ id: 'a' }, { id: 'poison' }, { id: 'c' }])));
  }

  @Get('chat')
  chat(): Promise<Order[]> {
    return lastValueFrom(this.orders.chat(from([{ id: 'x' }, { id: 'y' }])).pipe(toArray()));
  }

  @Get('tally')
  tally(): Promise<{ count: number; traceId: string }> {
    return firstValueFrom(this.orders.tally(slowly('a', 'b', 'c')));
  }

  @Get('tally-failing')
  tallyFailing(): Promise<{ count: number; traceId: string }> {
    return firstValueFrom(this.orders.tally(slowly('a', 'fail', 'c')));
  }

  @Get('relay')
  relay(): Promise<Order[]> {
    return lastValueFrom(this.orders.relay(slowly('a', 'b', 'c')).pipe(toArray()));
  }

  @Get('relay-failing')
  relayFailing(): Promise<Order[]> {
    return lastValueFrom(this.orders.relay(slowly('a', 'b', 'fail')).pipe(toArray()));
  }

  @Get('recover')
  recover(): Promise<Order> {
    return firstValueFrom(this.orders.recover({ id: 'any' }));
  }
}

async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

describe('the gRPC transport', () => {
  const openSpans = useSpanHygiene();
  let service: INestMicroservice;
  let gateway: INestApplication;
  let spans: TestSpans;
  let url: string;
  let grpcUrl: string;

  beforeAll(async () => {
    grpcUrl = `127.0.0.1:${await freePort()}`;
    const grpcOptions = { package: 'shop.orders', protoPath: PROTO, url: grpcUrl };

    @Module({
      imports: [TracingModule.forRoot({ serviceName: 'orders', spanProcessor: openSpans })],
      controllers: [OrdersGrpcController],
      providers: [OrderStore],
    })
    class OrdersModule {}
    service = await NestFactory.createMicroservice<MicroserviceOptions>(OrdersModule, {
      transport: Transport.GRPC,
      options: grpcOptions,
      logger: false,
    });
    await service.listen();

    const moduleRef = await Test.createTestingModule({
      imports: [
        TracingTestingModule.forRoot({ serviceName: 'gateway' }),
        ClientsModule.register([{ name: ORDERS, transport: Transport.GRPC, options: grpcOptions }]),
      ],
      controllers: [GatewayController],
    }).compile();
    gateway = moduleRef.createNestApplication(new ExpressAdapter(), { logger: false });
    await gateway.listen(0, '127.0.0.1');
    url = `http://127.0.0.1:${(gateway.getHttpServer().address() as AddressInfo).port}`;
    spans = gateway.get(TestSpans);
  }, 60_000);

  afterAll(async () => {
    await gateway?.close();
    await service?.close();
  });

  beforeEach(() => spans.reset());

  const get = (path: string, traceparent = TRACEPARENT) =>
    fetch(`${url}${path}`, { headers: { traceparent } });

  it('carries a unary call in one trace, merged into the metadata the caller passed', async () => {
    const res = await get('/orders/create');
    expect(res.status).toBe(200);
    const body = (await res.json()) as Order & { callerMetadataTouched: boolean };
    expect(body).toMatchObject({
      id: 'o-book',
      traceId: TRACE_ID,
      tenant: 'acme',
      hasTraceparent: true,
    });
    // The caller's own Metadata object is left as it was.
    expect(body.callerMetadataTouched).toBe(false);

    const all = await spans.waitFor(
      (list) => list.filter((s) => s.name === METHOD('Create')).length === 2,
    );
    const client = all.find((s) => s.name === METHOD('Create') && s.kind === SpanKind.CLIENT)!;
    const handler = all.find((s) => s.name === METHOD('Create') && s.kind === SpanKind.SERVER)!;
    await spans.waitFor((list) => list.some((s) => s.name === 'GET /orders/create'));
    expectChildOf(client, spans.one('GET /orders/create'));
    expectChildOf(handler, client);
    expectChildOf(spans.one('OrderStore.save'), handler);
    for (const span of [client, handler]) {
      expect(span.attributes).toMatchObject({
        'rpc.system.name': 'grpc',
        'rpc.method': METHOD('Create'),
        'rpc.status_code': 'OK',
      });
      expect(span.status.code).toBe(SpanStatusCode.UNSET);
    }
    const [host, port] = grpcUrl.split(':');
    expect(client.attributes).toMatchObject({
      'server.address': host,
      'server.port': Number(port),
    });
  });

  /** The CLIENT and SERVER spans of one call of `name`; the second a child of the first. */
  async function callSpans(name: string): Promise<{ client: ReadableSpan; handler: ReadableSpan }> {
    const all = await spans.waitFor(
      (list) => list.filter((s) => s.name === METHOD(name)).length === 2,
    );
    const client = all.find((s) => s.name === METHOD(name) && s.kind === SpanKind.CLIENT)!;
    const handler = all.find((s) => s.name === METHOD(name) && s.kind === SpanKind.SERVER)!;
    expectChildOf(handler, client);
    return { client, handler };
  }

  it("records a status that blames the caller as a string on both sides, an error on the client's only", async () => {
    const res = await get('/orders/find/missing');
    expect(res.status).toBe(500);
    const { client, handler } = await callSpans('Find');
    expect(handler.attributes['rpc.status_code']).toBe('NOT_FOUND');
    expect(client.attributes['rpc.status_code']).toBe('NOT_FOUND');
    // OpenTelemetry's gRPC conventions: NOT_FOUND is the caller's error, as an HTTP 404 is.
    expect(handler.status.code).toBe(SpanStatusCode.UNSET);
    expect(handler.attributes['error.type']).toBeUndefined();
    expect(handler.events.some((e) => e.name === 'exception')).toBe(false);
    expect(client.status.code).toBe(SpanStatusCode.ERROR);
  });

  it.each([
    ['a code of its own', 'duplicate', 'E11000 duplicate'],
    ["a downstream call's status", 'downstream', '5 NOT_FOUND: no stock'],
  ])(
    'records the status the client got (UNKNOWN) for a plain error with %s',
    async (_label, id, message) => {
      expect((await get(`/orders/find/${id}`)).status).toBe(500);
      const { client, handler } = await callSpans('Find');
      // Nest's exception filter answers anything but an RpcException with UNKNOWN.
      expect(client.attributes['rpc.status_code']).toBe('UNKNOWN');
      expect(handler.attributes['rpc.status_code']).toBe('UNKNOWN');
      expect(handler.status).toEqual({ code: SpanStatusCode.ERROR, message });
    },
  );

  it("records a server's failure (UNKNOWN) as an error on both sides, with the exception on the server", async () => {
    const res = await get('/orders/find/broken');
    expect(res.status).toBe(500);
    const { client, handler } = await callSpans('Find');
    expect(handler.attributes['rpc.status_code']).toBe('UNKNOWN');
    expect(client.attributes['rpc.status_code']).toBe('UNKNOWN');
    expect(handler.status).toEqual({
      code: SpanStatusCode.ERROR,
      message: 'the order store is down',
    });
    // The RPC conventions: a status that came back names the error.
    expect(handler.attributes['error.type']).toBe('UNKNOWN');
    const exception = handler.events.find((e) => e.name === 'exception');
    expect(exception?.attributes?.['exception.message']).toBe('the order store is down');
    expect(exception?.attributes?.['exception.type']).toBe('Error');
    expect(client.status.code).toBe(SpanStatusCode.ERROR);
    expect(client.attributes['error.type']).toBe('UNKNOWN');
    // grpc-js's error carries the status number as `code`: not a type.
    expect(client.events.find((e) => e.name === 'exception')?.attributes?.['exception.type']).toBe(
      'Error',
    );
  });

  it('ends the span of a server-streaming call after the last message, exactly once', async () => {
    const res = await get('/orders/watch');
    const orders = (await res.json()) as Order[];
    expect(orders.map((o) => o.id)).toEqual(['w-1', 'w-2', 'w-3']);
    expect(orders.every((o) => o.traceId === TRACE_ID)).toBe(true);
    const all = await spans.waitFor(
      (list) => list.filter((s) => s.name === METHOD('Watch')).length === 2,
    );
    const handler = all.find((s) => s.name === METHOD('Watch') && s.kind === SpanKind.SERVER)!;
    const snapshots = spans.byName('OrderStore.snapshot');
    expect(snapshots).toHaveLength(3);
    snapshots.forEach((s) => expectChildOf(s, handler));
    const order = spans.names();
    expect(order.indexOf(METHOD('Watch'))).toBeGreaterThan(
      order.lastIndexOf('OrderStore.snapshot'),
    );
    expect(handler.attributes['rpc.status_code']).toBe('OK');
  });

  it.each([
    ['client streaming', '/orders/upload', 'Upload'],
    ['bidirectional streaming', '/orders/chat', 'Chat'],
  ])('traces a %s call (@GrpcStreamMethod)', async (_label, path, name) => {
    const res = await get(path);
    const body = await res.json();
    // Messages of a request stream reach the handler from grpc-js's stream events, outside any
    // request's context, so no trace id is asserted on them (see the README); the span is.
    if (name === 'Upload') expect(body).toMatchObject({ count: 3 });
    else expect(body).toMatchObject([{ id: 'echo-x' }, { id: 'echo-y' }]);
    const { handler } = await callSpans(name);
    expectKind(handler, SpanKind.SERVER);
    expect(handler.attributes['rpc.status_code']).toBe('OK');
  });

  it("records an error a request stream raises part-way, outside the call's context", async () => {
    const res = await get('/orders/upload-poisoned');
    expect(res.status).toBe(500);
    const { client, handler } = await callSpans('Upload');
    expect(handler.attributes['rpc.status_code']).toBe('UNKNOWN');
    expect(handler.status).toEqual({ code: SpanStatusCode.ERROR, message: 'a poisoned order' });
    expect(handler.attributes['error.type']).toBe('UNKNOWN');
    expect(
      handler.events.find((e) => e.name === 'exception')?.attributes?.['exception.message'],
    ).toBe('a poisoned order');
    expect(client.attributes['rpc.status_code']).toBe('UNKNOWN');
    expect(client.status.code).toBe(SpanStatusCode.ERROR);
  });

  it.each([
    ['client stream answered through the callback', '/orders/tally', 'Tally', 'tally'],
    ['bidirectional stream the handler ends', '/orders/relay', 'Relay', 'relay'],
  ])(
    'keeps the span of a @GrpcStreamCall %s open until the call ends',
    async (_label, path, name, key) => {
      const res = await get(path);
      const body = await res.json();
      if (name === 'Tally') expect(body).toEqual({ count: 3, traceId: TRACE_ID });
      else
        expect(body).toEqual(
          ['a', 'b', 'c'].map((id) => ({ id: `relayed-${id}`, traceId: TRACE_ID })),
        );
      const { handler } = await callSpans(name);
      expect(handler.attributes['rpc.status_code']).toBe('OK');
      expect(handler.status.code).toBe(SpanStatusCode.UNSET);
      // The handler returned at once; the call went on until its answer (~60 ms of messages).
      const times = streamCallTimes.get(key)!;
      expect(hrTimeToMilliseconds(handler.duration)).toBeGreaterThanOrEqual(
        times.answered! - times.started - 1,
      );
    },
  );

  it.each([
    ['client stream', '/orders/tally-failing', 'Tally', 'tally-failing', 'the tally broke'],
    ['bidirectional stream', '/orders/relay-failing', 'Relay', 'relay-failing', 'the relay broke'],
  ])(
    'records the status a @GrpcStreamCall %s answers with',
    async (_label, path, name, key, details) => {
      expect((await get(path)).status).toBe(500);
      const { client, handler } = await callSpans(name);
      expect(client.attributes).toMatchObject({
        'rpc.status_code': 'INTERNAL',
        'error.type': 'INTERNAL',
      });
      expect(handler.attributes).toMatchObject({
        'rpc.status_code': 'INTERNAL',
        'error.type': 'INTERNAL',
      });
      expect(handler.status).toEqual({ code: SpanStatusCode.ERROR, message: details });
      expect(client.status.message).toContain(details);
      const times = streamCallTimes.get(key)!;
      expect(hrTimeToMilliseconds(handler.duration)).toBeGreaterThanOrEqual(
        times.answered! - times.started - 1,
      );
    },
  );

  it('records OK, and no error, when an exception filter answers normally', async () => {
    const res = await get('/orders/recover');
    expect(await res.json()).toEqual({ id: 'fallback' });
    const { client, handler } = await callSpans('Recover');
    for (const span of [client, handler]) {
      expect(span.attributes['rpc.status_code']).toBe('OK');
      expect(span.attributes['error.type']).toBeUndefined();
      expect(span.status.code).toBe(SpanStatusCode.UNSET);
    }
  });

  it('records an error on the call that waited for it, not on the call being handled', async () => {
    job.subject = new Subject<Order>();
    const waiting = new Promise<void>((resolve) => (job.waiting = resolve));
    const stub = gateway.get<ClientGrpc>(ORDERS).getService<OrdersClient>('Orders');
    const waited = firstValueFrom(stub.find({ id: 'wait-for-the-job' })).catch((e: unknown) => e);
    await waiting;
    expect(await firstValueFrom(stub.create({ sku: 'fail-the-job', quantity: 1 }))).toMatchObject({
      id: 'failed-it',
    });
    expect(await waited).toMatchObject({ details: 'Internal server error' });
    const finder = (await callSpans('Find')).handler;
    const creator = (await callSpans('Create')).handler;
    expect(finder.attributes['rpc.status_code']).toBe('UNKNOWN');
    expect(finder.status.code).toBe(SpanStatusCode.ERROR);
    expect(finder.events.some((e) => e.name === 'exception')).toBe(true);
    expect(creator.attributes['rpc.status_code']).toBe('OK');
    expect(creator.status.code).toBe(SpanStatusCode.UNSET);
    expect(creator.events).toEqual([]);
  });

  it("traces a call given its options in the metadata's place", async () => {
    const body = (await (await get('/orders/create-with-options')).json()) as Order;
    expect(body).toMatchObject({ id: 'o-opt', traceId: TRACE_ID, hasTraceparent: true });
    const { client } = await callSpans('Create');
    await spans.waitFor((list) => list.some((s) => s.name === 'GET /orders/create-with-options'));
    expectChildOf(client, spans.one('GET /orders/create-with-options'));
  });

  it("replaces forwarded trace headers, the other trace's tracestate included", async () => {
    const body = (await (await get('/orders/create-forwarding')).json()) as Order;
    expect(body).toMatchObject({ id: 'o-fwd', traceId: TRACE_ID, tracestate: '' });
    const { client } = await callSpans('Create');
    expect(client.spanContext().traceId).toBe(TRACE_ID);
  });

  it('continues the trace context the caller put in the metadata, outside any span', async () => {
    const stub = gateway.get<ClientGrpc>(ORDERS).getService<OrdersClient>('Orders');
    const metadata = new grpc.Metadata();
    metadata.set('traceparent', TRACEPARENT);
    metadata.set('tracestate', 'vendor=upstream');
    const order = await firstValueFrom(stub.create({ sku: 'outside', quantity: 1 }, metadata));
    expect(order).toMatchObject({ traceId: TRACE_ID, tracestate: 'vendor=upstream' });
    const { client } = await callSpans('Create');
    expectParentId(client, PARENT_ID);
    expect(client.spanContext().traceId).toBe(TRACE_ID);
  });

  it('keeps 200 concurrent calls in their own traces', async () => {
    const ids = Array.from({ length: 200 }, randomTraceId);
    const replies = await Promise.all(
      ids.map(
        async (id) =>
          ((await (await get('/orders/create', `00-${id}-${randomSpanId()}-01`)).json()) as Order)
            .traceId,
      ),
    );
    expect(replies).toEqual(ids);
    const handlers = (
      await spans.waitFor(
        (list) =>
          list.filter((s) => s.name === METHOD('Create') && s.kind === SpanKind.SERVER).length ===
          200,
        10_000,
      )
    ).filter((s) => s.name === METHOD('Create') && s.kind === SpanKind.SERVER);
    const clients = new Map(spans.byKind(SpanKind.CLIENT).map((s) => [s.spanContext().spanId, s]));
    for (const handler of handlers) {
      expect(clients.get(handler.parentSpanContext?.spanId ?? '')?.spanContext().traceId).toBe(
        handler.spanContext().traceId,
      );
    }
  }, 30_000);

  describe('a plain grpc-js client (not Nest)', () => {
    let raw: grpc.Client & {
      find: (...args: unknown[]) => unknown;
      recover: (...args: unknown[]) => grpc.ClientUnaryCall;
      create: (...args: unknown[]) => grpc.ClientUnaryCall;
      upload: (...args: unknown[]) => grpc.ClientWritableStream<Order>;
      watch: (...args: unknown[]) => grpc.ClientReadableStream<Order>;
    };
    beforeAll(() => {
      const definition = protoLoader.loadSync(PROTO);
      const pkg = grpc.loadPackageDefinition(definition) as unknown as {
        shop: {
          orders: { Orders: new (url: string, creds: grpc.ChannelCredentials) => typeof raw };
        };
      };
      raw = new pkg.shop.orders.Orders(grpcUrl, grpc.credentials.createInsecure());
    });
    afterAll(() => raw.close());

    const find = (metadata: grpc.Metadata) =>
      new Promise<Order>((resolve, reject) =>
        raw.find({ id: 'r1' }, metadata, (err: Error | null, reply: Order) =>
          err ? reject(err) : resolve(reply),
        ),
      );

    it('continues the trace of its traceparent metadata', async () => {
      const metadata = new grpc.Metadata();
      metadata.set('traceparent', TRACEPARENT);
      expect((await find(metadata)).traceId).toBe(TRACE_ID);
      const handler = await spans.waitForOne(METHOD('Find'));
      expectParentId(handler, PARENT_ID);
    });

    it('records DEADLINE_EXCEEDED, an error, when the call outlives its deadline', async () => {
      const error = await new Promise<grpc.ServiceError>((resolve) =>
        raw.recover(
          { id: 'slow' },
          new grpc.Metadata(),
          { deadline: Date.now() + 50 },
          (err: grpc.ServiceError | null) => resolve(err!),
        ),
      );
      expect(error.code).toBe(grpc.status.DEADLINE_EXCEEDED);
      // The handler goes on to its end (Nest does not stop it); the span ends with it.
      const handler = await spans.waitForOne(METHOD('Recover'));
      expect(handler.attributes).toMatchObject({
        'rpc.status_code': 'DEADLINE_EXCEEDED',
        'error.type': 'DEADLINE_EXCEEDED',
      });
      expect(handler.status).toEqual({ code: SpanStatusCode.ERROR, message: 'Deadline exceeded' });
    });

    it.each([
      ['ends with no message', 'none-late', grpc.status.OK, 'OK', SpanStatusCode.UNSET],
      ['fails', 'fail-late', grpc.status.INTERNAL, 'INTERNAL', SpanStatusCode.ERROR],
    ])(
      'records the status of a stream that %s after a timer, not the cancel grpc-js reports after it',
      async (_label, id, code, name, status) => {
        const call = raw.watch({ id }, new grpc.Metadata());
        const received = await new Promise<number>((resolve) => {
          call.on('data', () => undefined);
          call.on('error', (error: grpc.ServiceError) => resolve(error.code));
          call.on('status', (s: grpc.StatusObject) => resolve(s.code));
        });
        expect(received).toBe(code);
        const handler = await spans.waitForOne(METHOD('Watch'));
        expect(handler.attributes['rpc.status_code']).toBe(name);
        expect(handler.status.code).toBe(status);
      },
    );

    it('records OK for a bidirectional call the client ends without sending anything', async () => {
      const call = (raw as unknown as { chat: () => grpc.ClientDuplexStream<Order, Order> }).chat();
      const status = new Promise<number>((resolve) => call.on('status', (s) => resolve(s.code)));
      call.on('data', () => undefined);
      call.end();
      expect(await status).toBe(grpc.status.OK);
      const handler = await spans.waitForOne(METHOD('Chat'));
      expect(handler.attributes['rpc.status_code']).toBe('OK');
    });

    it.each([
      [
        'an RpcException',
        'invalid',
        grpc.status.INVALID_ARGUMENT,
        'INVALID_ARGUMENT',
        SpanStatusCode.UNSET,
      ],
      ['a plain error', 'broken', grpc.status.UNKNOWN, 'UNKNOWN', SpanStatusCode.ERROR],
    ])(
      'records the status of a client stream rejected with %s once it ended',
      async (_label, id, code, name, status) => {
        const error = await new Promise<grpc.ServiceError>((resolve) => {
          const call = raw.upload(new grpc.Metadata(), (err: grpc.ServiceError) => resolve(err));
          call.write({ id: 'a' });
          call.write({ id });
          call.end();
        });
        expect(error.code).toBe(code);
        const handler = await spans.waitForOne(METHOD('Upload'));
        expect(handler.attributes['rpc.status_code']).toBe(name);
        expect(handler.status.code).toBe(status);
      },
    );

    it('records OK for a unary answer whose Observable completes after it went', async () => {
      const reply = await new Promise<Order>((resolve, reject) =>
        raw.create({ sku: 'late-complete' }, new grpc.Metadata(), (err: Error | null, r: Order) =>
          err ? reject(err) : resolve(r),
        ),
      );
      expect(reply.id).toBe('early');
      const handler = await spans.waitForOne(METHOD('Create'));
      expect(handler.attributes['rpc.status_code']).toBe('OK');
    });

    it('records CANCELLED for a call cancelled before its deadline, however long the handler runs', async () => {
      const error = await new Promise<grpc.ServiceError>((resolve) => {
        const call = raw.recover(
          { id: 'slow' },
          new grpc.Metadata(),
          { deadline: Date.now() + 150 },
          (err: grpc.ServiceError) => resolve(err),
        );
        setTimeout(() => call.cancel(), 30);
      });
      expect(error.code).toBe(grpc.status.CANCELLED);
      // The handler answers at 300 ms, past the deadline: the client had cancelled before it.
      const handler = await spans.waitForOne(METHOD('Recover'));
      expect(handler.attributes['rpc.status_code']).toBe('CANCELLED');
      expect(handler.status.code).toBe(SpanStatusCode.UNSET);
    });

    it('records CANCELLED, not an error, when the client cancels a stream part-way', async () => {
      const metadata = new grpc.Metadata();
      metadata.set('traceparent', TRACEPARENT);
      const call = raw.watch({ id: 'c' }, metadata);
      const first = await new Promise<Order>((resolve) => call.once('data', resolve));
      expect(first.id).toBe('c-1');
      call.on('error', () => undefined); // grpc-js reports the cancel as an error
      call.cancel();
      const handler = await spans.waitForOne(METHOD('Watch'));
      expectParentId(handler, PARENT_ID);
      expect(handler.attributes['rpc.status_code']).toBe('CANCELLED');
      expect(handler.attributes['error.type']).toBeUndefined();
      expect(handler.status.code).toBe(SpanStatusCode.UNSET);
    });

    it.each([
      ['no metadata', undefined],
      ['a malformed traceparent', 'bogus-value'],
    ])('starts a new trace for %s', async (_label, value) => {
      const metadata = new grpc.Metadata();
      if (value !== undefined) metadata.set('traceparent', value);
      const reply = await find(metadata);
      const handler = await spans.waitForOne(METHOD('Find'));
      expectRoot(handler);
      expect(reply.traceId).toBe(handler.spanContext().traceId);
    });
  });
});
