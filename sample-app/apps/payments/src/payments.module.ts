import { Module } from '@nestjs/common';
import { TracingModule } from 'nestjs-tracing';
import { SHOP } from '../../../libs/shop/src/index.js';
import { CardProcessor, CHANCE, PaymentsController } from './payments.controller.js';

@Module({
  imports: [TracingModule.forRoot({ serviceName: 'payments' })],
  controllers: [PaymentsController],
  providers: [
    CardProcessor,
    {
      provide: CHANCE,
      useValue: {
        failRate: SHOP.paymentFailRate,
        slowRate: SHOP.paymentSlowRate,
        random: Math.random,
      },
    },
  ],
})
export class PaymentsModule {}
