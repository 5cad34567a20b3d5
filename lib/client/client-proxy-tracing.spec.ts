import { propagation } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  loadMicroservices,
  type MicroservicesPackage,
} from '../microservices/microservices-package.js';
import { traceClientProxies } from './client-proxy-tracing.js';
import { retainClientTracing } from './client-tracing.state.js';

const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

let pkg: MicroservicesPackage;
beforeAll(async () => {
  pkg = (await loadMicroservices())!;
  traceClientProxies(pkg);
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
});
afterAll(() => propagation.disable());

/** A RabbitMQ client's merge of its `headers` option with a message's own headers. */
function rmqMerge(option: Record<string, string>, message: Record<string, string>): unknown {
  const client = new pkg.ms.ClientRMQ({ headers: option });
  return (client as unknown as { mergeHeaders(h: unknown): unknown }).mergeHeaders(message);
}

describe("the headers option of a RabbitMQ client, merged by Nest's mergeHeaders", () => {
  const option = { 'x-a': 'b', Traceparent: 'stale', tracestate: 'old=1' };

  it("leaves the option's trace headers out while a module traces", () => {
    const release = retainClientTracing();
    try {
      expect(rmqMerge(option, { traceparent: TRACEPARENT })).toEqual({
        'x-a': 'b',
        traceparent: TRACEPARENT,
      });
      // A message that carries no trace header of the call's keeps them.
      expect(rmqMerge(option, { 'x-b': 'c' })).toEqual({ ...option, 'x-b': 'c' });
    } finally {
      release();
    }
  });

  it('passes it through untouched while no module runs', () => {
    expect(rmqMerge(option, { traceparent: TRACEPARENT })).toEqual({
      ...option,
      traceparent: TRACEPARENT,
    });
  });
});
