import {
  context,
  createContextKey,
  propagation,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Span,
  type TextMapGetter,
} from '@opentelemetry/api';
import {
  ATTR_ERROR_TYPE,
  ATTR_RPC_METHOD,
  ATTR_RPC_STATUS_CODE,
  ATTR_RPC_SYSTEM_NAME,
  RPC_SYSTEM_NAME_VALUE_GRPC,
} from '@opentelemetry/semantic-conventions';
import { grpcGetter, grpcMethodOf, grpcStatusSent } from '../propagation/grpc.carrier.js';
import { recordGetter } from '../propagation/header-values.js';
import {
  KAFKA_SYSTEM,
  kafkaGetter,
  kafkaHeaders,
  kafkaMessageAttributes,
} from '../propagation/kafka.carrier.js';
import { MQTT_SYSTEM, mqttGetter, mqttUserProperties } from '../propagation/mqtt.carrier.js';
import { NATS_SYSTEM, natsGetter } from '../propagation/nats.carrier.js';
import { REDIS_SYSTEM, redisGetter } from '../propagation/redis.carrier.js';
import {
  RMQ_SYSTEM,
  rmqGetter,
  rmqHeaders,
  rmqMessageAttributes,
} from '../propagation/rmq.carrier.js';
import {
  ATTR_MESSAGING_CONSUMER_GROUP_NAME,
  ATTR_MESSAGING_DESTINATION_NAME,
  ATTR_MESSAGING_OPERATION_NAME,
  ATTR_MESSAGING_OPERATION_TYPE,
  ATTR_MESSAGING_SYSTEM,
  MESSAGING_OPERATION_TYPE_VALUE_PROCESS,
} from '../propagation/semconv.js';
import { TCP_SYSTEM, tcpGetter } from '../propagation/tcp.carrier.js';
import { EMPTY_CONTEXT, withSpan } from '../sdk/chain-context.js';
import { startSpanWith } from '../sdk/tracer.js';
import { errorMessage, errorTypeOf, addExceptionEvent } from '../sdk/errors.js';
import type { MicroservicesPackage } from './microservices-package.js';

/** The tracing state of one message being processed by a Nest server. */
export interface RpcServerState {
  span: Span;
  /** gRPC calls report a status code. */
  grpc: boolean;
  /** The first exception Nest's RPC exception layer handled for this message. */
  error: unknown;
  failed: boolean;
  /** What the exception layer answered with (gRPC: what grpc-js sends), once it did. */
  sent: unknown;
  answered: boolean;
  /** The exception layer's answer completed without an error (a filter that recovered). */
  recovered: boolean;
  ended: boolean;
  /** gRPC: the status that went out, where the call reported it (grpc-js's callback, a stream). */
  sentCode?: number;
  /** gRPC: the details of that status, if an error carried them. */
  sentDetails?: string;
  /** A `@GrpcStreamCall` handler: the span ends with the call, not when the handler returns. */
  passThrough: boolean;
  /** gRPC: the metadata the state is also found by, to take out at the end. */
  argsKey: object | undefined;
  /**
   * gRPC: CANCELLED or DEADLINE_EXCEEDED, when the client cancelled or the deadline passed while
   * the call was still open (told apart as it happened).
   */
  cancelCode?: number;
  /** gRPC: the response's status is on its way (the callback answered, or the stream finished). */
  closing: boolean;
}

/** What is known of the server a message came to, once per server. */
export interface ServerFacts {
  /** The queue a RabbitMQ server consumes. */
  queue?: string;
  /** The consumer group of a Kafka server, or the queue group of a NATS handler. */
  consumerGroup?: string;
}

/** A grpc-js server call, as the tracer reads it (`ServerUnaryCall`, `ServerDuplexStream`, …). */
export interface GrpcServerCall {
  getDeadline?: () => unknown;
  once?: (event: string, listener: (...args: unknown[]) => void) => unknown;
  on?: (event: string, listener: (...args: unknown[]) => void) => unknown;
}

/**
 * One gRPC call as it enters Nest: the wrapper of the service method Nest registers with grpc-js
 * makes it, and the start hook, which Nest calls synchronously from that method, takes it.
 */
export interface GrpcCallHandle {
  call: GrpcServerCall;
  /** A `@GrpcStreamCall` handler, which answers on the call itself. */
  passThrough: boolean;
  /** Whether the method streams its responses (the call is then writable: 'finish' ends it). */
  responseStream: boolean;
  state?: RpcServerState;
}

/** Carries the state of the message being processed down to everything that runs for it. */
export const RPC_SERVER_STATE = createContextKey('nestjs-tracing rpc server state');

/**
 * The state of each message being processed, by the second argument Nest hands its handler: the
 * transport's context (`TcpContext`, `NatsContext`, ...), or a gRPC call's `Metadata` (and by a
 * gRPC call's request, for the end hook). Nest's exception layer gets the handler's
 * arguments, so an exception finds its own message's span there, whatever context is active
 * when it arrives: an Observable that errors from a Node callback (`fs`, `bindNodeCallback`),
 * outside any context under the promise-hooks manager; a shared `Subject` errored while another
 * message is being handled; a gRPC request stream's error, raised from grpc-js's `data` event.
 */
const MESSAGE_STATES = new WeakMap<object, RpcServerState>();

/** The state of the message whose handler got these arguments, if any. */
export function stateOfHandlerArgs(
  args: ArrayLike<unknown> | undefined,
): RpcServerState | undefined {
  const key = args?.[1];
  return key !== null && typeof key === 'object' ? MESSAGE_STATES.get(key) : undefined;
}

/** What is known of an inbound message before its span starts. */
interface Inbound {
  name: string;
  kind: SpanKind;
  carrier: unknown;
  getter: TextMapGetter<unknown>;
  attributes: Attributes;
  grpc: boolean;
}

// Attribute objects are built key by key, not as literals with computed keys: see
// HttpServerTracer.start.

/** The attributes every processed message has. */
function processAttributes(system: string): Attributes {
  const attributes: Attributes = {};
  attributes[ATTR_MESSAGING_SYSTEM] = system;
  attributes[ATTR_MESSAGING_OPERATION_NAME] = MESSAGING_OPERATION_TYPE_VALUE_PROCESS;
  attributes[ATTR_MESSAGING_OPERATION_TYPE] = MESSAGING_OPERATION_TYPE_VALUE_PROCESS;
  return attributes;
}

/**
 * The gRPC status codes that make a SERVER span an error: UNKNOWN, DEADLINE_EXCEEDED,
 * UNIMPLEMENTED, INTERNAL, UNAVAILABLE and DATA_LOSS. The client's span is an error for every
 * code but OK.
 */
const GRPC_SERVER_ERRORS: ReadonlySet<number> = new Set([2, 4, 12, 13, 14, 15]);

/** Status messages of the statuses a gRPC server span can fail with and no exception explains. */
const GRPC_STATUS_MESSAGES: Readonly<Record<number, string>> = {
  4: 'Deadline exceeded',
};

/**
 * How close to its deadline a cancelled call counts as having run out of it. A client's own timer
 * resets the call at its deadline, and that reaches the server a moment before the deadline the
 * server computed from the call's timeout, as the server received the call a moment later. (A
 * server whose event loop lags by more than this may still read the cancel.)
 */
const DEADLINE_SLACK_MS = 20;

/**
 * Whether a gRPC call's deadline has passed, or all but (`getDeadline()`: a Date, or ms;
 * Infinity if none).
 */
function deadlinePassed(call: GrpcServerCall): boolean {
  let deadline: unknown;
  try {
    deadline = call.getDeadline?.();
  } catch {
    return false;
  }
  const at = deadline instanceof Date ? deadline.getTime() : Number(deadline);
  return Number.isFinite(at) && at <= Date.now() + DEADLINE_SLACK_MS;
}

/** The attributes of a gRPC call. */
function grpcAttributes(method: string): Attributes {
  const attributes: Attributes = {};
  attributes[ATTR_RPC_SYSTEM_NAME] = RPC_SYSTEM_NAME_VALUE_GRPC;
  attributes[ATTR_RPC_METHOD] = method;
  return attributes;
}

/** A message of a transport with a destination (subject, channel, queue, topic, pattern). */
function messagingInbound(
  system: string,
  destination: unknown,
  carrier: unknown,
  getter: TextMapGetter<never>,
  eventPattern: string | undefined,
  handlerPattern: string | undefined,
): Inbound {
  const dest = typeof destination === 'string' ? destination : (JSON.stringify(destination) ?? '');
  const attributes = processAttributes(system);
  attributes[ATTR_MESSAGING_DESTINATION_NAME] = dest;
  return {
    name: `process ${eventPattern ?? handlerPattern ?? dest}`,
    kind: eventPattern !== undefined ? SpanKind.CONSUMER : SpanKind.SERVER,
    carrier,
    getter: getter,
    attributes,
    grpc: false,
  };
}

/**
 * Whether the span active when a message's processing starts is one another instrumentation
 * (OpenTelemetry's gRPC or amqplib one, say) started for this very message, which the message's
 * span then becomes a child of, rather than its sibling: a SERVER or CONSUMER span, still open,
 * in the trace the message carries (it was started from the same carrier). A span that was
 * merely active where the server connected (a broker connection opened inside a request,
 * whose callbacks `AsyncLocalStorage` keeps in that request's context) is none of these.
 */
function startedForThisMessage(span: Span | undefined, extracted: Context): boolean {
  const kind = (span as { kind?: SpanKind } | undefined)?.kind;
  if (kind !== SpanKind.SERVER && kind !== SpanKind.CONSUMER) return false;
  if (!span!.isRecording()) return false;
  const carried = trace.getSpanContext(extracted);
  return carried === undefined || carried.traceId === span!.spanContext().traceId;
}

/** Where to find a message's span at the end hook (gRPC reports the request object there). */
function endKeyOf(ctx: object): object {
  const request = (ctx as { request?: unknown }).request;
  return request !== null && typeof request === 'object' ? request : ctx;
}

/**
 * Starts and ends the SERVER (request/response) or CONSUMER (event) span of every message a Nest
 * microservice server processes, from the server's processing hooks. Recognises each transport
 * by the context Nest builds for it and reads the trace context from that transport's carrier.
 */
export class RpcServerTracer {
  /** Contexts of messages that entered through `handleEvent`, with the handler's pattern. */
  private readonly events = new WeakMap<object, string>();

  constructor(private readonly pkg: MicroservicesPackage) {}

  /** Notes that a message is an event (no reply expected), and the pattern it matched. */
  markEvent(ctx: unknown, pattern: unknown): void {
    if (ctx !== null && typeof ctx === 'object') this.events.set(ctx, String(pattern));
  }

  /**
   * Runs `next` (the rest of the processing: guards, pipes, interceptors, handler) in the span.
   * `pattern` is the handler's pattern when a wildcard matched the message's; `server` what is
   * known of the server (a RabbitMQ queue, a Kafka consumer group); `grpcCall` the gRPC call itself.
   */
  start<T>(
    transportId: unknown,
    ctx: unknown,
    next: () => T,
    pattern?: string,
    server?: ServerFacts,
    grpcCall?: GrpcCallHandle,
  ): T {
    if (ctx === null || typeof ctx !== 'object') return next();
    let spanContext: Context;
    try {
      const inbound = this.describe(transportId, ctx, pattern, server);
      const extracted = propagation.extract(EMPTY_CONTEXT, inbound.carrier, inbound.getter);
      const active = context.active();
      const parent = startedForThisMessage(trace.getSpan(active), extracted) ? active : extracted;
      const span = startSpanWith(inbound.name, inbound.kind, inbound.attributes, parent);
      const state: RpcServerState = {
        span,
        grpc: inbound.grpc,
        error: undefined,
        failed: false,
        sent: undefined,
        answered: false,
        recovered: false,
        ended: false,
        passThrough: false,
        closing: false,
        argsKey: undefined,
      };
      if (inbound.grpc && grpcCall !== undefined) this.followCall(state, grpcCall);
      // By what the end hook gets (the context; a gRPC call's request), which the handler gets
      // too on every transport but gRPC, where the handler gets the call's metadata: noted as
      // well, and taken out at the end with the other, but for a request stream, whose errors
      // may come from grpc-js's events after it.
      MESSAGE_STATES.set(endKeyOf(ctx), state);
      const metadata = inbound.grpc ? (ctx as { metadata?: unknown }).metadata : undefined;
      if (metadata !== null && typeof metadata === 'object') {
        MESSAGE_STATES.set(metadata, state);
        if ((ctx as { request?: unknown }).request !== undefined) state.argsKey = metadata;
      }
      spanContext = withSpan(parent, span).setValue(RPC_SERVER_STATE, state);
    } catch {
      // Tracing never stops a message from being processed.
      return next();
    }
    return context.with(spanContext, next);
  }

  /**
   * Notes what the span of a gRPC call needs from the call itself: whether it was cancelled or
   * ran out of its deadline (grpc-js then answers for the server, whatever the handler does), and
   * for a `@GrpcStreamCall` handler, which answers on the call after it returned, when and with
   * what status the call ended.
   */
  private followCall(state: RpcServerState, handle: GrpcCallHandle): void {
    const call = handle.call;
    handle.state = state;
    if (typeof call.once !== 'function') return;
    const passThrough = handle.passThrough;
    state.passThrough = passThrough;
    // grpc-js reports 'cancelled' after every status it sends too (the stream closes): only one
    // that comes while the call is open is the client's cancel or the deadline. A streaming
    // response's writable side finishes just before its status goes (`_final`), so 'finish'
    // comes first there; a unary response goes through grpc-js's callback (see `answered`).
    call.once('cancelled', () => {
      if (!state.closing && state.sentCode === undefined) {
        state.cancelCode = deadlinePassed(call) ? 4 : 1;
      }
      if (passThrough) this.finish(state);
    });
    if (handle.responseStream) {
      call.once('finish', () => {
        state.closing = true;
        if (passThrough) this.finish(state);
      });
      // A duplex stream of a `@GrpcStreamCall` handler: grpc-js turns an 'error' on it into the
      // status it sends (it listens itself, so listening too changes nothing). A client stream
      // answers through the callback instead (see `answered`).
      if (passThrough) call.on?.('error', (error: unknown) => this.noteSent(state, error));
    }
  }

  /**
   * A call with a unary response answered through grpc-js's callback (Nest's, or a
   * `@GrpcStreamCall` client-stream handler's): that status goes out, unless the client had gone
   * already. A `@GrpcStreamCall` handler's span ends with it.
   */
  answered(handle: GrpcCallHandle, error: unknown): void {
    const state = handle.state;
    if (state === undefined) return;
    if (state.cancelCode === undefined) {
      state.closing = true;
      if (error === null || error === undefined) state.sentCode ??= 0;
      else this.noteSent(state, error);
    }
    if (state.passThrough) this.finish(state);
  }

  /** The status grpc-js sends for an error a stream call answered with, and its details. */
  private noteSent(state: RpcServerState, error: unknown): void {
    if (state.sentCode !== undefined) return;
    // What grpc-js sends for it: its numeric `code`, else UNKNOWN.
    state.sentCode = grpcStatusSent(error, true, undefined);
    const { details, message } = (error ?? {}) as { details?: unknown; message?: unknown };
    const text = typeof details === 'string' ? details : message;
    if (typeof text === 'string' && text !== '') state.sentDetails = text;
  }

  /**
   * Nest's end hook: ends the span of the message `ctx` belongs to, once. A `@GrpcStreamCall`
   * handler that has not failed has only returned: its call goes on, and ends the span itself.
   */
  end(ctx: unknown): void {
    if (ctx === null || typeof ctx !== 'object') return;
    const state = MESSAGE_STATES.get(ctx);
    if (state === undefined) return;
    // Taken out at once: a weak map that kept every message until its objects were collected
    // would grow by thousands of entries between two GCs, each of which walks it.
    MESSAGE_STATES.delete(ctx);
    if (state.argsKey !== undefined) MESSAGE_STATES.delete(state.argsKey);
    if (state.passThrough && !state.failed) return;
    this.finish(state);
  }

  private finish(state: RpcServerState): void {
    if (state.ended) return;
    state.ended = true;
    const span = state.span;
    let failed = state.failed && !state.recovered;
    let errorType: string | undefined;
    let message: string | undefined;
    if (state.grpc) {
      const code = this.grpcCode(state);
      const name = this.pkg.ms.GrpcStatus[code] ?? String(code);
      span.setAttribute(ATTR_RPC_STATUS_CODE, name);
      // A status that blames the caller (NOT_FOUND, INVALID_ARGUMENT, ...) is no error of the
      // server's, as an HTTP 4xx is not (OpenTelemetry's gRPC conventions); the status names the
      // error, as the RPC conventions ask of `error.type` when a status came back.
      failed = GRPC_SERVER_ERRORS.has(code);
      errorType = name;
      if (failed && !state.failed)
        message = state.sentDetails ?? GRPC_STATUS_MESSAGES[code] ?? name;
    }
    if (failed) {
      const error = state.error;
      if (state.failed) {
        addExceptionEvent(span, error);
        message ??= errorMessage(error);
      }
      span.setAttribute(ATTR_ERROR_TYPE, errorType ?? errorTypeOf(error));
      span.setStatus({ code: SpanStatusCode.ERROR, message });
    } else if (state.failed && state.recovered) {
      // A filter answered for it: no error of the message's, but what happened stays on record
      // (an event consumer's filter that logs and acknowledges, say).
      addExceptionEvent(span, state.error);
    }
    span.end();
  }

  /**
   * The status a gRPC call ended with: what the call reported (a stream call's own answer), else
   * CANCELLED or DEADLINE_EXCEEDED for a call its client left or whose deadline passed (grpc-js
   * answered those itself), else what Nest's exception layer answered, else OK.
   */
  private grpcCode(state: RpcServerState): number {
    if (state.sentCode !== undefined) return state.sentCode;
    if (state.cancelCode !== undefined) return state.cancelCode;
    if (!state.failed || state.recovered) return 0;
    return grpcStatusSent(state.sent, state.answered, state.error);
  }

  private describe(
    transportId: unknown,
    ctx: object,
    handlerPattern: string | undefined,
    server: ServerFacts | undefined,
  ): Inbound {
    const ms = this.pkg.ms;
    const marked = this.events.get(ctx);
    const event = marked !== undefined;
    if (event) this.events.delete(ctx);
    // Named by the handler's pattern; a wildcard's match names the span by the wildcard.
    const eventPattern = event ? (handlerPattern ?? marked) : undefined;
    if (ctx instanceof ms.TcpContext) {
      // The pattern travels as the client wrote it (an object's keys in any order): the route
      // the handler was found by is the normalized one, which the client's span names too.
      return messagingInbound(
        TCP_SYSTEM,
        handlerPattern ?? ctx.getPattern(),
        ctx.getMetadata(),
        tcpGetter,
        eventPattern,
        handlerPattern,
      );
    }
    if (ctx instanceof ms.RedisContext) {
      return messagingInbound(
        REDIS_SYSTEM,
        ctx.getChannel(),
        ctx.getMetadata(),
        redisGetter,
        eventPattern,
        handlerPattern,
      );
    }
    if (ctx instanceof ms.NatsContext) {
      const inbound = messagingInbound(
        NATS_SYSTEM,
        ctx.getSubject(),
        ctx.getHeaders(),
        natsGetter,
        eventPattern,
        handlerPattern,
      );
      if (server?.consumerGroup !== undefined) {
        inbound.attributes[ATTR_MESSAGING_CONSUMER_GROUP_NAME] = server.consumerGroup;
      }
      return inbound;
    }
    if (ctx instanceof ms.RmqContext) {
      const message = ctx.getMessage() as Parameters<typeof rmqHeaders>[0];
      // The queue the server consumes (a message from an exchange has another routing key).
      const routingKey = message?.fields?.routingKey;
      const inbound = messagingInbound(
        RMQ_SYSTEM,
        server?.queue ?? routingKey,
        rmqHeaders(message),
        rmqGetter,
        eventPattern,
        handlerPattern,
      );
      // Many patterns share one queue: the span is named after the pattern.
      if (!event) inbound.name = `process ${handlerPattern ?? ctx.getPattern()}`;
      rmqMessageAttributes(message, inbound.attributes);
      return inbound;
    }
    if (ctx instanceof ms.MqttContext) {
      const packet = ctx.getPacket() as Parameters<typeof mqttUserProperties>[0];
      const inbound = messagingInbound(
        MQTT_SYSTEM,
        ctx.getTopic(),
        mqttUserProperties(packet),
        mqttGetter,
        eventPattern,
        handlerPattern,
      );
      // No `messaging.message.id`: an MQTT packet identifier is the connection's, reused, and
      // another on the publisher's side.
      return inbound;
    }
    if (ctx instanceof ms.KafkaContext) {
      const message = ctx.getMessage() as Parameters<typeof kafkaHeaders>[0];
      const inbound = messagingInbound(
        KAFKA_SYSTEM,
        ctx.getTopic(),
        kafkaHeaders(message),
        kafkaGetter,
        eventPattern,
        handlerPattern,
      );
      kafkaMessageAttributes(message, ctx.getPartition(), inbound.attributes);
      if (server?.consumerGroup !== undefined) {
        inbound.attributes[ATTR_MESSAGING_CONSUMER_GROUP_NAME] = server.consumerGroup;
      }
      return inbound;
    }
    const grpcCall = ctx as { path?: unknown; metadata?: unknown };
    if (
      transportId === ms.Transport.GRPC ||
      (typeof grpcCall.path === 'string' && 'operationId' in ctx)
    ) {
      const method = grpcMethodOf(grpcCall.path) ?? '_OTHER';
      return {
        name: method,
        kind: SpanKind.SERVER,
        carrier: grpcCall.metadata,
        getter: grpcGetter,
        attributes: grpcAttributes(method),
        grpc: true,
      };
    }
    return this.describeCustom(transportId, ctx, eventPattern);
  }

  /**
   * A custom transport strategy: its context is its own, so the trace context is read from
   * `getMetadata()` or `getHeaders()` when it offers a plain object there.
   */
  private describeCustom(
    transportId: unknown,
    ctx: object,
    eventPattern: string | undefined,
  ): Inbound {
    const withCarrier = ctx as { getMetadata?: () => unknown; getHeaders?: () => unknown };
    const carrier =
      typeof withCarrier.getMetadata === 'function'
        ? withCarrier.getMetadata()
        : typeof withCarrier.getHeaders === 'function'
          ? withCarrier.getHeaders()
          : undefined;
    const system =
      typeof transportId === 'symbol'
        ? (transportId.description ?? 'custom')
        : typeof transportId === 'string'
          ? transportId
          : 'custom';
    const pattern = eventPattern ?? system;
    return {
      name: `process ${pattern}`,
      kind: eventPattern !== undefined ? SpanKind.CONSUMER : SpanKind.SERVER,
      carrier,
      getter: recordGetter,
      attributes: processAttributes(system),
      grpc: false,
    };
  }
}
