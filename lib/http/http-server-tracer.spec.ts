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
    [
      'X-Amz-Credential=AKIA%2F&X-Amz-Signature=abc&X-Amz-Date=1',
      'X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED&X-Amz-Date=1',
    ],
    [
      'access_token=t&API_KEY=k&q=1&password=p',
      'access_token=REDACTED&API_KEY=REDACTED&q=1&password=REDACTED',
    ],
    ['code=abc&state=xyz', 'code=REDACTED&state=xyz'],
    // Only whole keys: a key that ends in one of them is the application's own.
    ['mysig=1&monkey=2&tokens=3', 'mysig=1&monkey=2&tokens=3'],
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
