import { Module } from '@nestjs/common';
import { TracingModule } from 'nestjs-tracing';
import { OrdersController } from './orders.controller.js';
import { OrdersService } from './orders.service.js';

@Module({
  imports: [
    // Defaults: OTLP http/protobuf to localhost:4318 unless OTEL_EXPORTER_OTLP_ENDPOINT says
    // otherwise, batch processor, W3C trace context and baggage.
    TracingModule.forRoot({ serviceName: 'gateway' }),
  ],
  controllers: [OrdersController],
  providers: [OrdersService],
})
export class AppModule {}
