import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Transport, type MicroserviceOptions } from '@nestjs/microservices';
import { SHOP } from '../../../libs/shop/src/index.js';
import { PaymentsModule } from './payments.module.js';

const app = await NestFactory.createMicroservice<MicroserviceOptions>(PaymentsModule, {
  transport: Transport.TCP,
  options: { host: SHOP.paymentsHost, port: SHOP.paymentsPort },
});
app.enableShutdownHooks();
await app.listen();
Logger.log(`payments ready (TCP on ${SHOP.paymentsHost}:${SHOP.paymentsPort})`, 'Bootstrap');
