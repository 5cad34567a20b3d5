import { Controller, Inject, Injectable } from '@nestjs/common';
import { MessagePattern, Payload, RpcException } from '@nestjs/microservices';
import { Trace, TraceService } from 'nestjs-tracing';
import { PATTERNS, type ChargeRequest, type ChargeResult } from '../../../libs/shop/src/index.js';

export const CHANCE = Symbol('CHANCE');

/** How often a charge fails or is slow when nobody asked for it: the demo's unreliable bank. */
export interface Chance {
  failRate: number;
  slowRate: number;
  random: () => number;
}

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

@Injectable()
export class CardProcessor {
  constructor(
    private readonly tracing: TraceService,
    @Inject(CHANCE) private readonly chance: Chance,
  ) {}

  @Trace('CardProcessor.authorize', {
    attributesFrom: ([request]) => ({ 'payment.amount': (request as ChargeRequest).amount }),
  })
  async authorize(request: ChargeRequest): Promise<ChargeResult> {
    const slow = request.slow === true || this.chance.random() < this.chance.slowRate;
    await delay(slow ? 400 : 10);
    if (request.fail === true || this.chance.random() < this.chance.failRate) {
      // Recorded on this span and on the handler's; Nest sends it back to the caller.
      throw new RpcException(`Card declined for order ${request.orderId}.`);
    }
    const paymentId = `pay-${request.orderId}`;
    this.tracing.setAttribute('payment.id', paymentId);
    return { paymentId };
  }
}

@Controller()
export class PaymentsController {
  constructor(private readonly cards: CardProcessor) {}

  @MessagePattern(PATTERNS.charge)
  charge(@Payload() request: ChargeRequest): Promise<ChargeResult> {
    return this.cards.authorize(request);
  }
}
