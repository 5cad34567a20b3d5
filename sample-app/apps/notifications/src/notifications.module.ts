import { Controller, Inject, Injectable, Module, Optional } from '@nestjs/common';
import {
  ClientsModule,
  EventPattern,
  MqttRecordBuilder,
  Payload,
  Transport,
  type ClientProxy,
  type ClientsModuleOptions,
} from '@nestjs/microservices';
import { Trace, TracingModule } from 'nestjs-tracing';
import { lastValueFrom } from 'rxjs';
import { brokerEnabled, PATTERNS, SHOP, type OrderCreated } from '../../../libs/shop/src/index.js';

const AUDIT = Symbol('AUDIT');

@Injectable()
export class Mailer {
  constructor(@Optional() @Inject(AUDIT) private readonly audit?: ClientProxy) {}

  @Trace()
  compose(event: OrderCreated): string {
    return `Your order ${event.orderId} (${event.qty} × ${event.sku}) is on its way.`;
  }

  /** Tells the audit log over MQTT 5; the trace context rides in the user properties. */
  @Trace()
  async record(event: OrderCreated, message: string): Promise<void> {
    if (this.audit === undefined) return;
    const record = new MqttRecordBuilder({ ...event, message }).setQoS(1).build();
    await lastValueFrom(this.audit.emit(PATTERNS.audit, record), { defaultValue: undefined });
  }
}

@Controller()
export class NotificationsController {
  constructor(private readonly mailer: Mailer) {}

  @EventPattern(PATTERNS.orderCreated)
  async onOrderCreated(@Payload() event: OrderCreated): Promise<void> {
    await this.mailer.record(event, this.mailer.compose(event));
  }
}

// MQTT 3.1.1 has no user properties: both sides speak MQTT 5.
const clients: ClientsModuleOptions = brokerEnabled('mqtt')
  ? [{ name: AUDIT, transport: Transport.MQTT, options: { url: SHOP.mqttUrl, protocolVersion: 5 } }]
  : [];

@Module({
  imports: [
    TracingModule.forRoot({ serviceName: 'notifications' }),
    ClientsModule.register(clients),
  ],
  controllers: [NotificationsController],
  providers: [Mailer],
})
export class NotificationsModule {}
