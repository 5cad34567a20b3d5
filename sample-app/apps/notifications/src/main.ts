import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Transport, type MicroserviceOptions } from '@nestjs/microservices';
import { SHOP } from '../../../libs/shop/src/index.js';
import { NotificationsModule } from './notifications.module.js';

const app = await NestFactory.createMicroservice<MicroserviceOptions>(NotificationsModule, {
  transport: Transport.NATS,
  options: { servers: [SHOP.natsUrl] },
});
app.enableShutdownHooks();
await app.listen();
Logger.log(`notifications ready (NATS on ${SHOP.natsUrl})`, 'Bootstrap');
