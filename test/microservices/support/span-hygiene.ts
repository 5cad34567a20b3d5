import { afterAll, afterEach, beforeAll, beforeEach, expect } from '@jest/globals';
import { diag, DiagLogLevel } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { OpenSpans } from '../../support/otel-harness.js';

/**
 * For a describe block: a tracker of open spans (hand it to a TracingModule as its
 * `spanProcessor`) and a diag logger. After each test no span may be left open, once the
 * replies and acknowledgements in flight have settled, and no diag warning (a second `end()`,
 * say) may have been reported.
 */
export function useSpanHygiene(): OpenSpans {
  const openSpans = new OpenSpans();
  const diagnostics: string[] = [];
  beforeAll(() => {
    const keep = (message: string): void => void diagnostics.push(message);
    diag.setLogger(
      { error: keep, warn: keep, info: () => {}, debug: () => {}, verbose: () => {} },
      DiagLogLevel.WARN,
    );
  });
  afterAll(() => diag.disable());
  beforeEach(() => {
    diagnostics.length = 0;
  });
  afterEach(async () => {
    const deadline = Date.now() + 5000;
    while (openSpans.open.size > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect([...openSpans.open].map((s) => (s as ReadableSpan).name)).toEqual([]);
    expect(diagnostics).toEqual([]);
  });
  return openSpans;
}
