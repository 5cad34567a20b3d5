import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module.js';

const app = await NestFactory.create(AppModule);
// On SIGINT/SIGTERM Nest closes the app, and closing is what exports the spans still waiting in
// the batch processor; without shutdown hooks the last few seconds of traces would be lost.
app.enableShutdownHooks();
await app.listen(Number(process.env.PORT ?? 3000));
Logger.log(`gateway listening on ${await app.getUrl()}`, 'Bootstrap');
