import type { RequestOptions } from 'node:http';
import { headersAsObject } from './http-client-tracing.js';

describe('headersAsObject (the http instrumentation gets a list of headers as an object)', () => {
  it('keeps each name as first spelt and a repeated name, in any case, as a list', () => {
    const options: RequestOptions = {
      headers: ['Host', 'h:1', 'X-Tag', 'a', 'Authorization', 'b', 'x-tag', 'c'] as never,
    };
    expect(headersAsObject(options)).toBe(false);
    expect(options.headers).toEqual({ Host: 'h:1', 'X-Tag': ['a', 'c'], Authorization: 'b' });
    expect(options.setHost).toBeUndefined();
  });

  it('reads pairs too, and adds no Host when the list had none, as Node would not', () => {
    const options: RequestOptions = {
      headers: [
        ['Accept', 'text/plain'],
        ['accept', ['a/b', 'c/d']],
      ] as never,
    };
    expect(headersAsObject(options)).toBe(false);
    expect(options.headers).toEqual({ Accept: ['text/plain', 'a/b', 'c/d'] });
    expect(options.setHost).toBe(false);
  });

  it('makes no Authorization from auth, as Node does not for a list', () => {
    const options: RequestOptions = { headers: ['Host', 'h'] as never, auth: 'user:secret' };
    expect(headersAsObject(options)).toBe(false);
    expect(options.auth).toBeUndefined();
    expect(options.headers).toEqual({ Host: 'h' });
  });

  it.each([
    ['of odd length', ['X-A', '1', 'X-B']],
    ['with a name that is no string', [Buffer.from('X-A'), '1']],
    ['with a missing value', ['X-A', undefined]],
    ['of pairs and names mixed', [['X-A', '1'], 'X-B', '2']],
  ])('leaves a list %s to Node, untraced, to refuse as it would', (_label, headers) => {
    const options: RequestOptions = { headers: headers as never };
    expect(headersAsObject(options)).toBe(true);
    expect(options.headers).toBe(headers);
  });

  it('leaves header objects and missing headers alone', () => {
    const headers = { a: '1' };
    const options: RequestOptions = { headers };
    expect(headersAsObject(options)).toBe(false);
    expect(options.headers).toBe(headers);
    const none: RequestOptions = {};
    expect(headersAsObject(none)).toBe(false);
    expect(none).toEqual({});
  });
});
