import {
  context,
  propagation,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Span,
  type SpanContext,
  type TraceState,
} from '@opentelemetry/api';
import {
  ATTR_ERROR_TYPE,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
} from '@opentelemetry/semantic-conventions';
import { Logger } from '@nestjs/common';
import { Observable, type Observer, type Subscriber, type Unsubscribable } from 'rxjs';
import { type recordSetter, type HeaderRecord } from '../propagation/header-values.js';
import { KAFKA_SYSTEM, kafkaRecordAttributes, kafkaSetter } from '../propagation/kafka.carrier.js';
import { MQTT_SYSTEM, mqttSetter } from '../propagation/mqtt.carrier.js';
import { NATS_SYSTEM, natsSetter, type NatsHeadersLike } from '../propagation/nats.carrier.js';
import { REDIS_SYSTEM, redisSetter } from '../propagation/redis.carrier.js';
import { RMQ_SYSTEM, rmqSetter } from '../propagation/rmq.carrier.js';
import {
  ATTR_MESSAGING_BATCH_MESSAGE_COUNT,
  ATTR_MESSAGING_DESTINATION_NAME,
  ATTR_MESSAGING_OPERATION_NAME,
  ATTR_MESSAGING_OPERATION_TYPE,
  ATTR_RABBITMQ_DESTINATION_ROUTING_KEY,
  ATTR_MESSAGING_SYSTEM,
  MESSAGING_OPERATION_TYPE_VALUE_SEND,
} from '../propagation/semconv.js';
import { TCP_SYSTEM, tcpSetter } from '../propagation/tcp.carrier.js';
import { withSpan } from '../sdk/chain-context.js';
import { startSpanWith } from '../sdk/tracer.js';
import type { MicroservicesPackage } from '../microservices/microservices-package.js';
import { errorMessage, errorTypeOf, addExceptionEvent } from '../sdk/errors.js';
import { clientTracingActive } from './client-tracing.state.js';

const logger = new Logger('TracingModule');
const PATCHED = Symbol.for('nestjs-tracing.client-proxy');

/** A client as the tracer sees it: Nest's `ClientProxy` with its protected members. */
interface TracedClient {
  normalizePattern(pattern: unknown): string;
  onDispatchHook?: (packet: { metadata?: HeaderRecord }) => void;
  serializer?: { serialize(packet: unknown, options?: unknown): unknown };
  mergePacketOptions?: (options: unknown) => unknown;
  options?: {
    protocolVersion?: unknown;
    host?: unknown;
    port?: unknown;
    wildcards?: unknown;
    exchange?: unknown;
    exchangeType?: unknown;
  };
  queue?: unknown;
  host?: unknown;
  port?: unknown;
}

type Injection = 'metadata' | 'nats' | 'rmq' | 'kafka' | 'mqtt';

/** What is fixed for one client: how its context travels and the attributes every span gets. */
interface ClientProfile {
  system: string;
  injection: Injection;
  attributes: Attributes;
  /** RabbitMQ sends every pattern to one queue. */
  queue: string | undefined;
  /**
   * A RabbitMQ client with `wildcards` or a fanout exchange publishes to an exchange instead,
   * with the pattern as the routing key.
   */
  exchange: string | undefined;
  /** Span name and attributes per pattern. */
  routes: Map<string, RouteSpan>;
}

type Method = (this: unknown, ...args: unknown[]) => unknown;

/**
 * Traces every `ClientProxy` however it was created (`ClientsModule.register`/`registerAsync`,
 * `ClientProxyFactory.create`, `@Client()`, `new ClientTCP()`): `send` gets a CLIENT span that
 * ends with the reply, `emit` (and Kafka's `emitBatch`) a PRODUCER span that ends when the broker
 * took the message, each a child of the active span and named `send <pattern>`. The context
 * travels in each transport's own carrier, installed on a client the first time it sends:
 * - TCP, Redis and custom transports: `packet.metadata`, through Nest's dispatch hook;
 * - NATS: the message headers; RabbitMQ: the AMQP headers; Kafka: the record headers, each added
 *   to what the client's serializer produced, next to the headers the application set;
 * - MQTT 5: the user properties of an `MqttRecord`.
 *
 * Nest offers no hook that sees a client being created, nor one that is told when a reply
 * arrives, so `send`, `emit` and `emitBatch` are wrapped on the prototypes, once per process;
 * the wrappers pass calls through untouched while no TracingModule is running.
 */
export function traceClientProxies(pkg: MicroservicesPackage): void {
  const { ClientProxy, ClientKafka } = pkg.ms;
  const tracer = new ClientProxyTracer(pkg);
  keepOptionTraceHeadersOut(pkg);
  wrapMethod(
    ClientProxy.prototype,
    'send',
    (original) =>
      function send(this: unknown, pattern: unknown, data: unknown) {
        return tracer.send(this as TracedClient, original, pattern, data);
      },
  );
  wrapMethod(
    ClientProxy.prototype,
    'emit',
    (original) =>
      function emit(this: unknown, pattern: unknown, data: unknown) {
        return tracer.emit(this as TracedClient, original, [pattern, data], undefined);
      },
  );
  wrapMethod(
    ClientKafka.prototype,
    'emitBatch',
    (original) =>
      function emitBatch(this: unknown, pattern: unknown, data: unknown) {
        const messages = (data as { messages?: unknown } | null)?.messages;
        const count = Array.isArray(messages) ? messages.length : undefined;
        // Nest sends nothing for an empty batch: no span either.
        if (count === 0) return original.call(this, pattern, data);
        return tracer.emit(this as TracedClient, original, [pattern, data], count);
      },
  );
}

function wrapMethod(target: object, name: string, wrap: (original: Method) => Method): void {
  const holder = target as Record<string | symbol, unknown>;
  // The prototype's own marks: a subclass's prototype (ClientRMQ's) must not read its parent's.
  const own = Object.prototype.hasOwnProperty.call(target, PATCHED);
  const marks = own ? (holder[PATCHED] as Set<string>) : new Set<string>();
  if (marks.has(name) || typeof holder[name] !== 'function') return;
  marks.add(name);
  if (!own) Object.defineProperty(target, PATCHED, { value: marks });
  const original = holder[name] as Method;
  const wrapper = wrap(original);
  Object.defineProperty(wrapper, 'name', { value: original.name, configurable: true });
  holder[name] = wrapper;
}

class ClientProxyTracer {
  private readonly profiles = new WeakMap<object, ClientProfile>();
  private readonly warned = new Set<string>();

  constructor(private readonly pkg: MicroservicesPackage) {}

  send(client: TracedClient, original: Method, pattern: unknown, data: unknown): unknown {
    if (!clientTracingActive() || client instanceof this.pkg.ms.ClientGrpcProxy) {
      return original.call(client, pattern, data);
    }
    const profile = this.profileOf(client);
    const source = original.call(client, pattern, data) as Observable<unknown>;
    const route = recordRoute(profile, routeSpan(profile, client, pattern), data);
    return new Observable<unknown>((subscriber) => followReply(source, route, subscriber));
  }

  emit(
    client: TracedClient,
    original: Method,
    args: unknown[],
    batchCount: number | undefined,
  ): unknown {
    if (!clientTracingActive() || client instanceof this.pkg.ms.ClientGrpcProxy) {
      return original.apply(client, args);
    }
    const profile = this.profileOf(client);
    const route = routeSpan(profile, client, args[0]);
    const attributes = { ...route.attributes };
    if (batchCount === undefined && profile.system === KAFKA_SYSTEM) {
      kafkaRecordAttributes(args[1], attributes);
    }
    // Key by key: V8 can define a literal's computed key through its runtime every time.
    if (batchCount !== undefined) attributes[ATTR_MESSAGING_BATCH_MESSAGE_COUNT] = batchCount;
    const parent = context.active();
    const span = startSpanWith(route.name, SpanKind.PRODUCER, attributes, parent);
    let result: Observable<unknown>;
    try {
      // emit() publishes eagerly: everything it starts runs in the span's (ids') context.
      result = context.with(sendingContext(parent, span), () =>
        original.apply(client, args),
      ) as Observable<unknown>;
    } catch (error) {
      fail(span, error);
      throw error;
    }
    result.subscribe({ error: (error: unknown) => fail(span, error), complete: () => span.end() });
    return result;
  }

  /** How this client's context travels; installs the carrier on first use. */
  private profileOf(client: TracedClient): ClientProfile {
    let profile = this.profiles.get(client);
    if (profile !== undefined) {
      // An application may replace its dispatch hook or serializer later: chain it again.
      this.install(client, profile);
      return profile;
    }
    profile = this.describe(client);
    this.profiles.set(client, profile);
    this.install(client, profile);
    return profile;
  }

  private describe(client: TracedClient): ClientProfile {
    const ms = this.pkg.ms;
    const attributes: Attributes = {
      [ATTR_MESSAGING_OPERATION_NAME]: MESSAGING_OPERATION_TYPE_VALUE_SEND,
      [ATTR_MESSAGING_OPERATION_TYPE]: MESSAGING_OPERATION_TYPE_VALUE_SEND,
    };
    let system: string;
    let injection: Injection = 'metadata';
    let queue: string | undefined;
    let exchange: string | undefined;
    if (client instanceof ms.ClientTCP) {
      system = TCP_SYSTEM;
      if (typeof client.host === 'string') attributes[ATTR_SERVER_ADDRESS] = client.host;
      if (typeof client.port === 'number') attributes[ATTR_SERVER_PORT] = client.port;
    } else if (client instanceof ms.ClientRedis) {
      system = REDIS_SYSTEM;
    } else if (client instanceof ms.ClientNats) {
      system = NATS_SYSTEM;
      injection = 'nats';
    } else if (client instanceof ms.ClientRMQ) {
      system = RMQ_SYSTEM;
      injection = 'rmq';
      queue = typeof client.queue === 'string' ? client.queue : undefined;
      const options = client.options;
      if (options?.wildcards === true || options?.exchangeType === 'fanout') {
        // As ClientRMQ picks it: the exchange option, else one named after the queue.
        exchange = typeof options.exchange === 'string' ? options.exchange : queue;
      }
    } else if (client instanceof ms.ClientKafka) {
      system = KAFKA_SYSTEM;
      injection = 'kafka';
    } else if (client instanceof ms.ClientMqtt) {
      system = MQTT_SYSTEM;
      injection = 'mqtt';
    } else {
      system = (client as object).constructor?.name || 'custom';
    }
    attributes[ATTR_MESSAGING_SYSTEM] = system;
    return { system, injection, attributes, queue, exchange, routes: new Map() };
  }

  private install(client: TracedClient, profile: ClientProfile): void {
    switch (profile.injection) {
      case 'metadata':
        return installDispatchHook(
          client,
          profile.system === REDIS_SYSTEM ? redisSetter : tcpSetter,
        );
      case 'nats':
        return installSerializer(client, (out) => this.injectNats(out));
      case 'rmq':
        return installSerializer(client, injectRmq);
      case 'kafka':
        return installSerializer(client, injectKafka);
      case 'mqtt':
        return this.installMqtt(client);
    }
  }

  private injectNats(out: unknown): void {
    if (out === null || typeof out !== 'object') return;
    const serialized = out as { headers?: NatsHeadersLike };
    const create = this.pkg.natsHeaders();
    if (create === undefined) return;
    // A copy: the headers may belong to a NatsRecord the application sends again.
    const headers = create();
    const own = serialized.headers;
    if (own !== undefined && typeof own.keys === 'function') {
      for (const key of own.keys()) {
        own
          .values(key)
          .forEach((value, i) =>
            i === 0
              ? headers.set(key, value)
              : (headers as unknown as { append(k: string, v: string): void }).append(key, value),
          );
      }
    }
    propagation.inject(context.active(), headers, natsSetter);
    serialized.headers = headers;
  }

  private warnOnce(message: string): void {
    if (this.warned.has(message)) return;
    this.warned.add(message);
    logger.warn(message);
  }

  /**
   * MQTT: the client reads the publish options from an `MqttRecord` before serializing, and may
   * publish only after the broker acknowledged the reply subscription, outside the caller's
   * context. So the user properties are computed in the dispatch hook, where the context is the
   * span's, into a new record; the serialized body is the same as before.
   */
  private installMqtt(client: TracedClient): void {
    const { MqttRecord } = this.pkg.ms;
    const { MqttRecordSerializer } = this.pkg;
    installDispatchHook(client, undefined, (packet: { data?: unknown }) => {
      if (client.options?.protocolVersion !== 5) {
        return this.warnOnce(
          'An MQTT client speaks MQTT 3.1.1, which has no user properties: the trace context ' +
            'cannot travel with its messages. Set protocolVersion: 5 on the client and the server.',
        );
      }
      const data = packet.data;
      const isRecord = data instanceof MqttRecord;
      if (!isRecord && !(client.serializer instanceof MqttRecordSerializer)) {
        return this.warnOnce(
          'An MQTT client with a custom serializer sends plain data: wrap it in an MqttRecord ' +
            '(MqttRecordBuilder) so that the trace context can travel in its user properties.',
        );
      }
      const record = isRecord ? (data as { data: unknown; options?: MqttOptions }) : undefined;
      const options: MqttOptions = { ...record?.options };
      const userProperties: HeaderRecord = { ...options.properties?.userProperties };
      propagation.inject(context.active(), userProperties, mqttSetter);
      if (Object.keys(userProperties).length === 0) return;
      options.properties = { ...options.properties, userProperties };
      packet.data = new MqttRecord(
        record === undefined ? data : record.data,
        options as ConstructorParameters<typeof MqttRecord>[1],
      );
    });
  }
}

interface MqttOptions {
  properties?: { userProperties?: HeaderRecord } & Record<string, unknown>;
  [key: string]: unknown;
}

const OUR_HOOK = Symbol('nestjs-tracing.dispatch-hook');
const OUR_SERIALIZER = Symbol('nestjs-tracing.serializer');

type DispatchHook = ((packet: Record<string, unknown>) => void) & { [OUR_HOOK]?: true };

/**
 * Chains a dispatch hook in front of the client's own (set before or after ours: the property
 * becomes an accessor that keeps the application's hook and always returns ours).
 */
function installDispatchHook(
  client: TracedClient,
  setter: typeof recordSetter | undefined,
  custom?: (packet: Record<string, unknown>) => void,
): void {
  const holder = client as unknown as { onDispatchHook?: DispatchHook };
  if (holder.onDispatchHook?.[OUR_HOOK]) return;
  let appHook = holder.onDispatchHook;
  const hook: DispatchHook = (packet) => {
    appHook?.(packet);
    try {
      if (custom !== undefined) {
        custom(packet);
      } else if (setter !== undefined) {
        // A copy: the application may share one metadata object between packets.
        const metadata: HeaderRecord = { ...(packet.metadata as HeaderRecord | undefined) };
        propagation.inject(context.active(), metadata, setter);
        packet.metadata = metadata;
      }
    } catch {
      // A packet always goes out, traced or not.
    }
  };
  hook[OUR_HOOK] = true;
  Object.defineProperty(client, 'onDispatchHook', {
    configurable: true,
    enumerable: true,
    get: () => hook,
    set: (value: DispatchHook | undefined) => {
      appHook = value;
    },
  });
}

/** Wraps the client's serializer (the application's own, if it set one) to add the context. */
function installSerializer(client: TracedClient, inject: (out: unknown) => unknown): void {
  const current = client.serializer;
  if (current === undefined || (current as { [OUR_SERIALIZER]?: true })[OUR_SERIALIZER]) return;
  let inner = current;
  // `inject` changes what the serializer made, or returns what goes out in its place.
  const add = (out: unknown): unknown => {
    try {
      return inject(out) ?? out;
    } catch {
      // A message always goes out, traced or not.
      return out;
    }
  };
  const wrapper = {
    [OUR_SERIALIZER]: true as const,
    serialize(packet: unknown, options?: unknown): unknown {
      const out = inner.serialize(packet, options);
      if (out instanceof Promise) {
        // Serialized asynchronously: inject in the context of the call, not of the resolution.
        const active = context.active();
        return out.then((value) => context.with(active, add, undefined, value));
      }
      return add(out);
    },
  };
  Object.defineProperty(client, 'serializer', {
    configurable: true,
    enumerable: true,
    get: () => wrapper,
    set: (value: typeof inner) => {
      inner = value;
    },
  });
}

/**
 * The trace headers of a client's `headers` option that must not go out beside those the call
 * wrote into the message's own headers (`has`: whether those hold a name, exactly; `names`:
 * theirs): none when the call wrote none (no context to carry), or the option has none.
 */
function optionTraceHeaders(
  optionHeaders: unknown,
  has: (name: string) => boolean,
  names: () => Iterable<string>,
): string[] {
  if (optionHeaders === null || typeof optionHeaders !== 'object') return [];
  const fields = propagation.fields().map((field) => field.toLowerCase());
  const isTraceField = (name: string): boolean => fields.includes(name.toLowerCase());
  let theirs: string[] | undefined;
  for (const name of Object.keys(optionHeaders)) {
    if (isTraceField(name) && !has(name)) (theirs ??= []).push(name);
  }
  if (theirs === undefined) return [];
  for (const name of names()) if (isTraceField(name)) return theirs;
  return [];
}

interface NatsHeadersMerged {
  has(key: string): boolean;
  delete(key: string): void;
  keys(): Iterable<string>;
}

/**
 * The `headers` option of a NATS or RabbitMQ client goes on every message, merged by Nest after
 * the serializer (where the call's trace headers were written): a trace header there (in another
 * case, or a `tracestate` of another trace) would go out beside the call's. Once the call's are
 * in, those of the option are left out; a message the call wrote none for keeps them. Wrapped
 * on the prototypes, once per process, reading the option as each message goes (a subclass
 * that merges the headers itself, without Nest's `mergeHeaders`, keeps them).
 */
function keepOptionTraceHeadersOut(pkg: MicroservicesPackage): void {
  const { ClientNats, ClientRMQ } = pkg.ms;
  const optionsOf = (client: unknown): unknown =>
    (client as { options?: { headers?: unknown } }).options?.headers;
  wrapMethod(
    ClientRMQ.prototype,
    'mergeHeaders',
    (original) =>
      function mergeHeaders(this: unknown, requestHeaders: unknown) {
        const merged = original.call(this, requestHeaders);
        if (!clientTracingActive()) return merged;
        const option = optionsOf(this);
        if (option === undefined || merged === null || typeof merged !== 'object') return merged;
        try {
          const record = (requestHeaders ?? {}) as Record<string, unknown>;
          const theirs = optionTraceHeaders(
            option,
            (name) => name in record,
            () => Object.keys(record),
          );
          for (const name of theirs) delete (merged as Record<string, unknown>)[name];
        } catch {
          // The message goes out as Nest made it.
        }
        return merged;
      },
  );
  wrapMethod(
    ClientNats.prototype,
    'mergeHeaders',
    (original) =>
      function mergeHeaders(this: unknown, requestHeaders: unknown) {
        if (!clientTracingActive()) return original.call(this, requestHeaders);
        const option = optionsOf(this);
        const headers = requestHeaders as NatsHeadersMerged | undefined;
        let theirs: string[] = [];
        if (option !== undefined && headers !== undefined && headers !== null) {
          try {
            theirs = optionTraceHeaders(
              option,
              (name) => headers.has(name),
              () => headers.keys(),
            );
          } catch {
            theirs = [];
          }
        }
        const merged = original.call(this, requestHeaders);
        for (const name of theirs) (merged as NatsHeadersMerged).delete(name);
        return merged;
      },
  );
}

function injectRmq(out: unknown): void {
  if (out === null || typeof out !== 'object') return;
  const serialized = out as { options?: { headers?: HeaderRecord } & Record<string, unknown> };
  const headers: HeaderRecord = { ...serialized.options?.headers };
  propagation.inject(context.active(), headers, rmqSetter);
  serialized.options = { ...serialized.options, headers };
}

/**
 * Nest's Kafka serializer hands back the application's own record object: the context goes out
 * on a copy, so that a record sent again (from another request) carries nothing of this one's.
 */
function injectKafka(out: unknown): unknown {
  if (out === null || typeof out !== 'object') return undefined;
  const serialized = out as { headers?: HeaderRecord };
  const headers: HeaderRecord = { ...serialized.headers };
  propagation.inject(context.active(), headers, kafkaSetter);
  return { ...serialized, headers };
}

function patternOf(client: TracedClient, pattern: unknown): string {
  try {
    return client.normalizePattern(pattern);
  } catch {
    return String(pattern);
  }
}

/**
 * What every span of one client and pattern shares, built once. Each span gets a shallow copy of
 * the attributes (its own object, which it keeps and adds to): a spread copies the object's
 * layout at once, where the tracer's checked copy (`SpanOptions.attributes`) checks each value
 * again, ~2k instructions a TCP CLIENT span (callgrind).
 */
interface RouteSpan {
  name: string;
  attributes: Attributes;
}

/** Patterns are few and fixed; a client inventing patterns must not grow a cache without bound. */
const MAX_ROUTES_PER_CLIENT = 1000;

function routeSpan(profile: ClientProfile, client: TracedClient, pattern: unknown): RouteSpan {
  const route = patternOf(client, pattern);
  const cached = profile.routes.get(route);
  if (cached !== undefined) return cached;
  const attributes: Attributes = { ...profile.attributes };
  if (profile.exchange !== undefined) {
    attributes[ATTR_MESSAGING_DESTINATION_NAME] = profile.exchange;
    attributes[ATTR_RABBITMQ_DESTINATION_ROUTING_KEY] =
      typeof pattern === 'string' ? pattern : (JSON.stringify(pattern) ?? route);
  } else if (profile.queue !== undefined) {
    attributes[ATTR_MESSAGING_DESTINATION_NAME] = profile.queue;
    attributes[ATTR_RABBITMQ_DESTINATION_ROUTING_KEY] = profile.queue;
  } else {
    attributes[ATTR_MESSAGING_DESTINATION_NAME] = route;
  }
  const built = { name: `send ${route}`, attributes };
  if (profile.routes.size < MAX_ROUTES_PER_CLIENT) profile.routes.set(route, built);
  return built;
}

/**
 * The context Nest's client builds and sends a message in: the CLIENT/PRODUCER span's ids, as a
 * non-recording span, instead of the span itself. Everything that reads the active span there
 * (the carriers, a child span) gets the same trace and parent; only writes to the active span
 * from inside the client's send pipeline (a custom serializer's, say) are not recorded.
 *
 * Why: every promise Nest's `send` makes carries the context it was made in, and with the SDK's
 * span object reachable from there V8 took to allocating that span's parts in the old generation
 * (allocation-site pretenuring): on a traced TCP client, scavenges of ~9 ms every ~1,000
 * messages and a full GC every few seconds, against ~2 ms and none with the ids alone. The ids
 * are copied into an instance of a class: V8 keeps no allocation-site feedback for objects made
 * by `new`, where the SDK's span context is an object literal.
 */
function sendingContext(parent: Context, span: Span): Context {
  return withSpan(parent, trace.wrapSpanContext(new SentSpanContext(span.spanContext())));
}

/** A copy of a span's context. */
class SentSpanContext implements SpanContext {
  readonly traceId: string;
  readonly spanId: string;
  readonly traceFlags: number;
  readonly traceState: TraceState | undefined;
  readonly isRemote: boolean | undefined;

  constructor(of: SpanContext) {
    this.traceId = of.traceId;
    this.spanId = of.spanId;
    this.traceFlags = of.traceFlags;
    this.traceState = of.traceState;
    this.isRemote = of.isRemote;
  }
}

/**
 * Starts the CLIENT span of one subscription to a `send` and subscribes to the reply stream
 * inside it (so the packet is built, and its carrier written, there). The span ends when the
 * reply completes, errors or is unsubscribed; each notification is handed on in the caller's
 * context: replies arrive on a connection opened by some earlier request, whose context must not
 * leak into the caller's pipeline.
 */
/** A Kafka record's key and partition beside the pattern's attributes; the route as it is else. */
function recordRoute(profile: ClientProfile, route: RouteSpan, data: unknown): RouteSpan {
  if (profile.system !== KAFKA_SYSTEM) return route;
  const attributes = { ...route.attributes };
  kafkaRecordAttributes(data, attributes);
  return { name: route.name, attributes };
}

function followReply(
  source: Observable<unknown>,
  route: RouteSpan,
  subscriber: Subscriber<unknown>,
): Unsubscribable {
  const caller = context.active();
  const span = startSpanWith(route.name, SpanKind.CLIENT, { ...route.attributes }, caller);
  const follower = new ReplyFollower(span, caller, subscriber);
  follower.subscription = context.with(
    sendingContext(caller, span),
    source.subscribe,
    source,
    follower,
  );
  return follower;
}

/**
 * The observer of one reply stream and the teardown of its subscription, as one object: its
 * methods are shared, where closures made for every `send` each cost V8 a lazy-compile stub the
 * first time they ran (callgrind, traced TCP client).
 */
class ReplyFollower implements Observer<unknown>, Unsubscribable {
  subscription: Unsubscribable | undefined = undefined;
  private open = true;
  private replied = false;

  constructor(
    private readonly span: Span,
    private readonly caller: Context,
    private readonly subscriber: Subscriber<unknown>,
  ) {}

  next(value: unknown): void {
    this.replied = true;
    context.with(this.caller, this.subscriber.next, this.subscriber, value);
  }

  error(error: unknown): void {
    if (this.open) {
      this.open = false;
      fail(this.span, error);
    }
    context.with(this.caller, this.subscriber.error, this.subscriber, error);
  }

  complete(): void {
    if (this.open) {
      this.open = false;
      this.span.end();
    }
    context.with(this.caller, this.subscriber.complete, this.subscriber);
  }

  unsubscribe(): void {
    if (this.open) {
      this.open = false;
      // The caller stopped waiting before any reply (a timeout, takeUntil). One who took the
      // first reply and left (firstValueFrom) got what the call was for.
      if (!this.replied) this.span.addEvent('cancelled');
      this.span.end();
    }
    this.subscription?.unsubscribe();
  }
}

export function fail(span: Span, error: unknown, errorType?: string): void {
  if (span.isRecording()) {
    addExceptionEvent(span, error);
    span.setAttribute(ATTR_ERROR_TYPE, errorType ?? errorTypeOf(error));
    span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(error) });
  }
  span.end();
}
