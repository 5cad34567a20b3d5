import { Controller } from '@nestjs/common';
import { GrpcMethod } from '@nestjs/microservices';
import type { CreateOrderRequest, FindOrderRequest, Order } from '../../../libs/shop/src/index.js';
import { OrderBook } from './order-book.service.js';

@Controller()
export class OrdersController {
  constructor(private readonly book: OrderBook) {}

  @GrpcMethod('Orders', 'Create')
  create(request: CreateOrderRequest): Promise<Order> {
    return this.book.create(request);
  }

  @GrpcMethod('Orders', 'Find')
  find(request: FindOrderRequest): Order {
    return this.book.find(request.id);
  }
}
