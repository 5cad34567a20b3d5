import { channel } from 'node:diagnostics_channel';
import http from 'node:http';
import { createRequire } from 'node:module';

/**
 * Outbound HTTP: `fetch` (undici) and Node's `http`/`https` clients (what `@nestjs/axios` and most
 * SDKs use) get a CLIENT span and carry the context, through OpenTelemetry's own
 * instrumentations: undici's reads Node's diagnostics channels, http's wraps `request`/`get` on
 * the core modules. Both stay out when another instrumentation already covers that client (an
 * application running the OpenTelemetry auto-instrumentations), so no request is traced twice.
 * A call made outside any span (start-up code, a timer with no `@Trace`) gets no span of its own
 * and carries no context, as nothing would connect it to a trace. Shared by every module of the
 * process, and turned off by the last one to stop.
 */
interface Instrumentation {
  enable(): void;
  disable(): void;
}

interface SharedHttpClientTracing {
  users: number;
  instrumentations: Instrumentation[];
}

const SHARED = Symbol.for('nestjs-tracing:http-client');
type WithShared = typeof globalThis & { [SHARED]?: SharedHttpClientTracing };

const requireHere = createRequire(import.meta.url);

function isWrapped(fn: unknown): boolean {
  return typeof fn === 'function' && (fn as { __wrapped?: unknown }).__wrapped === true;
}

/** Starts outbound HTTP tracing for one module; returns the function that stops it (once). */
export async function startHttpClientTracing(): Promise<() => void> {
  const global = globalThis as WithShared;
  let shared = global[SHARED];
  if (shared === undefined) {
    shared = { users: 0, instrumentations: [] };
    global[SHARED] = shared;
    // First: requiring a core module once any require hook exists caches it unpatched.
    if (!isWrapped(http.request)) {
      const { HttpInstrumentation } = await import('@opentelemetry/instrumentation-http');
      // Inbound requests are this package's own middleware's.
      const instrumentation = new HttpInstrumentation({
        disableIncomingRequestInstrumentation: true,
        requireParentforOutgoingSpans: true,
      });
      shared.instrumentations.push(instrumentation);
      // The instrumentation enables itself, and patches a core module when it is next required:
      // require them now, for code (ESM included) that calls them through the module object.
      requireHere('http');
      requireHere('https');
    }
    // Someone else instruments undici when its request channel already has a subscriber.
    if (!channel('undici:request:create').hasSubscribers) {
      const { UndiciInstrumentation } = await import('@opentelemetry/instrumentation-undici');
      shared.instrumentations.push(new UndiciInstrumentation({ requireParentforSpans: true }));
    }
  }
  shared.users++;
  let stopped = false;
  return () => {
    if (stopped) return;
    stopped = true;
    const current = global[SHARED];
    if (current === undefined) return;
    current.users--;
    if (current.users === 0) {
      delete global[SHARED];
      for (const instrumentation of current.instrumentations) instrumentation.disable();
    }
  };
}
