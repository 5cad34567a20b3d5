import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Transport, type MicroserviceOptions } from '@nestjs/microservices';
import { SHOP } from '../../../libs/shop/src/index.js';
import { InventoryModule } from './inventory.module.js';

const app = await NestFactory.createMicroservice<MicroserviceOptions>(InventoryModule, {
  transport: Transport.RMQ,
  options: {
    urls: [SHOP.rabbitmqUrl],
    queue: SHOP.inventoryQueue,
    queueOptions: { durable: false },
  },
});
app.enableShutdownHooks();
await app.listen();
Logger.log(`inventory ready (RabbitMQ queue ${SHOP.inventoryQueue})`, 'Bootstrap');
