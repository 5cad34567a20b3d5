import { Module } from '@nestjs/common';
import { ClientsModule, Transport, type ClientsModuleOptions } from '@nestjs/microservices';
import { TracingModule } from 'nestjs-tracing';
import { brokerEnabled, SHOP } from '../../../libs/shop/src/index.js';
import { INVENTORY, NOTIFICATIONS, OrderBook, PAYMENTS } from './order-book.service.js';
import { OrdersController } from './orders.controller.js';

const clients: ClientsModuleOptions = [
  // Request/response over TCP: the context travels in the packet's metadata.
  {
    name: PAYMENTS,
    transport: Transport.TCP,
    options: { host: SHOP.paymentsHost, port: SHOP.paymentsPort },
  },
];
// Events go to the brokers that are there; the demo says which.
if (brokerEnabled('rabbitmq')) {
  clients.push({
    name: INVENTORY,
    transport: Transport.RMQ,
    options: {
      urls: [SHOP.rabbitmqUrl],
      queue: SHOP.inventoryQueue,
      queueOptions: { durable: false },
    },
  });
}
if (brokerEnabled('nats')) {
  clients.push({
    name: NOTIFICATIONS,
    transport: Transport.NATS,
    options: { servers: [SHOP.natsUrl] },
  });
}

@Module({
  imports: [TracingModule.forRoot({ serviceName: 'orders' }), ClientsModule.register(clients)],
  controllers: [OrdersController],
  providers: [OrderBook],
})
export class OrdersModule {}
