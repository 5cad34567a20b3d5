import { SpanKind } from '@opentelemetry/api';
import {
  EMPTY_PROTOBUF_RESPONSE,
  OtlpDecodeError,
  decodeJsonRequest,
  decodeProtobufRequest,
} from '../../sample-app/viewer/otlp-decoder.mjs';
import { FakeService, at, encode, nanos } from './otlp-fixtures.js';

const service = new FakeService('decoder');
afterAll(() => service.shutdown());

/** A span with what the viewer's schema leaves out: links, trace state, flags, dropped counts. */
function richSpan() {
  service.exporter.reset();
  const other = service.start('other', SpanKind.INTERNAL, at(0));
  other.end(at(1));
  const span = service.start('rich', SpanKind.PRODUCER, at(2, 999_999), undefined, {
    'app.count': 3,
  });
  span.addLink({ context: other.spanContext(), attributes: { 'link.kind': 'follows' } });
  span.addEvent('first', { 'app.step': 1 }, at(3, 1));
  span.addEvent('second', {}, at(4, 2));
  span.end(at(9, 123));
  return service.spans().find((s) => s.name === 'rich')!;
}

describe('OTLP decoder', () => {
  it('reads protobuf through the schema, skipping the fields it does not declare', () => {
    const span = richSpan();
    const [decoded, ...rest] = decodeProtobufRequest(encode([span], 'protobuf'));
    expect(rest).toEqual([]);
    expect(decoded).toEqual({
      traceId: span.spanContext().traceId,
      spanId: span.spanContext().spanId,
      parentSpanId: '',
      name: 'rich',
      kind: 'producer',
      service: 'decoder',
      scope: 'decoder-scope',
      start: BigInt(nanos(at(2, 999_999))),
      end: BigInt(nanos(at(9, 123))),
      attributes: { 'app.count': 3 },
      events: [
        { name: 'first', time: BigInt(nanos(at(3, 1))), attributes: { 'app.step': 1 } },
        { name: 'second', time: BigInt(nanos(at(4, 2))), attributes: {} },
      ],
      status: { code: 'UNSET', message: '' },
    });
  });

  it('makes the same spans of the JSON encoding', () => {
    const span = richSpan();
    const text = Buffer.from(encode([span], 'json')).toString('utf8');
    expect(decodeJsonRequest(text)).toEqual(decodeProtobufRequest(encode([span], 'protobuf')));
  });

  it("names a resource without service.name 'unknown'; takes base64 ids in JSON", () => {
    const [decoded] = decodeJsonRequest(
      JSON.stringify({
        resourceSpans: [
          {
            scopeSpans: [
              {
                spans: [
                  {
                    traceId: Buffer.alloc(16, 0xab).toString('base64'),
                    spanId: Buffer.alloc(8, 0xcd).toString('base64'),
                    name: 'x',
                    startTimeUnixNano: 1,
                    endTimeUnixNano: 2,
                  },
                ],
              },
            ],
          },
        ],
      }),
    );
    expect(decoded).toMatchObject({
      traceId: 'ab'.repeat(16),
      spanId: 'cd'.repeat(8),
      service: 'unknown',
      scope: '',
      kind: 'unspecified',
      start: 1n,
      end: 2n,
    });
  });

  it('decodes an empty request to no spans, and answers with an empty message', () => {
    expect(decodeProtobufRequest(new Uint8Array())).toEqual([]);
    expect(decodeJsonRequest('{}')).toEqual([]);
    expect(EMPTY_PROTOBUF_RESPONSE).toHaveLength(0);
  });

  it('throws OtlpDecodeError for what is not an export request', () => {
    const attempts = [
      () => decodeProtobufRequest(Buffer.from('hello, world')),
      () => decodeJsonRequest('{"resourceSpans": {}}'),
      () =>
        decodeJsonRequest(
          JSON.stringify({
            resourceSpans: [{ scopeSpans: [{ spans: [{ traceId: '00'.repeat(16) }] }] }],
          }),
        ),
      () =>
        decodeJsonRequest(
          JSON.stringify({
            resourceSpans: [
              {
                scopeSpans: [
                  {
                    spans: [
                      { traceId: 'ab'.repeat(16), spanId: 'cd'.repeat(8), startTimeUnixNano: 1.5 },
                    ],
                  },
                ],
              },
            ],
          }),
        ),
    ];
    for (const attempt of attempts) expect(attempt).toThrow(OtlpDecodeError);
  });
});
