import { Injectable } from '@nestjs/common';
import { Trace, TraceService } from 'nestjs-tracing';

export interface NewOrder {
  sku: string;
  qty: number;
}

export interface Order extends NewOrder {
  id: string;
  total: number;
}

export interface PlaceOptions {
  /** Make the payment fail. */
  fail?: boolean;
  /** Make the stock reservation 300 ms slower. */
  slow?: boolean;
}

const UNIT_PRICES: Readonly<Record<string, number>> = { book: 12.5, pen: 1.2, lamp: 34 };
const DEFAULT_UNIT_PRICE = 10;

/** Stands in for I/O (a database, a warehouse API) so that span durations are worth a look. */
const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Places orders in memory. Each `@Trace()` method gets a span of its own, a child of the span
 * active at the call: `place` under the request's SERVER span, the steps under `place`.
 */
@Injectable()
export class OrdersService {
  private readonly orders = new Map<string, Order>();
  private lastId = 0;

  constructor(private readonly tracing: TraceService) {}

  @Trace()
  async place(input: NewOrder, options: PlaceOptions = {}): Promise<Order> {
    this.tracing.setAttributes({ 'order.sku': input.sku, 'order.qty': input.qty });
    await this.reserveStock(input, options.slow === true);
    const total = this.price(input);
    await this.charge(total, options.fail === true);
    return this.save({ ...input, total });
  }

  @Trace()
  async reserveStock(input: NewOrder, slow: boolean): Promise<void> {
    await delay(slow ? 320 : 20);
    this.tracing.addEvent('stock.reserved', { 'order.sku': input.sku, 'order.qty': input.qty });
  }

  /** Synchronous on purpose: `@Trace()` ends the span at return when there is nothing to await. */
  @Trace()
  price(input: NewOrder): number {
    const total = (UNIT_PRICES[input.sku] ?? DEFAULT_UNIT_PRICE) * input.qty;
    this.tracing.setAttribute('order.total', total);
    return total;
  }

  @Trace()
  async charge(amount: number, fail: boolean): Promise<void> {
    await delay(15);
    // The error is recorded on this span and on every span it propagates through, up to the
    // request's SERVER span, which Nest turns into a 500.
    if (fail) throw new Error(`Payment of ${amount.toFixed(2)} declined: card expired.`);
  }

  @Trace()
  async save(order: Omit<Order, 'id'>): Promise<Order> {
    await delay(8);
    const saved: Order = { id: String(++this.lastId), ...order };
    this.orders.set(saved.id, saved);
    this.tracing.setAttribute('order.id', saved.id);
    return saved;
  }

  @Trace()
  find(id: string): Order | undefined {
    return this.orders.get(id);
  }
}
