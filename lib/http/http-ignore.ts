import type { IncomingMessage } from 'node:http';
import type { HttpIgnoreRule } from '../interfaces/tracing-module-options.interface.js';

/** Decides, from the path alone, whether a request gets no span. */
export type IgnoreMatcher = (path: string, request: IncomingMessage) => boolean;

/**
 * Compiles the `http.ignore` rules once, so a request costs one Set lookup (plus
 * one RegExp test per pattern rule). Exact paths match with or without a
 * trailing slash; in globs `*` is one non-empty path segment (or part of one) and `**`
 * any number of segments, none included.
 */
export function compileIgnoreRules(rules: HttpIgnoreRule[]): IgnoreMatcher | undefined {
  if (rules.length === 0) return undefined;
  const exact = new Set<string>();
  const patterns: RegExp[] = [];
  const predicates: Array<(request: IncomingMessage) => boolean> = [];
  for (const rule of rules) {
    if (typeof rule === 'function') predicates.push(rule);
    else if (rule instanceof RegExp) patterns.push(rule);
    else if (rule.includes('*')) patterns.push(globToRegExp(rule));
    else exact.add(stripTrailingSlash(rule));
  }
  return (path, request) => {
    if (exact.size > 0 && exact.has(stripTrailingSlash(path))) return true;
    for (const pattern of patterns) {
      pattern.lastIndex = 0;
      if (pattern.test(path)) return true;
    }
    for (const predicate of predicates) {
      if (predicate(request)) return true;
    }
    return false;
  };
}

function stripTrailingSlash(path: string): string {
  return path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
}

function globToRegExp(glob: string): RegExp {
  let source = '';
  for (let i = 0; i < glob.length; i++) {
    const ch = glob[i] as string;
    if (ch === '*') {
      if (glob[i + 1] === '*') {
        // `/internal/**` covers `/internal` itself too.
        if (source.endsWith('/') && i + 2 === glob.length)
          source = `${source.slice(0, -1)}(?:/.*)?`;
        else source += '.*';
        i++;
      } else {
        source += '[^/]+';
      }
    } else {
      source += ch.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
    }
  }
  return new RegExp(`^${source}/?$`);
}
