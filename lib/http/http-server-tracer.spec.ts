import { pathOfTarget } from './http-server-tracer.js';

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
