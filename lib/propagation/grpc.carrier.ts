import type { TextMapGetter, TextMapSetter } from '@opentelemetry/api';
import { parseHost } from './http.carrier.js';
import { headerValue, joinedHeaderValue } from './header-values.js';

/**
 * gRPC: the context travels in the call metadata (HTTP/2 headers), as every gRPC implementation
 * writes it. grpc-js lower-cases names and returns every value of a name, strings or Buffers.
 */
export interface GrpcMetadataLike {
  get(key: string): Array<string | Buffer>;
  getMap(): Record<string, unknown>;
  set(key: string, value: string): void;
  remove?(key: string): void;
}

export const grpcGetter: TextMapGetter<GrpcMetadataLike | undefined> = {
  keys: (carrier) => (carrier === undefined ? [] : Object.keys(carrier.getMap())),
  get: (carrier, key) => {
    if (carrier === undefined || typeof carrier.get !== 'function') return undefined;
    const values = carrier.get(key);
    if (values.length === 0) return undefined;
    // A repeated name is handed over joined (a repeated `traceparent` starts a new trace).
    return values.length === 1 ? headerValue(values[0]) : joinedHeaderValue(values);
  },
};

export const grpcSetter: TextMapSetter<GrpcMetadataLike> = {
  set: (carrier, key, value) => carrier.set(key, value),
};

/**
 * `/package.Service/Method` (a call's path) as `rpc.method` wants it: `package.Service/Method`.
 */
export function grpcMethodOf(path: unknown): string | undefined {
  if (typeof path !== 'string' || path.length < 2) return undefined;
  return path.startsWith('/') ? path.slice(1) : path;
}

/**
 * The gRPC status an error carries: grpc-js errors and Nest's `RpcException({ code })` put a
 * numeric `code` on the error or its payload; anything else reaches a gRPC client as UNKNOWN.
 * (What a client received; a server's answer is {@link grpcStatusSent}.)
 */
export function grpcStatusOfError(error: unknown): number {
  for (const candidate of [error, (error as { getError?: () => unknown })?.getError?.()]) {
    const code = statusCode((candidate as { code?: unknown } | null | undefined)?.code);
    if (code !== undefined) return code;
  }
  return 2;
}

/**
 * The status a Nest gRPC server answers with, from what its exception layer handed grpc-js (the
 * `sent` value; Nest's own filter turns anything but an `RpcException` into an UNKNOWN "Internal
 * server error") or, when that was not seen, from the exception itself: the code of an
 * `RpcException`'s payload, else UNKNOWN. A `code` on any other error (a database driver's, a
 * downstream call's rethrown) is not what the client got.
 */
export function grpcStatusSent(sent: unknown, seen: boolean, exception: unknown): number {
  if (seen) {
    const code = statusCode((sent as { code?: unknown } | null | undefined)?.code);
    return code ?? 2;
  }
  const payload = (exception as { getError?: () => unknown } | null | undefined)?.getError?.();
  return statusCode((payload as { code?: unknown } | null | undefined)?.code) ?? 2;
}

/** A gRPC status code (0 to 16), or undefined. */
function statusCode(code: unknown): number | undefined {
  return typeof code === 'number' && Number.isInteger(code) && code >= 0 && code <= 16
    ? code
    : undefined;
}

/**
 * `server.address` / `server.port` of a gRPC target (`localhost:5000`, `dns:///orders:50051`,
 * `ipv4:10.0.0.1:50051`, `[::1]:50051`); undefined for Unix sockets.
 */
export function grpcTargetOf(
  url: unknown,
): { address: string; port: number | undefined } | undefined {
  if (typeof url !== 'string' || url === '' || url.startsWith('unix:')) return undefined;
  const bare = url.replace(/^dns:(\/\/[^/]*\/)?/, '').replace(/^ipv[46]:/, '');
  const { address, port } = parseHost(bare);
  return address === '' ? undefined : { address, port };
}
