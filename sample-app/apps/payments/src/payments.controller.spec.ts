import { SpanStatusCode } from '@opentelemetry/api';
import { Test, type TestingModule } from '@nestjs/testing';
import { TraceService } from 'nestjs-tracing';
import {
  TestSpans,
  TracingTestingModule,
  expectChildOf,
  expectError,
} from 'nestjs-tracing/testing';
import { CardProcessor, CHANCE, PaymentsController, type Chance } from './payments.controller.js';

/** The payments service's own tests, written with the package's test kit as a user would. */
describe('PaymentsController', () => {
  let moduleRef: TestingModule;
  let spans: TestSpans;
  let controller: PaymentsController;
  const chance: Chance = { failRate: 0, slowRate: 0, random: () => 0.5 };

  beforeAll(async () => {
    moduleRef = await Test.createTestingModule({
      imports: [TracingTestingModule.forRoot({ serviceName: 'payments' })],
      controllers: [PaymentsController],
      providers: [CardProcessor, { provide: CHANCE, useValue: chance }],
    }).compile();
    await moduleRef.init();
    spans = moduleRef.get(TestSpans);
    controller = moduleRef.get(PaymentsController);
  });
  afterAll(() => moduleRef.close());
  beforeEach(() => spans.reset());

  it('authorizes a charge in a span of its own, with the amount and the payment id', async () => {
    await expect(controller.charge({ orderId: '7', amount: 25 })).resolves.toEqual({
      paymentId: 'pay-7',
    });
    const span = spans.one('CardProcessor.authorize');
    expect(span.attributes).toMatchObject({ 'payment.amount': 25, 'payment.id': 'pay-7' });
    expect(span.status.code).toBe(SpanStatusCode.UNSET);
  });

  it('records a declined card as an error on the span', async () => {
    await expect(controller.charge({ orderId: '8', amount: 5, fail: true })).rejects.toThrow(
      'Card declined for order 8.',
    );
    const span = spans.one('CardProcessor.authorize');
    expectError(span, 'Card declined for order 8.');
    expect(span.events.map((e) => e.name)).toEqual(['exception']);
  });

  it('declines the share of charges the failure rate says, without being asked', async () => {
    chance.failRate = 0.6;
    try {
      await expect(controller.charge({ orderId: '9', amount: 1 })).rejects.toThrow('Card declined');
    } finally {
      chance.failRate = 0;
    }
    expectError(spans.one('CardProcessor.authorize'), /Card declined for order 9/);
  });

  it("runs the charge inside the caller's trace", async () => {
    const tracing = moduleRef.get(CardProcessor);
    await moduleRef
      .get(TraceService)
      .startActiveSpan('caller', () => tracing.authorize({ orderId: '10', amount: 2 }));
    expectChildOf(spans.one('CardProcessor.authorize'), spans.one('caller'));
  });
});
