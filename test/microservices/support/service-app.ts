import {
  Catch,
  Controller,
  Injectable,
  Module,
  UseFilters,
  UseGuards,
  type ArgumentsHost,
  type CanActivate,
  type ExceptionFilter,
  type ExecutionContext,
} from '@nestjs/common';
import {
  BaseRpcExceptionFilter,
  Ctx,
  EventPattern,
  MessagePattern,
  Payload,
  RpcException,
} from '@nestjs/microservices';
import { readFile } from 'node:fs';
import { bindNodeCallback, of, Subject, type Observable } from 'rxjs';
import { propagation } from '@opentelemetry/api';
import { Trace, TraceService } from '../../../lib/index.js';

/** The patterns every transport suite exercises. */
export const PATTERNS = {
  sum: 'math.sum',
  fail: 'math.fail',
  check: 'math.check',
  traceId: 'trace.id',
  created: 'order.created',
  broken: 'order.broken',
  readMissing: 'file.read-missing',
  jobWait: 'job.wait',
  jobFail: 'job.fail',
  recovered: 'math.recovered',
  recoveredPlain: 'math.recovered-plain',
  recoveredAsync: 'math.recovered-async',
  queued: 'math.queued',
  reraised: 'math.reraised',
} as const;

/** The queue group of the handler of PATTERNS.queued, where a transport has them (NATS). */
export const HANDLER_QUEUE = 'priority-workers';

/** An object pattern; clients may send its keys in another order. */
export const OBJECT_PATTERN = { cmd: 'math.object', v: 1 } as const;

@Injectable()
export class Calculator {
  @Trace()
  async sum(numbers: number[]): Promise<number> {
    await new Promise((resolve) => setTimeout(resolve, 1));
    return numbers.reduce((a, b) => a + b, 0);
  }
}

/** What the event handlers saw, so that tests can wait for them. */
@Injectable()
export class EventLog {
  readonly seen: Array<{ data: unknown; traceId: string | undefined }> = [];
  /** The baggage each event was handled with, as `key=value` members joined by `,`. */
  readonly baggage: string[] = [];
  private waiters: Array<() => void> = [];

  constructor(private readonly tracing: TraceService) {}

  @Trace('EventLog.record')
  async record(data: unknown): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, 1));
    this.seen.push({ data, traceId: this.tracing.traceId() });
    const entries = propagation.getActiveBaggage()?.getAllEntries() ?? [];
    this.baggage.push(entries.map(([key, entry]) => `${key}=${entry.value}`).join(','));
    this.waiters.splice(0).forEach((wake) => wake());
  }

  async waitFor(count: number, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.seen.length < count) {
      if (Date.now() > deadline) throw new Error(`saw ${this.seen.length} events, wanted ${count}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }
}

/**
 * A job that one message waits for and another fails: the waiting message's reply is an
 * Observable that errors while the other message is being handled.
 */
@Injectable()
export class JobBus {
  private job = new Subject<string>();
  /** Resolves when a message waits for the job. */
  waiting!: Promise<void>;
  private markWaiting!: () => void;

  constructor() {
    this.reset();
  }

  reset(): void {
    this.job = new Subject<string>();
    this.waiting = new Promise<void>((resolve) => (this.markWaiting = resolve));
  }

  wait(): Observable<string> {
    this.markWaiting();
    return this.job;
  }

  fail(message: string): void {
    this.job.error(new Error(message));
  }
}

/** A guard that does traced work: proves guards run inside the message's span. */
@Injectable()
export class TracedGuard implements CanActivate {
  constructor(private readonly tracing: TraceService) {}
  canActivate(_context: ExecutionContext): Promise<boolean> {
    return this.tracing.startActiveSpan('guard.check', async () => true);
  }
}

/**
 * Exception filters that answer normally, as an Observable, a plain value or a Promise (Nest
 * sends each): the caller gets a fallback, not an error.
 */
@Catch()
export class FallbackFilter implements ExceptionFilter {
  catch(): Observable<{ fallback: true }> {
    return of({ fallback: true });
  }
}

@Catch()
export class PlainFallbackFilter implements ExceptionFilter {
  catch(): { fallback: true } {
    return { fallback: true };
  }
}

/** Does something first (an audit record, say), then lets Nest's own filter answer: an error. */
@Catch()
export class AsyncRethrowFilter implements ExceptionFilter {
  private readonly nest = new BaseRpcExceptionFilter();
  async catch(exception: unknown, host: ArgumentsHost): Promise<Observable<unknown>> {
    await new Promise((resolve) => setTimeout(resolve, 1));
    return this.nest.catch(exception, host);
  }
}

@Catch()
export class AsyncFallbackFilter implements ExceptionFilter {
  async catch(): Promise<{ fallback: true }> {
    await new Promise((resolve) => setTimeout(resolve, 1));
    return { fallback: true };
  }
}

@Controller()
export class ServiceController {
  constructor(
    private readonly calculator: Calculator,
    private readonly events: EventLog,
    private readonly tracing: TraceService,
    private readonly jobs: JobBus,
  ) {}

  @MessagePattern(PATTERNS.sum)
  @UseGuards(TracedGuard)
  sum(@Payload() data: { numbers: number[] }): Promise<number> {
    return this.calculator.sum(data.numbers);
  }

  @MessagePattern(PATTERNS.fail)
  fail(): void {
    throw new RpcException('payment refused');
  }

  @MessagePattern(PATTERNS.check)
  check(@Payload() data: { ok?: boolean }): boolean {
    if (!data.ok) throw new RpcException('check failed');
    return true;
  }

  @MessagePattern(PATTERNS.traceId)
  async traceId(@Payload() data: { delayMs?: number }, @Ctx() _ctx: unknown) {
    await new Promise((resolve) => setTimeout(resolve, data?.delayMs ?? 0));
    return { traceId: this.tracing.traceId() };
  }

  @MessagePattern(OBJECT_PATTERN)
  objectPattern(): string {
    return 'object';
  }

  @MessagePattern(PATTERNS.reraised)
  @UseFilters(AsyncRethrowFilter)
  reraised(): never {
    throw new RpcException('re-raised by the filter');
  }

  @MessagePattern(PATTERNS.queued, { queue: HANDLER_QUEUE })
  queued(): string {
    return 'queued';
  }

  @MessagePattern(PATTERNS.recovered)
  @UseFilters(FallbackFilter)
  recovered(): never {
    throw new RpcException('recovered by the filter');
  }

  @MessagePattern(PATTERNS.recoveredPlain)
  @UseFilters(PlainFallbackFilter)
  recoveredPlain(): never {
    throw new RpcException('recovered by the filter');
  }

  @MessagePattern(PATTERNS.recoveredAsync)
  @UseFilters(AsyncFallbackFilter)
  recoveredAsync(): never {
    throw new RpcException('recovered by the filter');
  }

  /** Errors from a Node callback, where no context follows under the promise-hooks manager. */
  @MessagePattern(PATTERNS.readMissing)
  readMissing(): Observable<Buffer> {
    return bindNodeCallback(readFile)('/nonexistent/nestjs-tracing-test');
  }

  @MessagePattern(PATTERNS.jobWait)
  jobWait(): Observable<string> {
    return this.jobs.wait();
  }

  @MessagePattern(PATTERNS.jobFail)
  jobFail(): string {
    this.jobs.fail('the job failed');
    return 'failed it';
  }

  @EventPattern(PATTERNS.created)
  async created(@Payload() data: unknown): Promise<void> {
    await this.events.record(data);
  }

  @EventPattern(PATTERNS.broken)
  broken(@Payload() _data: unknown): void {
    throw new Error('consumer broke');
  }
}

@Module({
  controllers: [ServiceController],
  providers: [Calculator, EventLog, TracedGuard, JobBus],
})
export class ServiceModule {}
