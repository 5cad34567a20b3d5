import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Transport, type MicroserviceOptions } from '@nestjs/microservices';
import { ORDERS_PROTO, SHOP } from '../../../libs/shop/src/index.js';
import { OrdersModule } from './orders.module.js';

const app = await NestFactory.createMicroservice<MicroserviceOptions>(OrdersModule, {
  transport: Transport.GRPC,
  options: { package: 'shop.orders', protoPath: ORDERS_PROTO, url: SHOP.ordersUrl },
});
app.enableShutdownHooks();
await app.listen();
Logger.log(`orders ready (gRPC on ${SHOP.ordersUrl})`, 'Bootstrap');
