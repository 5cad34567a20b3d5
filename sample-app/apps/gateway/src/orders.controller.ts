import {
  BadRequestException,
  Body,
  Controller,
  Get,
  NotFoundException,
  Param,
  Post,
  Query,
} from '@nestjs/common';
import { OrdersService, type NewOrder, type Order } from './orders.service.js';

@Controller('orders')
export class OrdersController {
  constructor(private readonly orders: OrdersService) {}

  /** `?fail=1` makes the payment fail (500), `?slow=1` makes the warehouse take 300 ms longer. */
  @Post()
  place(
    @Body() body: unknown,
    @Query('fail') fail?: string,
    @Query('slow') slow?: string,
  ): Promise<Order> {
    return this.orders.place(parseNewOrder(body), { fail: fail === '1', slow: slow === '1' });
  }

  @Get(':id')
  get(@Param('id') id: string): Order {
    const order = this.orders.find(id);
    if (order === undefined) throw new NotFoundException(`Order ${id} does not exist.`);
    return order;
  }
}

/**
 * Validated by hand to keep the sample's dependencies to Nest itself; a real app would use a
 * ValidationPipe. A 400 is the client's fault, so the request's span is not marked as an error.
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
