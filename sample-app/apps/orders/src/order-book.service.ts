import { Inject, Injectable, Optional } from '@nestjs/common';
import { GrpcStatus, RpcException, type ClientProxy } from '@nestjs/microservices';
import { Trace, TraceService } from 'nestjs-tracing';
import { firstValueFrom, lastValueFrom } from 'rxjs';
import {
  PATTERNS,
  type ChargeRequest,
  type ChargeResult,
  type CreateOrderRequest,
  type Order,
  type OrderCreated,
} from '../../../libs/shop/src/index.js';

export const PAYMENTS = Symbol('PAYMENTS');
export const INVENTORY = Symbol('INVENTORY');
export const NOTIFICATIONS = Symbol('NOTIFICATIONS');

const UNIT_PRICES: Readonly<Record<string, number>> = { book: 12.5, pen: 1.2, lamp: 34 };

/** Orders in memory: priced, charged through `payments`, announced to the warehouse and mail. */
@Injectable()
export class OrderBook {
  private readonly orders = new Map<string, Order>();
  private lastId = 0;

  constructor(
    @Inject(PAYMENTS) private readonly payments: ClientProxy,
    private readonly tracing: TraceService,
    @Optional() @Inject(INVENTORY) private readonly inventory?: ClientProxy,
    @Optional() @Inject(NOTIFICATIONS) private readonly notifications?: ClientProxy,
  ) {}

  @Trace()
  async create(request: CreateOrderRequest): Promise<Order> {
    const total = this.price(request.sku, request.qty);
    const id = String(++this.lastId);
    this.tracing.setAttributes({ 'order.id': id, 'order.total': total });
    const { paymentId } = await this.charge({
      orderId: id,
      amount: total,
      fail: request.failPayment,
      slow: request.slowPayment,
    });
    const order = await this.save({
      id,
      sku: request.sku,
      qty: request.qty,
      total,
      paymentId,
      status: 'paid',
    });
    await this.announce({ orderId: id, sku: order.sku, qty: order.qty });
    return order;
  }

  find(id: string): Order {
    const order = this.orders.get(id);
    if (order === undefined) {
      throw new RpcException({
        code: GrpcStatus.NOT_FOUND,
        message: `Order ${id} does not exist.`,
      });
    }
    return order;
  }

  /** Synchronous: `@Trace()` ends the span at return. */
  @Trace()
  price(sku: string, qty: number): number {
    return (UNIT_PRICES[sku] ?? 10) * qty;
  }

  @Trace()
  private async charge(request: ChargeRequest): Promise<ChargeResult> {
    try {
      return await firstValueFrom(this.payments.send<ChargeResult>(PATTERNS.charge, request));
    } catch (error) {
      // The payment service's error, recorded on this span, becomes the gRPC call's status.
      const message = (error as { message?: string }).message ?? 'payment failed';
      throw new RpcException({ code: GrpcStatus.ABORTED, message });
    }
  }

  @Trace()
  private async save(order: Order): Promise<Order> {
    await new Promise((resolve) => setTimeout(resolve, 5));
    this.orders.set(order.id, order);
    return order;
  }

  /** Events to the brokers that are there, in parallel: the warehouse and the mail both hear. */
  @Trace()
  private async announce(event: OrderCreated): Promise<void> {
    const sent = [this.inventory, this.notifications]
      .filter((client): client is ClientProxy => client !== undefined)
      .map((client) =>
        lastValueFrom(client.emit(PATTERNS.orderCreated, event), { defaultValue: undefined }),
      );
    await Promise.all(sent);
  }
}
