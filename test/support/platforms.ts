import type { DynamicModule, INestApplication, Type } from '@nestjs/common';
import { Test, type TestingModuleBuilder } from '@nestjs/testing';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { afterAll, beforeAll, beforeEach } from '@jest/globals';
import { TestSpans } from '../../lib/testing/index.js';

/** The HTTP platforms every HTTP suite runs on. */
export const platforms = [
  { name: 'express', adapter: () => new ExpressAdapter() },
  { name: 'fastify', adapter: () => new FastifyAdapter() },
] as const;

export type Platform = (typeof platforms)[number];

/** Compiles a module, creates the app on the platform, lets `setup` adjust it, and listens on port 0. */
export async function startApp(
  platform: Platform,
  imports: Array<Type<unknown> | DynamicModule>,
  setup?: (app: INestApplication) => void,
  adjust?: (builder: TestingModuleBuilder) => TestingModuleBuilder,
): Promise<{ app: INestApplication; url: string }> {
  let builder = Test.createTestingModule({ imports });
  if (adjust) builder = adjust(builder);
  const moduleRef = await builder.compile();
  const app = moduleRef.createNestApplication(platform.adapter(), { logger: false });
  setup?.(app);
  await app.listen(0, '127.0.0.1');
  const address = app.getHttpServer().address() as { port: number };
  return { app, url: `http://127.0.0.1:${address.port}` };
}

/**
 * Starts one app for a whole describe block (closed after it) and forgets its spans before each
 * test; read `app`, `url` and `spans` from the returned object inside tests.
 */
export function useTracedApp(
  platform: Platform,
  imports: Array<Type<unknown> | DynamicModule>,
  setup?: (app: INestApplication) => void,
): { app: INestApplication; url: string; spans: TestSpans } {
  const current = {} as { app: INestApplication; url: string; spans: TestSpans };
  beforeAll(async () => {
    Object.assign(current, await startApp(platform, imports, setup));
    current.spans = current.app.get(TestSpans);
  });
  afterAll(async () => {
    await current.app?.close();
  });
  beforeEach(() => current.spans.reset());
  return current;
}
