import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { SHOP } from '../../../libs/shop/src/index.js';
import { AppModule } from './app.module.js';

const app = await NestFactory.create(AppModule);
// On SIGINT/SIGTERM Nest closes the app, and closing is what exports the spans still waiting in
// the batch processor; without shutdown hooks the last few seconds of traces would be lost.
app.enableShutdownHooks();
await app.listen(SHOP.gatewayPort);
Logger.log(`gateway listening on ${await app.getUrl()}`, 'Bootstrap');
