import { BadRequestException, Body, Controller, Get, Param, Post, Query } from '@nestjs/common';
import type { Order } from '../../../libs/shop/src/index.js';
import { OrdersGateway, type NewOrder } from './orders.gateway.js';

@Controller('orders')
export class OrdersController {
  constructor(private readonly orders: OrdersGateway) {}

  /** `?fail=1` makes the payment fail (502), `?slow=1` makes it take 400 ms longer. */
  @Post()
  place(
    @Body() body: unknown,
    @Query('fail') fail?: string,
    @Query('slow') slow?: string,
  ): Promise<Order> {
    return this.orders.place(parseNewOrder(body), { fail: fail === '1', slow: slow === '1' });
  }

  @Get(':id')
  get(@Param('id') id: string): Promise<Order> {
    return this.orders.find(id);
  }
}

/**
 * Validated by hand to keep the sample's dependencies to Nest itself; a real app would use a
 * ValidationPipe. A 400 is the client's fault, so the request's span is not marked as an error,
 * and no other service is called.
 */
function parseNewOrder(body: unknown): NewOrder {
  const { sku, qty } = (body ?? {}) as Partial<Record<keyof NewOrder, unknown>>;
  if (typeof sku !== 'string' || sku.trim() === '') {
    throw new BadRequestException('sku must be a non-empty string.');
  }
  if (typeof qty !== 'number' || !Number.isInteger(qty) || qty < 1) {
    throw new BadRequestException('qty must be a positive integer.');
  }
  return { sku, qty };
}
