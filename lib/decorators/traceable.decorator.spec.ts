import 'reflect-metadata';
import { Get, Injectable, SetMetadata } from '@nestjs/common';
import { PATH_METADATA } from '@nestjs/common/constants.js';
import { Test } from '@nestjs/testing';
import { SpanKind } from '@opentelemetry/api';
import { type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { NO_TRACE_METADATA } from './decorators.constants.js';
import { NoTrace } from './no-trace.decorator.js';
import { isTracedMethod, Trace } from './trace.decorator.js';
import { Traceable } from './traceable.decorator.js';
import { useOtelHarness } from '../../test/support/otel-harness.js';

const { exporter } = useOtelHarness();

const spans = (): ReadableSpan[] => exporter.getFinishedSpans();
const names = (): string[] => spans().map((s) => s.name);

/** Replaces the method without copying metadata, as careless third-party decorators do. */
function Replacing(): MethodDecorator {
  return (_target, _key, descriptor) => {
    const original = descriptor.value as unknown as (...args: unknown[]) => unknown;
    descriptor.value = function (this: unknown, ...args: unknown[]) {
      return original.apply(this, args);
    } as typeof descriptor.value;
  };
}

const symbolic = Symbol('symbolic');

class Base {
  inherited(): string {
    return 'inherited';
  }
}

@Traceable()
class Service extends Base {
  static staticMethod(): string {
    return 'static';
  }

  private stored = 0;

  async load(id: string): Promise<string> {
    await Promise.resolve();
    return this.format(id);
  }

  format(id: string): string {
    return `item:${id}`;
  }

  get value(): number {
    return this.stored;
  }

  set value(v: number) {
    this.stored = v;
  }

  @NoTrace()
  skipped(): string {
    return 'skipped';
  }

  @SetMetadata('k', 'v')
  @NoTrace()
  skippedBelowOther(): string {
    return 'skippedBelowOther';
  }

  @NoTrace()
  @SetMetadata('k', 'v')
  skippedAboveOther(): string {
    return 'skippedAboveOther';
  }

  @Replacing()
  @NoTrace()
  skippedBelowReplacing(): string {
    return 'skippedBelowReplacing';
  }

  @Trace('explicit.name', { kind: SpanKind.CLIENT })
  explicit(): string {
    return 'explicit';
  }

  @Get('route')
  routed(): string {
    return 'routed';
  }

  [symbolic](): string {
    return 'symbolic';
  }

  onModuleInit(): string {
    return 'init';
  }

  async onApplicationShutdown(): Promise<string> {
    return 'shutdown';
  }

  afterInit(): string {
    return 'gateway';
  }

  @Trace()
  onApplicationBootstrap(): string {
    return 'bootstrap';
  }
}
(Service.prototype as unknown as Record<string, unknown>)['notAFunction'] = 42;

describe('@Traceable()', () => {
  const service = new Service();

  it('traces own prototype methods as ClassName.methodName, nesting calls', async () => {
    await expect(service.load('1')).resolves.toBe('item:1');
    expect(names().sort()).toEqual(['Service.format', 'Service.load']);
    const load = spans().find((s) => s.name === 'Service.load')!;
    const format = spans().find((s) => s.name === 'Service.format')!;
    expect(format.parentSpanContext?.spanId).toBe(load.spanContext().spanId);
    expect(load.kind).toBe(SpanKind.INTERNAL);
  });

  it('leaves out constructor, accessors, static, inherited, symbol and non-function members', () => {
    service.value = 3;
    expect(service.value).toBe(3);
    expect(Service.staticMethod()).toBe('static');
    expect(service.inherited()).toBe('inherited');
    expect(service[symbolic]()).toBe('symbolic');
    expect(new Service()).toBeInstanceOf(Base);
    expect((Service.prototype as unknown as Record<string, unknown>)['notAFunction']).toBe(42);
    expect(names()).toEqual([]);
  });

  it("leaves out Nest's lifecycle hooks, unless they have their own @Trace()", async () => {
    expect(service.onModuleInit()).toBe('init');
    await expect(service.onApplicationShutdown()).resolves.toBe('shutdown');
    expect(service.afterInit()).toBe('gateway');
    expect(names()).toEqual([]);
    expect(service.onApplicationBootstrap()).toBe('bootstrap');
    expect(names()).toEqual(['Service.onApplicationBootstrap']);
  });

  it('leaves out @NoTrace() methods, whatever decorators surround the mark', () => {
    expect(service.skipped()).toBe('skipped');
    expect(service.skippedBelowOther()).toBe('skippedBelowOther');
    expect(service.skippedAboveOther()).toBe('skippedAboveOther');
    expect(service.skippedBelowReplacing()).toBe('skippedBelowReplacing');
    expect(names()).toEqual([]);
    expect(Reflect.getMetadata(NO_TRACE_METADATA, Service.prototype.skipped)).toBe(true);
    expect(Reflect.getMetadata('k', Service.prototype.skippedAboveOther)).toBe('v');
  });

  it('keeps the options of a method that has its own @Trace()', () => {
    service.explicit();
    expect(names()).toEqual(['explicit.name']);
    expect(spans()[0]!.kind).toBe(SpanKind.CLIENT);
  });

  it('keeps the metadata of other decorators', () => {
    expect(service.routed()).toBe('routed');
    expect(names()).toEqual(['Service.routed']);
    expect(isTracedMethod(Service.prototype.routed)).toBe(true);
    expect(Reflect.getMetadata(PATH_METADATA, Service.prototype.routed)).toBe('route');
    expect(Service.prototype.load.name).toBe('load');
    expect(Service.prototype.load.length).toBe(1);
  });

  it('takes a prefix and a kind', () => {
    @Traceable({ prefix: 'billing', kind: SpanKind.SERVER })
    class Billing {
      charge(): number {
        return 1;
      }
    }
    new Billing().charge();
    expect(names()).toEqual(['billing.charge']);
    expect(spans()[0]!.kind).toBe(SpanKind.SERVER);
  });

  it('traces nothing twice when applied twice', () => {
    @Traceable({ prefix: 'outer' })
    @Traceable()
    class Twice {
      run(): number {
        return 1;
      }
    }
    Traceable()(Twice);
    expect(new Twice().run()).toBe(1);
    expect(names()).toEqual(['Twice.run']);
  });

  it('traces the methods of a class registered as a Nest provider', async () => {
    @Traceable()
    @Injectable()
    class Provided {
      hello(): string {
        return 'hello';
      }
    }
    const moduleRef = await Test.createTestingModule({ providers: [Provided] }).compile();
    expect(moduleRef.get(Provided).hello()).toBe('hello');
    expect(names()).toEqual(['Provided.hello']);
    await moduleRef.close();
  });
});
