import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Transport, type MicroserviceOptions } from '@nestjs/microservices';
import { SHOP } from '../../../libs/shop/src/index.js';
import { AuditModule } from './audit.module.js';

const app = await NestFactory.createMicroservice<MicroserviceOptions>(AuditModule, {
  transport: Transport.MQTT,
  options: { url: SHOP.mqttUrl, protocolVersion: 5 },
});
app.enableShutdownHooks();
await app.listen();
Logger.log(`audit ready (MQTT on ${SHOP.mqttUrl})`, 'Bootstrap');
