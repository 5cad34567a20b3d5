import {
  Body,
  CanActivate,
  Controller,
  ExecutionContext,
  Get,
  Header,
  ForbiddenException,
  UnauthorizedException,
  RequestMethod,
  HttpCode,
  Injectable,
  NestInterceptor,
  NotFoundException,
  Param,
  Post,
  Res,
  Sse,
  type MessageEvent,
  type PipeTransform,
  UseGuards,
  UseInterceptors,
  type CallHandler,
} from '@nestjs/common';
import {
  Module,
  type MiddlewareConsumer,
  type NestMiddleware,
  type NestModule,
} from '@nestjs/common';
import { context, ROOT_CONTEXT } from '@opentelemetry/api';
import type { ServerResponse } from 'node:http';
import { concat, delay, map, of, timer, type Observable } from 'rxjs';
import { Trace, TraceService } from '../../lib/index.js';

/** Express's response is Node's; Fastify's reply wraps it as `raw`. */
type RawResponse = ServerResponse & { raw?: ServerResponse };

@Injectable()
export class OrdersService {
  @Trace()
  async find(id: string): Promise<{ id: string }> {
    await new Promise((r) => setTimeout(r, 1));
    return { id };
  }

  @Trace('orders.create', { attributes: { 'orders.source': 'e2e' } })
  create(body: unknown): { created: unknown } {
    return { created: body };
  }
}

/** A guard that does traced work, to prove guards run inside the SERVER span. */
@Injectable()
export class TracedGuard implements CanActivate {
  constructor(private readonly tracing: TraceService) {}
  canActivate(_context: ExecutionContext): Promise<boolean> {
    return this.tracing.startActiveSpan('guard.check', async () => true);
  }
}

@Injectable()
export class TracedInterceptor implements NestInterceptor {
  constructor(private readonly tracing: TraceService) {}
  intercept(_context: ExecutionContext, next: CallHandler): Observable<unknown> {
    this.tracing.startActiveSpan('interceptor.before', () => undefined);
    return next.handle();
  }
}

/** A pipe that does traced work, to prove pipes run inside the SERVER span. */
@Injectable()
export class TracedPipe implements PipeTransform {
  constructor(private readonly tracing: TraceService) {}
  transform(value: unknown): unknown {
    return this.tracing.startActiveSpan('pipe.transform', () => value);
  }
}

/** A Nest middleware that does traced work, to prove middleware runs inside the SERVER span. */
@Injectable()
export class TracedMiddleware implements NestMiddleware {
  constructor(private readonly tracing: TraceService) {}
  use(req: { headers: Record<string, unknown> }, _res: unknown, next: () => void): void {
    this.tracing.startActiveSpan('middleware.run', () => undefined);
    // A middleware that turns a request away before its route runs.
    if (req.headers['x-deny'] !== undefined) throw new ForbiddenException();
    next();
  }
}

@Controller()
export class AppController {
  constructor(
    private readonly orders: OrdersService,
    private readonly tracing: TraceService,
  ) {}

  @Get('hello')
  hello(): string {
    return 'hello';
  }

  @Get('health')
  health(): string {
    return 'ok';
  }

  @Get('orders/:id')
  find(@Param('id') id: string) {
    return this.orders.find(id);
  }

  @Post('orders')
  @HttpCode(201)
  @UseGuards(TracedGuard)
  @UseInterceptors(TracedInterceptor)
  create(@Body() body: unknown) {
    return this.orders.create(body);
  }

  @Get('missing/:id')
  missing(): never {
    throw new NotFoundException('no such thing');
  }

  @Get('boom')
  boom(): never {
    throw new TypeError('kaboom');
  }

  @Get('timing')
  @Header('Server-Timing', 'db;dur=12')
  timing(): string {
    return 'timed';
  }

  /** Sets Server-Timing on Node's own response, past the framework's header API. */
  @Get('raw-timing')
  rawTiming(@Res({ passthrough: true }) res: RawResponse): string {
    (res.raw ?? res).setHeader('Server-Timing', 'cache;desc=hit');
    return 'timed';
  }

  /** Writes the head itself, with a header object spelling Server-Timing in mixed case. */
  @Get('own-head')
  ownHead(@Res() res: RawResponse): void {
    const raw = res.raw ?? res;
    raw.writeHead(200, { 'Content-Type': 'text/plain', 'Server-Timing': 'app;dur=1' });
    raw.end('own');
  }

  /** Writes the head itself, with a raw header list that names Server-Timing. */
  @Get('own-head-list')
  ownHeadList(@Res() res: RawResponse): void {
    const raw = res.raw ?? res;
    raw.writeHead(200, ['Content-Type', 'text/plain', 'Server-Timing', 'app;dur=2']);
    raw.end('own list');
  }

  /** Writes the head and part of the body, then fails: its 200 has gone out already. */
  @Get('cut-short')
  cutShort(@Res() res: RawResponse): void {
    const raw = res.raw ?? res;
    raw.writeHead(200, { 'content-type': 'text/plain' });
    raw.write('part of it');
    throw new RangeError('failed after the head');
  }

  /**
   * Takes the response over (Fastify: `reply.hijack()`), fails, then answers later itself. On
   * Express, where nothing is taken over, Nest's filter answers the failure with a 500.
   */
  @Get('taken-over')
  takenOver(@Res() res: RawResponse & { hijack?: () => void }): void {
    res.hijack?.();
    const raw = res.raw ?? res;
    setTimeout(() => {
      if (!raw.headersSent) raw.writeHead(200).end('later');
    }, 10);
    throw new RangeError('failed after taking over');
  }

  /** An event stream that fails after its first event. */
  @Sse('feed')
  feed(): Observable<MessageEvent> {
    const broken = timer(20).pipe(
      map((): MessageEvent => {
        throw new RangeError('the feed broke');
      }),
    );
    return concat(of({ data: 'first' }), broken);
  }

  @Get('trace-id')
  traceId(): { traceId: string | undefined; tenant: string | undefined } {
    return { traceId: this.tracing.traceId(), tenant: this.tracing.getBaggage('tenant') };
  }

  /** A 5xx the handler writes itself: no exception reaches Nest. */
  @Get('unavailable')
  unavailable(@Res() res: { status(code: number): { send(): void } }): void {
    res.status(503).send();
  }

  /** Echoes a body through a pipe that does traced work, so pipes are seen inside the span. */
  @Post('echo')
  @HttpCode(200)
  echo(@Body(TracedPipe) body: unknown): unknown {
    return body;
  }

  @Get('observable')
  @Trace()
  observable(): Observable<{ values: number[] }> {
    return of({ values: [1, 2] }).pipe(delay(5));
  }

  @Get('slow')
  async slow(): Promise<string> {
    await new Promise((r) => setTimeout(r, 1000));
    return 'slow';
  }
}

@Module({
  controllers: [AppController],
  providers: [OrdersService, TracedGuard, TracedInterceptor, TracedPipe],
})
export class HttpTestModule implements NestModule {
  configure(consumer: MiddlewareConsumer): void {
    consumer.apply(TracedMiddleware).forRoutes(AppController);
  }
}

/** A route with no Nest middleware of the test app's in front of it. */
@Controller()
export class PlainController {
  @Get('plain')
  @Trace('plain.handler')
  plain(): string {
    return 'plain';
  }
}

@Module({ controllers: [PlainController] })
export class PlainModule {}

/** A Nest middleware that loses the async context, as one resuming from a foreign event does. */
@Injectable()
export class ContextLosingMiddleware implements NestMiddleware {
  use(_req: unknown, _res: unknown, next: () => void): void {
    context.with(ROOT_CONTEXT, next);
  }
}

/** Mounts {@link ContextLosingMiddleware} ahead of the test app's own middleware. */
@Module({})
export class ContextLosingModule implements NestModule {
  configure(consumer: MiddlewareConsumer): void {
    consumer.apply(ContextLosingMiddleware).forRoutes(AppController, PlainController);
  }
}

/**
 * A middleware Nest mounts for one method (as an Express route of its own): turns a request away
 * (`x-reject`), says it is not there (`x-missing`), or runs the rest of it with baggage of its own
 * (`x-tenant`).
 */
@Injectable()
export class TenantMiddleware implements NestMiddleware {
  constructor(private readonly tracing: TraceService) {}
  use(req: { headers: Record<string, unknown> }, _res: unknown, next: () => void): void {
    if (req.headers['x-reject'] !== undefined) throw new UnauthorizedException();
    if (req.headers['x-missing'] !== undefined) throw new NotFoundException();
    const tenant = req.headers['x-tenant'];
    if (typeof tenant === 'string') {
      this.tracing.withBaggage({ tenant }, next);
      return;
    }
    next();
  }
}

@Controller()
export class TenantController {
  constructor(private readonly tracing: TraceService) {}

  @Get('tenants/:id')
  tenant(): { tenant: string | null } {
    return { tenant: this.tracing.getBaggage('tenant') ?? null };
  }
}

@Module({ controllers: [TenantController] })
export class TenantModule implements NestModule {
  configure(consumer: MiddlewareConsumer): void {
    consumer
      .apply(TenantMiddleware)
      .forRoutes({ path: 'tenants/*path', method: RequestMethod.GET });
  }
}
