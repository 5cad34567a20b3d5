import {
  BadGatewayException,
  Inject,
  Injectable,
  NotFoundException,
  ServiceUnavailableException,
  type OnModuleInit,
} from '@nestjs/common';
import { GrpcStatus, type ClientGrpc } from '@nestjs/microservices';
import { Trace, TraceService } from 'nestjs-tracing';
import { firstValueFrom } from 'rxjs';
import type { Order, OrdersClient } from '../../../libs/shop/src/index.js';

export const ORDERS = Symbol('ORDERS');

export interface NewOrder {
  sku: string;
  qty: number;
}

/** The gateway's side of the orders service: gRPC calls, and their errors as HTTP errors. */
@Injectable()
export class OrdersGateway implements OnModuleInit {
  private orders!: OrdersClient;

  constructor(
    @Inject(ORDERS) private readonly client: ClientGrpc,
    private readonly tracing: TraceService,
  ) {}

  onModuleInit(): void {
    this.orders = this.client.getService<OrdersClient>('Orders');
  }

  @Trace()
  async place(order: NewOrder, options: { fail: boolean; slow: boolean }): Promise<Order> {
    this.tracing.setAttributes({ 'order.sku': order.sku, 'order.qty': order.qty });
    try {
      return await firstValueFrom(
        this.orders.create({ ...order, failPayment: options.fail, slowPayment: options.slow }),
      );
    } catch (error) {
      throw toHttpError(error);
    }
  }

  @Trace()
  async find(id: string): Promise<Order> {
    try {
      return await firstValueFrom(this.orders.find({ id }));
    } catch (error) {
      throw toHttpError(error);
    }
  }
}

/** A declined payment is the payment service's failure seen from here: 502, an error. */
function toHttpError(error: unknown): Error {
  const { code, details } = (error ?? {}) as { code?: number; details?: string };
  switch (code) {
    case GrpcStatus.NOT_FOUND:
      return new NotFoundException(details);
    case GrpcStatus.UNAVAILABLE:
      return new ServiceUnavailableException('The orders service is unavailable.');
    default:
      return new BadGatewayException(details ?? 'The orders service failed.');
  }
}
