import { createRequire } from 'node:module';
import type * as Microservices from '@nestjs/microservices';
import type { RpcExceptionsHandler } from '@nestjs/microservices/exceptions/rpc-exceptions-handler.js';
import type { GrpcMetadataLike } from '../propagation/grpc.carrier.js';
import type { NatsHeadersLike } from '../propagation/nats.carrier.js';

/**
 * What the transport tracing needs from `@nestjs/microservices` and the client libraries it
 * loads. `@nestjs/microservices` is an optional peer: an HTTP-only application never loads it.
 */
export interface MicroservicesPackage {
  readonly ms: typeof Microservices;
  readonly RpcExceptionsHandler: typeof RpcExceptionsHandler;
  /** Nest's default MQTT serializer (not exported from the package root). */
  readonly MqttRecordSerializer: new () => unknown;
  /** grpc-js's `Metadata`, from the copy Nest itself loads; undefined when grpc-js is absent. */
  grpcMetadata(): (new () => GrpcMetadataLike) | undefined;
  /** `headers()` of the NATS client Nest loads; undefined when it is absent. */
  natsHeaders(): (() => NatsHeadersLike) | undefined;
}

let loading: Promise<MicroservicesPackage | undefined> | undefined;

/** Loads `@nestjs/microservices` once; resolves to undefined when it is not installed. */
export function loadMicroservices(): Promise<MicroservicesPackage | undefined> {
  loading ??= load();
  return loading;
}

function isNotFound(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND';
}

async function load(): Promise<MicroservicesPackage | undefined> {
  let ms: typeof Microservices;
  try {
    ms = await import('@nestjs/microservices');
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
  const [{ RpcExceptionsHandler }, { MqttRecordSerializer }] = await Promise.all([
    import('@nestjs/microservices/exceptions/rpc-exceptions-handler.js'),
    import('@nestjs/microservices/serializers/mqtt-record.serializer.js'),
  ]);
  // The client libraries are peers of @nestjs/microservices: resolve them from where it lives, so
  // that the objects built here are those of the very copy Nest talks to.
  const requireFromNest = createRequire(
    createRequire(import.meta.url).resolve('@nestjs/microservices'),
  );
  const optional = <T>(name: string, pick: (mod: Record<string, unknown>) => T | undefined) => {
    let cached: { value: T | undefined } | undefined;
    return (): T | undefined => {
      if (cached === undefined) {
        try {
          cached = { value: pick(requireFromNest(name) as Record<string, unknown>) };
        } catch {
          cached = { value: undefined };
        }
      }
      return cached.value;
    };
  };
  return {
    ms,
    RpcExceptionsHandler,
    MqttRecordSerializer,
    grpcMetadata: optional('@grpc/grpc-js', (mod) => mod.Metadata as new () => GrpcMetadataLike),
    natsHeaders: optional('@nats-io/transport-node', (mod) => mod.headers as () => NatsHeadersLike),
  };
}
