import { Controller, Injectable, Module } from '@nestjs/common';
import { EventPattern, Payload } from '@nestjs/microservices';
import { Trace, TraceService, TracingModule } from 'nestjs-tracing';
import { PATTERNS, type OrderCreated } from '../../../libs/shop/src/index.js';

@Injectable()
export class Stock {
  private readonly reserved = new Map<string, number>();

  constructor(private readonly tracing: TraceService) {}

  @Trace()
  async reserve(event: OrderCreated): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, 15));
    const total = (this.reserved.get(event.sku) ?? 0) + event.qty;
    this.reserved.set(event.sku, total);
    this.tracing.addEvent('stock.reserved', {
      'order.sku': event.sku,
      'stock.reserved_total': total,
    });
  }
}

@Controller()
export class InventoryController {
  constructor(private readonly stock: Stock) {}

  @EventPattern(PATTERNS.orderCreated)
  onOrderCreated(@Payload() event: OrderCreated): Promise<void> {
    return this.stock.reserve(event);
  }
}

@Module({
  imports: [TracingModule.forRoot({ serviceName: 'inventory' })],
  controllers: [InventoryController],
  providers: [Stock],
})
export class InventoryModule {}
