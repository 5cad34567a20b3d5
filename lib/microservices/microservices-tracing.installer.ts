import { Logger } from '@nestjs/common';
import type { ModulesContainer } from '@nestjs/core';
import type { Observable, Subscription } from 'rxjs';
import { traceClientProxies } from '../client/client-proxy-tracing.js';
import { retainClientTracing } from '../client/client-tracing.state.js';
import { traceGrpcClients } from '../client/grpc-client-tracing.js';
import { loadMicroservices, type MicroservicesPackage } from './microservices-package.js';
import { captureRpcExceptions } from './rpc-exception-capture.js';
import {
  RpcServerTracer,
  type GrpcCallHandle,
  type GrpcServerCall,
  type ServerFacts,
} from './rpc-server-tracer.js';

const INSTALLED = Symbol.for('nestjs-tracing.server');
const logger = new Logger('TracingModule');
let warnedMqtt311 = false;

type StartHook = (transportId: unknown, ctx: unknown, done: () => unknown) => unknown;
type EndHook = (transportId: unknown, ctx: unknown) => void;

/** A Nest `Server` with the members the tracer wires into (protected in Nest's types). */
interface HookableServer {
  transportId?: unknown;
  onProcessingStartHook: StartHook;
  onProcessingEndHook?: EndHook;
  handleEvent?: (pattern: unknown, packet: unknown, ctx: unknown) => unknown;
  getHandlerByPattern?: (pattern: unknown) => unknown;
  messageHandlers?: unknown;
  /** ServerRMQ's queue. */
  queue?: unknown;
  /** ServerKafka's consumer group. */
  groupId?: unknown;
  /** A server's options (ServerNats: `queue`, its handlers' default queue group). */
  options?: { queue?: unknown };
  /** ServerGrpc: makes the function grpc-js calls for each call of one method. */
  createServiceMethod?: (handler: unknown, method: unknown, streaming: unknown) => unknown;
  [INSTALLED]?: true;
}

/** The pattern a handler was registered with, noted on the handler at its first wildcard match. */
const HANDLER_PATTERN = Symbol('nestjs-tracing.handler-pattern');

/** The transport tracing of one running TracingModule; `stop()` undoes what it started. */
export interface MicroservicesTracing {
  stop(): void;
}

const inactive: MicroservicesTracing = { stop: () => undefined };

/**
 * Turns on tracing of every Nest transport for one application:
 * - inbound: every microservice server of the application (standalone, or connected to a hybrid
 *   app, before or after this module started) gets processing hooks that start its message spans
 *   and make them active before guards, pipes, interceptors and the handler run. Nest 12 hands
 *   each server to the application's `ModulesContainer` RPC target registry, which replays the
 *   servers created so far to a new subscriber;
 * - outbound: every `ClientProxy` and gRPC client stub in the process (see the client tracers).
 * Resolves to a no-op when `@nestjs/microservices` is not installed.
 */
export async function startMicroservicesTracing(
  modules: ModulesContainer,
): Promise<MicroservicesTracing> {
  const pkg = await loadMicroservices();
  if (pkg === undefined) return inactive;
  captureRpcExceptions(pkg);
  traceClientProxies(pkg);
  traceGrpcClients(pkg);
  const release = retainClientTracing();
  const tracer = new RpcServerTracer(pkg);
  let subscription: Subscription | undefined;
  const registry = (modules as { getRpcTargetRegistry?: () => Observable<unknown> })
    .getRpcTargetRegistry;
  if (typeof registry === 'function') {
    subscription = registry.call(modules).subscribe((server) => traceServer(pkg, server, tracer));
  }
  return {
    stop: () => {
      subscription?.unsubscribe();
      release();
    },
  };
}

/**
 * Installs the processing hooks on one server. The hook properties become accessors, so that a
 * hook the application sets (before or after) keeps running, inside the span; `handleEvent` is
 * wrapped to tell events (CONSUMER spans) from requests (SERVER spans).
 */
function traceServer(pkg: MicroservicesPackage, candidate: unknown, tracer: RpcServerTracer): void {
  if (!(candidate instanceof pkg.ms.Server)) return;
  const server = candidate as unknown as HookableServer;
  if (server[INSTALLED]) return;
  Object.defineProperty(server, INSTALLED, { value: true });

  // The pattern of the handler a wildcard subscription matched (NATS `*`, MQTT `+`, RabbitMQ and
  // Redis wildcards): the transport reports the concrete subject, topic or routing key, which
  // would make a span name per entity. Nest looks the handler up just before it starts
  // processing the message, synchronously, so the lookup's result is there for the start hook.
  let matched: string | undefined;
  // NATS: the queue group a handler subscribed with (its own, else the server's), found with it.
  const nats = candidate instanceof pkg.ms.ServerNats;
  let queueGroup: string | undefined;
  const getHandlerByPattern = server.getHandlerByPattern;
  if (typeof getHandlerByPattern === 'function') {
    server.getHandlerByPattern = function (this: HookableServer, pattern: unknown) {
      const handler = getHandlerByPattern.call(this, pattern);
      matched =
        handler === null || handler === undefined ? undefined : registered(this, pattern, handler);
      if (nats) {
        // As Nest subscribes: the handler's own queue (an empty one is none), else the server's.
        const own = (handler as { extras?: { queue?: unknown } } | null)?.extras?.queue;
        queueGroup = nonEmpty(own ?? server.options?.queue);
      }
      return handler;
    };
  }
  const facts: ServerFacts = {
    queue: nonEmpty(server.queue),
    consumerGroup: candidate instanceof pkg.ms.ServerKafka ? nonEmpty(server.groupId) : undefined,
  };
  // One per queue group: a NATS server's handlers may each have their own.
  const groupFacts = new Map<string, ServerFacts>();
  const factsFor = (group: string | undefined): ServerFacts => {
    if (group === undefined) return facts;
    let found = groupFacts.get(group);
    if (found === undefined) groupFacts.set(group, (found = { consumerGroup: group }));
    return found;
  };

  // gRPC: Nest hands the hooks a copy of the call, which never learns that the client cancelled
  // or that the deadline passed. The function Nest registers for each method gets the call itself
  // and calls the start hook synchronously, so the call is noted for the start hook there.
  let grpcCall: GrpcCallHandle | undefined;
  const createServiceMethod = server.createServiceMethod;
  if (candidate instanceof pkg.ms.ServerGrpc && typeof createServiceMethod === 'function') {
    const passThroughType = pkg.ms.GrpcMethodStreamingType?.PT_STREAMING;
    server.createServiceMethod = function (this: HookableServer, handler, method, streaming) {
      const serve = createServiceMethod.call(this, handler, method, streaming);
      if (typeof serve !== 'function') return serve;
      const stream = method as { requestStream?: unknown; responseStream?: unknown } | undefined;
      const passThrough = streaming === passThroughType && stream?.requestStream === true;
      const responseStream = stream?.responseStream === true;
      return function (this: unknown, call: GrpcServerCall, callback: unknown, ...rest: unknown[]) {
        const handle: GrpcCallHandle = { call, passThrough, responseStream };
        let reply = callback;
        if (!responseStream && typeof callback === 'function') {
          // A unary response goes through this callback (Nest's, or a client-stream
          // `@GrpcStreamCall` handler's): the status it sends is the call's.
          reply = function (this: unknown, error: unknown, ...more: unknown[]) {
            tracer.answered(handle, error);
            return (callback as (...a: unknown[]) => unknown).call(this, error, ...more);
          };
        }
        grpcCall = handle;
        try {
          return (serve as (...a: unknown[]) => unknown).call(this, call, reply, ...rest);
        } finally {
          grpcCall = undefined;
        }
      };
    };
  }

  let appStart: StartHook = server.onProcessingStartHook;
  let appEnd: EndHook | undefined = server.onProcessingEndHook;
  const start: StartHook = (transportId, ctx, done) => {
    const pattern = matched;
    matched = undefined;
    const group = queueGroup;
    queueGroup = undefined;
    const call = grpcCall;
    grpcCall = undefined;
    return tracer.start(
      transportId,
      ctx,
      () => appStart.call(server, transportId, ctx, done),
      pattern,
      nats ? factsFor(group) : facts,
      call,
    );
  };
  const end: EndHook = (transportId, ctx) => {
    tracer.end(ctx);
    appEnd?.call(server, transportId, ctx);
  };
  Object.defineProperty(server, 'onProcessingStartHook', {
    configurable: true,
    get: () => start,
    set: (hook: StartHook) => {
      appStart = hook;
    },
  });
  Object.defineProperty(server, 'onProcessingEndHook', {
    configurable: true,
    get: () => end,
    set: (hook: EndHook | undefined) => {
      appEnd = hook;
    },
  });

  warnOfMqtt311(pkg, candidate);

  const handleEvent = server.handleEvent;
  if (typeof handleEvent === 'function') {
    server.handleEvent = function (this: unknown, pattern, packet, ctx) {
      tracer.markEvent(ctx, pattern);
      return handleEvent.call(this, pattern, packet, ctx);
    };
  }
}

/**
 * The pattern `handler` is registered with: the one looked up, when that is the handler's key (the
 * usual case, and Redis's wildcard subscriptions, which look the handler up by the subscribed
 * pattern), else the key found for the handler (a wildcard matched the message's own), noted on
 * the handler (`null`: none that is a string, a Kafka RegExp say) so that it is searched once.
 * An MQTT shared subscription (`$share/<group>/<topic>`) is named by its topic.
 */
function registered(
  server: HookableServer,
  pattern: unknown,
  handler: unknown,
): string | undefined {
  const handlers = server.messageHandlers;
  if (!(handlers instanceof Map)) return undefined;
  if (typeof pattern === 'string' && handlers.get(pattern) === handler) return unshared(pattern);
  const noted = (handler as { [HANDLER_PATTERN]?: string | null })[HANDLER_PATTERN];
  if (noted !== undefined) return noted ?? undefined;
  let found: string | null = null;
  for (const [key, value] of handlers as Map<unknown, unknown>) {
    if (value === handler && typeof key === 'string') {
      found = unshared(key);
      break;
    }
  }
  try {
    Object.defineProperty(handler, HANDLER_PATTERN, { value: found });
  } catch {
    // A frozen handler is searched for each time.
  }
  return found ?? undefined;
}

/** An MQTT shared subscription's topic (`$share/<group>/<topic>`); any other pattern as it is. */
function unshared(pattern: string): string {
  if (!pattern.startsWith('$share/')) return pattern;
  const group = pattern.indexOf('/', 7);
  return group === -1 ? pattern : pattern.slice(group + 1);
}

/**
 * An MQTT server that speaks MQTT 3.1.1 (mqtt.js's default) receives no user properties, so every
 * message it handles starts a new trace: said once per process, as the MQTT clients say it.
 */
function warnOfMqtt311(pkg: MicroservicesPackage, server: unknown): void {
  if (warnedMqtt311 || !(server instanceof pkg.ms.ServerMqtt)) return;
  const options = (server as unknown as { options?: { protocolVersion?: unknown } }).options;
  if (options?.protocolVersion === 5) return;
  warnedMqtt311 = true;
  logger.warn(
    'An MQTT server speaks MQTT 3.1.1, which has no user properties: messages reach it without ' +
      'their trace context and each starts a new trace. Set protocolVersion: 5 on the server and ' +
      'its clients.',
  );
}

function nonEmpty(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}
