import { context, propagation, SpanKind, trace, type Attributes } from '@opentelemetry/api';
import {
  ATTR_RPC_METHOD,
  ATTR_RPC_STATUS_CODE,
  ATTR_RPC_SYSTEM_NAME,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  RPC_SYSTEM_NAME_VALUE_GRPC,
} from '@opentelemetry/semantic-conventions';
import { Observable } from 'rxjs';
import {
  grpcGetter,
  grpcMethodOf,
  grpcSetter,
  grpcStatusOfError,
  grpcTargetOf,
  type GrpcMetadataLike,
} from '../propagation/grpc.carrier.js';
import { withSpan } from '../sdk/chain-context.js';
import { getTracer } from '../sdk/tracer.js';
import type { MicroservicesPackage } from '../microservices/microservices-package.js';
import { fail } from './client-proxy-tracing.js';
import { clientTracingActive } from './client-tracing.state.js';

const PATCHED = Symbol.for('nestjs-tracing.grpc-client');

type Stub = (...args: unknown[]) => Observable<unknown>;
interface GrpcMethodDefinition {
  path?: unknown;
}
interface GrpcProxyLike {
  url?: unknown;
}

/**
 * Traces the stubs of `ClientGrpc#getService()`: each call gets a CLIENT span named after the
 * method (`package.Service/Method`), its context written into the call's metadata (a copy of the
 * metadata the caller passed, or a new one), and `rpc.status_code` from the outcome. The stub is
 * built lazily, per subscription, so that every call gets its own metadata and span. Nest builds
 * the stubs in `createServiceMethod`, wrapped once per process: stubs obtained from `getService()`
 * after the TracingModule started are traced (call it in `onModuleInit`, as Nest's docs do).
 */
export function traceGrpcClients(pkg: MicroservicesPackage): void {
  const proto = pkg.ms.ClientGrpcProxy.prototype as unknown as {
    createServiceMethod: (client: unknown, methodName: string) => Stub;
    [PATCHED]?: true;
  };
  if (proto[PATCHED]) return;
  Object.defineProperty(proto, PATCHED, { value: true });
  const original = proto.createServiceMethod;
  proto.createServiceMethod = function createServiceMethod(this: unknown, client, methodName) {
    const stub = original.call(this, client, methodName);
    const definition = (client as Record<string, GrpcMethodDefinition | undefined>)[methodName];
    const method = grpcMethodOf(definition?.path) ?? methodName;
    const attributes: Attributes = {
      [ATTR_RPC_SYSTEM_NAME]: RPC_SYSTEM_NAME_VALUE_GRPC,
      [ATTR_RPC_METHOD]: method,
    };
    const target = grpcTargetOf((this as GrpcProxyLike).url);
    if (target !== undefined) {
      attributes[ATTR_SERVER_ADDRESS] = target.address;
      if (target.port !== undefined) attributes[ATTR_SERVER_PORT] = target.port;
    }
    const streams = definition as { responseStream?: unknown; requestStream?: unknown } | undefined;
    return tracedStub(
      pkg,
      stub,
      method,
      attributes,
      streams?.responseStream === true,
      streams?.requestStream === true,
    );
  };
}

function tracedStub(
  pkg: MicroservicesPackage,
  stub: Stub,
  method: string,
  attributes: Attributes,
  responseStream: boolean,
  requestStream: boolean,
): Stub {
  const { GrpcStatus } = pkg.ms;
  return (...args: unknown[]) => {
    if (!clientTracingActive()) return stub(...args);
    return new Observable<unknown>((subscriber) => {
      const callArgs = callArgsWithMetadata(pkg, args, requestStream);
      if (callArgs === undefined) return stub(...args).subscribe(subscriber);
      const metadata = callArgs[1] as GrpcMetadataLike;
      const parent = context.active();
      // Outside any span, a trace context the caller put in the metadata (forwarded from an
      // inbound request, say) is the parent: the call continues that trace.
      const spanParent =
        trace.getSpanContext(parent) === undefined
          ? propagation.extract(parent, metadata, grpcGetter)
          : parent;
      const span = getTracer().startSpan(method, { kind: SpanKind.CLIENT, attributes }, spanParent);
      const spanContext = withSpan(parent, span);
      // The call's trace context replaces the caller's: a `tracestate` left beside a new
      // `traceparent` would describe another trace (W3C Trace Context keeps the two together).
      if (propagation.fields().includes('tracestate')) metadata.remove?.('tracestate');
      propagation.inject(withSpan(spanParent, span), metadata, grpcSetter);
      let open = true;
      const subscription = context.with(spanContext, () =>
        stub(...callArgs).subscribe({
          next: (value) => {
            // A unary call has its answer with the one message: a caller that stops listening
            // now (firstValueFrom) has not cancelled anything.
            if (open && !responseStream) {
              open = false;
              span.setAttribute(ATTR_RPC_STATUS_CODE, GrpcStatus[GrpcStatus.OK]);
              span.end();
            }
            context.with(parent, () => subscriber.next(value));
          },
          error: (error: unknown) => {
            if (open) {
              open = false;
              const code = grpcStatusOfError(error);
              const status = GrpcStatus[code] ?? String(code);
              span.setAttribute(ATTR_RPC_STATUS_CODE, status);
              // The RPC conventions: a status that came back is the error's type.
              fail(span, error, status);
            }
            context.with(parent, () => subscriber.error(error));
          },
          complete: () => {
            if (open) {
              open = false;
              span.setAttribute(ATTR_RPC_STATUS_CODE, GrpcStatus[GrpcStatus.OK]);
              span.end();
            }
            context.with(parent, () => subscriber.complete());
          },
        }),
      );
      return () => {
        if (open) {
          open = false;
          // Unsubscribing cancels the call.
          span.setAttribute(ATTR_RPC_STATUS_CODE, GrpcStatus[GrpcStatus.CANCELLED]);
          span.end();
        }
        subscription.unsubscribe();
      };
    });
  };
}

/**
 * The call's arguments with a copy of the caller's metadata (never changed under the caller), or a
 * new one, second; undefined when there is nowhere to put it. grpc-js takes an object there that
 * is not `Metadata` for the call's options (`stub.find(request, { deadline })`): the new metadata
 * goes before them. Nest hands a request stream's call only that second argument, so options given
 * there to a request stream leave the call as it is, untraced, rather than lose them.
 */
function callArgsWithMetadata(
  pkg: MicroservicesPackage,
  args: unknown[],
  requestStream: boolean,
): unknown[] | undefined {
  const given = args[1];
  const callArgs = [...args];
  if (given !== undefined && given !== null) {
    const clone = (given as { clone?: () => GrpcMetadataLike }).clone;
    if (typeof clone === 'function') {
      callArgs[1] = clone.call(given);
      return callArgs;
    }
    if (typeof given !== 'object' || requestStream) return undefined;
    const Metadata = pkg.grpcMetadata();
    if (Metadata === undefined) return undefined;
    callArgs.splice(1, 0, new Metadata());
    return callArgs;
  }
  const Metadata = pkg.grpcMetadata();
  if (Metadata === undefined) return undefined;
  callArgs[1] = new Metadata();
  return callArgs;
}
