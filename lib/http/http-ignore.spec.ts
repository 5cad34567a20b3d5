import type { IncomingMessage } from 'node:http';
import type { HttpIgnoreRule } from '../interfaces/tracing-module-options.interface.js';
import { compileIgnoreRules, type IgnoreMatcher } from './http-ignore.js';

function fakeRequest(headers: Record<string, string> = {}): IncomingMessage {
  return { method: 'GET', url: '/', headers } as IncomingMessage;
}
const request = fakeRequest();

function compile(...rules: HttpIgnoreRule[]): IgnoreMatcher {
  const matcher = compileIgnoreRules(rules);
  if (matcher === undefined) throw new Error('expected a matcher');
  return matcher;
}

/** The paths among `paths` that the rules ignore. */
function ignored(matcher: IgnoreMatcher, paths: string[]): string[] {
  return paths.filter((path) => matcher(path, request));
}

describe('compileIgnoreRules', () => {
  it('returns undefined when there are no rules', () => {
    expect(compileIgnoreRules([])).toBeUndefined();
  });

  it('returns a matcher as soon as there is one rule', () => {
    expect(typeof compileIgnoreRules(['/health'])).toBe('function');
  });

  describe('exact paths', () => {
    it('match the path with or without a trailing slash, and nothing else', () => {
      const matcher = compile('/health');
      expect(
        ignored(matcher, ['/health', '/health/', '/healthz', '/health/live', '/', '/api/health']),
      ).toEqual(['/health', '/health/']);
    });

    it('match the same way when the rule has the trailing slash', () => {
      const matcher = compile('/health/');
      expect(ignored(matcher, ['/health', '/health/', '/health/live'])).toEqual([
        '/health',
        '/health/',
      ]);
    });

    it("'/' matches the root only", () => {
      expect(ignored(compile('/'), ['/', '/a', '/a/'])).toEqual(['/']);
    });

    it('are case-sensitive', () => {
      expect(compile('/Health')('/health', request)).toBe(false);
    });
  });

  describe("'*' (one path segment)", () => {
    it('matches exactly one segment in the middle', () => {
      const matcher = compile('/api/*/health');
      expect(
        ignored(matcher, [
          '/api/v1/health',
          '/api/v2/health/',
          '/api/v1/v2/health',
          '/api/health',
          '/api/v1/healthz',
        ]),
      ).toEqual(['/api/v1/health', '/api/v2/health/']);
    });

    it('matches exactly one trailing segment, not the base, not two', () => {
      const matcher = compile('/users/*');
      expect(ignored(matcher, ['/users/42', '/users/42/', '/users', '/users/42/orders'])).toEqual([
        '/users/42',
        '/users/42/',
      ]);
    });

    it('does not match an empty segment', () => {
      expect(ignored(compile('/api/*/health'), ['/api//health'])).toEqual([]);
      expect(ignored(compile('/users/*'), ['/users/'])).toEqual([]);
    });

    it('matches within a segment and is anchored at both ends', () => {
      const matcher = compile('/files/*.json');
      expect(
        ignored(matcher, [
          '/files/a.json',
          '/files/a.jsonx',
          '/files/ajson',
          '/files/a/b.json',
          '/x/files/a.json',
        ]),
      ).toEqual(['/files/a.json']);
    });
  });

  describe("'**' (any depth)", () => {
    it('matches the base itself and anything below it, but not a longer name', () => {
      const matcher = compile('/internal/**');
      expect(
        ignored(matcher, [
          '/internal',
          '/internal/',
          '/internal/a',
          '/internal/a/b',
          '/internal/a/b/c/',
          '/internalx',
          '/internalx/a',
          '/other/internal/a',
        ]),
      ).toEqual(['/internal', '/internal/', '/internal/a', '/internal/a/b', '/internal/a/b/c/']);
    });

    it('spans several segments in the middle of a glob', () => {
      const matcher = compile('/a/**/z');
      expect(ignored(matcher, ['/a/b/z', '/a/b/c/z', '/a/b/c/zz', '/b/c/z'])).toEqual([
        '/a/b/z',
        '/a/b/c/z',
      ]);
    });
  });

  describe('RegExp rules', () => {
    it('are tested against the path', () => {
      const matcher = compile(/^\/health/);
      expect(ignored(matcher, ['/health', '/healthz', '/api/health'])).toEqual([
        '/health',
        '/healthz',
      ]);
    });

    it('match every time when the RegExp has the global flag (lastIndex is reset)', () => {
      const pattern = /^\/ready$/g;
      const matcher = compile(pattern);
      expect(matcher('/ready', request)).toBe(true);
      expect(matcher('/ready', request)).toBe(true);
      expect(matcher('/ready', request)).toBe(true);
      expect(matcher('/other', request)).toBe(false);
    });

    it('match every time when the RegExp is sticky', () => {
      const matcher = compile(/\/ready/y);
      expect(matcher('/ready', request)).toBe(true);
      expect(matcher('/ready', request)).toBe(true);
    });
  });

  describe('predicate rules', () => {
    it('receive the request object and ignore it when they return true', () => {
      const seen: IncomingMessage[] = [];
      const probe = fakeRequest({ 'x-probe': '1' });
      const matcher = compile((req) => {
        seen.push(req);
        return req.headers['x-probe'] === '1';
      });
      expect(matcher('/anything', probe)).toBe(true);
      expect(seen).toHaveLength(1);
      expect(seen[0]).toBe(probe);
    });

    it('do not ignore the request when they return false', () => {
      const seen: IncomingMessage[] = [];
      const matcher = compile((req) => {
        seen.push(req);
        return false;
      });
      expect(matcher('/anything', request)).toBe(false);
      expect(seen).toEqual([request]);
    });
  });

  it('ignores a request when any one of mixed rules matches', () => {
    const matcher = compile(
      '/health',
      '/internal/**',
      /^\/metrics/,
      (req) => req.headers['user-agent'] === 'kube-probe',
    );
    const probe = fakeRequest({ 'user-agent': 'kube-probe' });
    expect(ignored(matcher, ['/health', '/internal/x', '/metrics/prom', '/orders'])).toEqual([
      '/health',
      '/internal/x',
      '/metrics/prom',
    ]);
    expect(matcher('/orders', probe)).toBe(true);
  });

  describe('regex special characters in paths are literal', () => {
    it('in exact paths', () => {
      expect(ignored(compile('/a.b'), ['/a.b', '/axb'])).toEqual(['/a.b']);
    });

    it('in globs', () => {
      expect(ignored(compile('/v1.0/*'), ['/v1.0/x', '/v1x0/x'])).toEqual(['/v1.0/x']);
      expect(ignored(compile('/what?/*'), ['/what?/x', '/wha/x', '/what/x'])).toEqual(['/what?/x']);
      expect(ignored(compile('/a+b/**'), ['/a+b/x', '/aab/x', '/aaab'])).toEqual(['/a+b/x']);
      expect(ignored(compile('/(x)|y/*'), ['/(x)|y/1', '/x/1', 'y/1'])).toEqual(['/(x)|y/1']);
      expect(ignored(compile('/[ab]$/*'), ['/[ab]$/1', '/a/1'])).toEqual(['/[ab]$/1']);
    });
  });
});
