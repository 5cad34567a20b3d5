import { pathOfTarget, redactedQuery } from './http-server-tracer.js';

describe('redactedQuery', () => {
  it.each([
    ['q=shoes&page=2', 'q=shoes&page=2'],
    ['sig=abc', 'sig=REDACTED'],
    [
      'a=1&Signature=xyz&AWSAccessKeyId=AKIA&b=2',
      'a=1&Signature=REDACTED&AWSAccessKeyId=REDACTED&b=2',
    ],
    ['X-Goog-Signature=f00&X-Goog-Date=1', 'X-Goog-Signature=REDACTED&X-Goog-Date=1'],
    // Only whole keys: a key that ends in one of them is the application's own.
    ['mysig=1&signature=2', 'mysig=1&signature=2'],
    ['', ''],
  ])('turns %p into %p', (query, expected) => {
    expect(redactedQuery(query)).toBe(expected);
  });
});

describe('pathOfTarget', () => {
  it.each([
    ['http://example.com:8080/health', '/health'],
    ['https://example.com/orders/7', '/orders/7'],
    ['http://example.com', '/'],
    ['*', '*'],
    ['example.com:443', 'example.com:443'],
  ])('reads %p as %p', (target, expected) => {
    expect(pathOfTarget(target)).toBe(expected);
  });
});
