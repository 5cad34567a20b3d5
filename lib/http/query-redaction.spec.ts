import { redactedQuery, redactedUrl } from './query-redaction.js';

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
    [
      'jwt=e.y.J&pwd=1&pass=2&x-api-key=3&Api-Key=4&auth=5&Authorization=6&private_token=7',
      'jwt=REDACTED&pwd=REDACTED&pass=REDACTED&x-api-key=REDACTED&Api-Key=REDACTED&auth=REDACTED&Authorization=REDACTED&private_token=REDACTED',
    ],
    [
      'session=a&SessionId=b&session_id=c&client_assertion=d&SAMLResponse=e&otp=f&page=1',
      'session=REDACTED&SessionId=REDACTED&session_id=REDACTED&client_assertion=REDACTED&SAMLResponse=REDACTED&otp=REDACTED&page=1',
    ],
    // Only whole keys: a key that ends in one of them is the application's own.
    ['mysig=1&monkey=2&tokens=3', 'mysig=1&monkey=2&tokens=3'],
    ['', ''],
    // Keys as the application reads them: percent-encoded, with a [] suffix, in any case.
    [
      'access%5Ftoken=s1&token%5B%5D=s2&Pass%77ord=s3',
      'access%5Ftoken=REDACTED&token%5B%5D=REDACTED&Pass%77ord=REDACTED',
    ],
    ['token[]=a&token[]=b&q=x+y', 'token[]=REDACTED&token[]=REDACTED&q=x+y'],
    ['q=%zz&sig=1', 'q=%zz&sig=REDACTED'],
  ])('turns %p into %p', (query, expected) => {
    expect(redactedQuery(query)).toBe(expected);
  });
});

describe('redactedUrl', () => {
  it.each([
    ['http://h/p', 'http://h/p'],
    ['http://h/p?sig=1&a=2', 'http://h/p?sig=REDACTED&a=2'],
    ['http://h/p?token=1#frag?sig=2', 'http://h/p?token=REDACTED#frag?sig=2'],
  ])('turns %p into %p', (url, expected) => {
    expect(redactedUrl(url)).toBe(expected);
  });
});
