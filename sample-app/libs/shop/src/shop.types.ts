import type { Metadata } from '@grpc/grpc-js';
import type { Observable } from 'rxjs';

export interface CreateOrderRequest {
  sku: string;
  qty: number;
  failPayment?: boolean;
  slowPayment?: boolean;
}

export interface FindOrderRequest {
  id: string;
}

export interface Order {
  id: string;
  sku: string;
  qty: number;
  total: number;
  paymentId: string;
  status: string;
}

/** The gRPC stub of `shop.orders.Orders`, as `ClientGrpc#getService()` returns it. */
export interface OrdersClient {
  create(request: CreateOrderRequest, metadata?: Metadata): Observable<Order>;
  find(request: FindOrderRequest): Observable<Order>;
}

export interface ChargeRequest {
  orderId: string;
  amount: number;
  fail?: boolean;
  slow?: boolean;
}

export interface ChargeResult {
  paymentId: string;
}

/** The event `orders` emits over RabbitMQ and NATS once an order is paid. */
export interface OrderCreated {
  orderId: string;
  sku: string;
  qty: number;
}
