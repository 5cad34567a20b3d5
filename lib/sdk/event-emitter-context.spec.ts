import 'reflect-metadata';
import { Injectable, type INestApplicationContext } from '@nestjs/common';
import { EventEmitter2, EventEmitterModule, OnEvent } from '@nestjs/event-emitter';
import { Test } from '@nestjs/testing';
import { trace } from '@opentelemetry/api';
import { Trace } from '../decorators/trace.decorator.js';
import { TestSpans, TracingTestingModule } from '../testing/index.js';

type ContextManagerName = 'promise-hooks' | 'async-local-storage';

@Injectable()
class Listeners {
  readonly done: Promise<void>;
  private finish!: () => void;
  private left = 3;

  constructor() {
    this.done = new Promise((resolve) => (this.finish = resolve));
  }

  @OnEvent('order.created', { async: true })
  @Trace('listener.async')
  onAsync(): void {
    this.count();
  }

  @OnEvent('order.created', { async: true, promisify: true })
  @Trace('listener.promisify')
  onPromisify(): void {
    this.count();
  }

  @OnEvent('order.created')
  @Trace('listener.sync')
  onSync(): void {
    this.count();
  }

  private count(): void {
    if (--this.left === 0) this.finish();
  }
}

describe('@OnEvent listeners run in the context of the code that emitted the event', () => {
  let app: INestApplicationContext | undefined;
  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  async function start(contextManager: ContextManagerName) {
    const moduleRef = await Test.createTestingModule({
      imports: [TracingTestingModule.forRoot({ contextManager }), EventEmitterModule.forRoot()],
      providers: [Listeners],
    }).compile();
    const started = await moduleRef.init();
    app = started;
    return {
      emitter: started.get(EventEmitter2),
      listeners: started.get(Listeners),
      spans: started.get(TestSpans),
    };
  }

  it.each<ContextManagerName>(['promise-hooks', 'async-local-storage'])(
    'async, promisified and sync listeners are children of the emitting span (%s)',
    async (contextManager) => {
      const { emitter, listeners, spans } = await start(contextManager);
      const emitting = trace.getTracer('test').startActiveSpan('emit', (span) => {
        emitter.emit('order.created', { id: 1 });
        span.end();
        return span;
      });
      await listeners.done;
      for (const name of ['listener.async', 'listener.promisify', 'listener.sync']) {
        const listener = await spans.waitForOne(name);
        expect(listener.parentSpanContext?.spanId).toBe(emitting.spanContext().spanId);
        expect(listener.spanContext().traceId).toBe(emitting.spanContext().traceId);
      }
    },
  );

  it('keeps what eventemitter2 gives an async listener: the next turn, this.event, off()', async () => {
    const { emitter } = await start('promise-hooks');
    const calls: Array<{ event: unknown; args: unknown[] }> = [];
    const listener = function (this: { event?: unknown }, ...args: unknown[]) {
      calls.push({ event: this.event, args });
    };
    emitter.on('audit.*', listener, { async: true });
    emitter.emit('audit.*', 'a', 2);
    // Not yet: on the next turn of the loop, as eventemitter2 schedules it.
    expect(calls).toEqual([]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(calls).toEqual([{ event: 'audit.*', args: ['a', 2] }]);

    // What eventemitter2 runs through a Promise stays so: emitAsync still waits for it.
    const order: string[] = [];
    const slow = async (): Promise<void> => {
      await new Promise((resolve) => setTimeout(resolve, 5));
      order.push('async listener');
    };
    // eventemitter2's types take listeners as returning nothing; it awaits async ones itself.
    // eslint-disable-next-line @typescript-eslint/no-misused-promises
    emitter.on('paid', slow, false);
    await emitter.emitAsync('paid');
    order.push('emitAsync resolved');
    expect(order).toEqual(['async listener', 'emitAsync resolved']);

    expect(emitter.listeners('audit.*')).toHaveLength(1);
    emitter.off('audit.*', listener);
    expect(emitter.listeners('audit.*')).toHaveLength(0);
    emitter.emit('audit.*', 'b');
    await new Promise((resolve) => setImmediate(resolve));
    expect(calls).toHaveLength(1);
  });
});
