import {
  Controller,
  Get,
  Inject,
  Injectable,
  Module,
  Query,
  type DynamicModule,
  type OnApplicationShutdown,
} from '@nestjs/common';
import {
  Client,
  ClientProxy,
  ClientProxyFactory,
  ClientsModule,
  type ClientOptions,
} from '@nestjs/microservices';
import { firstValueFrom, lastValueFrom } from 'rxjs';
import { TraceService } from '../../../lib/index.js';
import { PATTERNS } from './service-app.js';

export const SERVICE = Symbol('SERVICE');

/** The ways an application gets a ClientProxy; the transport suites use each. */
export type ClientStyle = 'register' | 'registerAsync' | 'factory' | 'decorator';

@Controller()
export class GatewayController {
  constructor(
    @Inject(SERVICE) private readonly client: ClientProxy,
    private readonly tracing: TraceService,
  ) {}

  @Get('sum')
  async sum(
    @Query('n') n: string,
  ): Promise<{ sum: number; traceIdAfterReply: string | undefined }> {
    const sum = await firstValueFrom(
      this.client.send<number>(PATTERNS.sum, { numbers: [1, 2, Number(n ?? 0)] }),
    );
    return { sum, traceIdAfterReply: this.tracing.traceId() };
  }

  @Get('fail')
  fail(): Promise<unknown> {
    return firstValueFrom(this.client.send(PATTERNS.fail, {}));
  }

  @Get('check')
  check(@Query('ok') ok: string): Promise<unknown> {
    return firstValueFrom(this.client.send(PATTERNS.check, { ok: ok === '1' }));
  }

  /** Sends `pattern` with no payload and answers with the reply or the error it got. */
  @Get('call')
  async call(@Query('pattern') pattern: string): Promise<{ reply?: unknown; error?: unknown }> {
    try {
      return { reply: await firstValueFrom(this.client.send(pattern, {})) };
    } catch (error) {
      return { error };
    }
  }

  @Get('trace-id')
  traceId(@Query('delay') delay: string): Promise<{ traceId: string }> {
    return firstValueFrom(
      this.client.send<{ traceId: string }>(PATTERNS.traceId, { delayMs: Number(delay ?? 0) }),
    );
  }

  @Get('emit')
  async emit(@Query('id') id: string, @Query('pattern') pattern?: string): Promise<{ ok: true }> {
    await lastValueFrom(this.client.emit(pattern ?? PATTERNS.created, { id }), {
      defaultValue: undefined,
    });
    return { ok: true };
  }
}

/** The gateway: HTTP in, the transport's ClientProxy out, obtained in the given style. */
export function gatewayModule(options: ClientOptions, style: ClientStyle): DynamicModule {
  switch (style) {
    case 'register':
      return {
        module: GatewayModule,
        imports: [ClientsModule.register([{ name: SERVICE, ...options }])],
        controllers: [GatewayController],
      };
    case 'registerAsync':
      return {
        module: GatewayModule,
        imports: [
          ClientsModule.registerAsync([{ name: SERVICE, useFactory: async () => options }]),
        ],
        controllers: [GatewayController],
      };
    case 'factory':
      return {
        module: GatewayModule,
        providers: [
          { provide: SERVICE, useFactory: () => ClientProxyFactory.create(options) },
          // Nest closes the clients it made; one made by hand is the application's to close.
          {
            provide: Symbol('close the client'),
            useFactory: (client: ClientProxy): OnApplicationShutdown => ({
              onApplicationShutdown: () => client.close(),
            }),
            inject: [SERVICE],
          },
        ],
        controllers: [GatewayController],
      };
    case 'decorator': {
      class ClientHolder {
        client!: ClientProxy;
      }
      Client(options)(ClientHolder.prototype, 'client');
      Injectable()(ClientHolder);
      return {
        module: GatewayModule,
        controllers: [GatewayController],
        providers: [
          ClientHolder,
          {
            provide: SERVICE,
            useFactory: (holder: ClientHolder) => lazyClient(holder),
            inject: [ClientHolder],
          },
        ],
      };
    }
  }
}

/**
 * `@Client()` properties are assigned when the application initialises, after providers are
 * built: hand out an object that reads the property at call time.
 */
function lazyClient(holder: { client: ClientProxy }): Pick<ClientProxy, 'send' | 'emit'> {
  return {
    send: (pattern, data) => holder.client.send(pattern, data),
    emit: (pattern, data) => holder.client.emit(pattern, data),
  };
}

@Module({})
export class GatewayModule {}
