import { Module } from '@nestjs/common';
import { ClientsModule, Transport } from '@nestjs/microservices';
import { TracingModule } from 'nestjs-tracing';
import { ORDERS_PROTO, SHOP } from '../../../libs/shop/src/index.js';
import { OrdersController } from './orders.controller.js';
import { ORDERS, OrdersGateway } from './orders.gateway.js';

@Module({
  imports: [
    // Defaults: OTLP http/protobuf to localhost:4318 unless OTEL_EXPORTER_OTLP_ENDPOINT says
    // otherwise, batch processor, W3C trace context and baggage. Nothing else to configure:
    // the gRPC client below is traced too.
    TracingModule.forRoot({ serviceName: 'gateway' }),
    ClientsModule.register([
      {
        name: ORDERS,
        transport: Transport.GRPC,
        options: { package: 'shop.orders', protoPath: ORDERS_PROTO, url: SHOP.ordersUrl },
      },
    ]),
  ],
  controllers: [OrdersController],
  providers: [OrdersGateway],
})
export class AppModule {}
