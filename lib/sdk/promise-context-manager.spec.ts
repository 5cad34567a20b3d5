import { ROOT_CONTEXT, createContextKey, type Context } from '@opentelemetry/api';
import { AsyncResource } from 'node:async_hooks';
import { EventEmitter, EventEmitterAsyncResource } from 'node:events';
import timers from 'node:timers';
import { promisify } from 'node:util';
import {
  PromiseContextManager,
  asyncLocalStorageUsesPromiseHooks,
} from './promise-context-manager.js';

const KEY = createContextKey('promise-context-manager.spec');
const named = (name: string): Context => ROOT_CONTEXT.setValue(KEY, name);
const tick = (): Promise<void> => Promise.resolve();

describe('PromiseContextManager', () => {
  const manager = new PromiseContextManager();
  const nameOf = (): unknown => manager.active().getValue(KEY);

  beforeEach(() => manager.enable());
  afterEach(() => manager.disable());

  it('is at the root context outside any with()', () => {
    expect(manager.active()).toBe(ROOT_CONTEXT);
  });

  it('makes a context active for the call, with its this and arguments, and restores it however the call ends', () => {
    const receiver = { tag: 'receiver' };
    const result = manager.with(
      named('a'),
      function (this: typeof receiver, x: number, y: number) {
        return [this.tag, x + y, nameOf(), manager.with(named('b'), nameOf), nameOf()];
      },
      receiver,
      1,
      2,
    );
    expect(result).toEqual(['receiver', 3, 'a', 'b', 'a']);
    expect(() =>
      manager.with(named('c'), () => {
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(manager.active()).toBe(ROOT_CONTEXT);
  });

  it('follows await, and an async function does not leak its context into its caller', async () => {
    const seen: unknown[] = [];
    const pending = manager.with(named('a'), async () => {
      seen.push(nameOf());
      await tick();
      seen.push(nameOf());
      await new Promise((resolve) => setTimeout(resolve, 1));
      seen.push(nameOf());
    });
    expect(manager.active()).toBe(ROOT_CONTEXT);
    await pending;
    expect(seen).toEqual(['a', 'a', 'a']);
    expect(manager.active()).toBe(ROOT_CONTEXT);
  });

  it('keeps interleaved requests apart', async () => {
    const chain = async (): Promise<unknown[]> => {
      const seen: unknown[] = [];
      for (let i = 0; i < 5; i++) {
        await tick();
        seen.push(nameOf());
      }
      return seen;
    };
    const [a, b] = await Promise.all([
      manager.with(named('a'), chain),
      manager.with(named('b'), chain),
    ]);
    expect(a).toEqual(Array(5).fill('a'));
    expect(b).toEqual(Array(5).fill('b'));
  });

  it("runs a then() callback in the context then() was called in, not the resolver's", async () => {
    let resolve!: (value: string) => void;
    const later = new Promise<string>((r) => (resolve = r));
    const observed = manager.with(named('listener'), () => later.then(() => nameOf()));
    manager.with(named('resolver'), () => resolve('done'));
    await expect(observed).resolves.toBe('listener');
  });

  it('follows setTimeout, setInterval, setImmediate, nextTick and queueMicrotask, from the globals and node:timers', async () => {
    const seen = await manager.with(named('timers'), () =>
      Promise.all([
        new Promise((r) => setTimeout(() => r(nameOf()), 1)),
        new Promise((r) => timers.setTimeout(() => r(nameOf()), 1)),
        new Promise((r) => setImmediate(() => r(nameOf()))),
        new Promise((r) => timers.setImmediate(() => r(nameOf()))),
        new Promise((r) => process.nextTick(() => r(nameOf()))),
        new Promise((r) => queueMicrotask(() => r(nameOf()))),
        new Promise((r) => {
          let runs = 0;
          const seenByInterval: unknown[] = [];
          const interval = setInterval(() => {
            seenByInterval.push(nameOf());
            if (++runs === 2) {
              clearInterval(interval);
              r(seenByInterval);
            }
          }, 1);
        }),
      ]),
    );
    expect(seen).toEqual([
      'timers',
      'timers',
      'timers',
      'timers',
      'timers',
      'timers',
      ['timers', 'timers'],
    ]);
    // Scheduled outside any context, a callback runs at the root.
    await expect(new Promise((r) => setTimeout(() => r(manager.active()), 1))).resolves.toBe(
      ROOT_CONTEXT,
    );
  });

  it('passes arguments through, cancels, and keeps the promise forms of the timers', async () => {
    const args = await manager.with(
      named('args'),
      () => new Promise((r) => setTimeout((x: number, y: number) => r([x, y, nameOf()]), 1, 4, 5)),
    );
    expect(args).toEqual([4, 5, 'args']);
    const all = await manager.with(named('all'), () =>
      Promise.all([
        new Promise((r) => setImmediate((x: number, y: number) => r([x, y, nameOf()]), 1, 2)),
        new Promise((r) => process.nextTick((x: number, y: number) => r([x, y, nameOf()]), 3, 4)),
        new Promise((r) => {
          const interval = setInterval(
            (x: number) => {
              clearInterval(interval);
              r([x, nameOf()]);
            },
            1,
            5,
          );
        }),
        // No delay: one that was left out is still left out; the callback's `this` is the timer.
        new Promise((r) => {
          const timer = setTimeout(function (this: unknown) {
            r([this === timer, arguments.length, nameOf()]);
          });
        }),
      ]),
    );
    expect(all).toEqual([
      [1, 2, 'all'],
      [3, 4, 'all'],
      [5, 'all'],
      [true, 0, 'all'],
    ]);

    let fired = false;
    const timer = manager.with(named('cancelled'), () => setTimeout(() => (fired = true), 1));
    clearTimeout(timer);
    await new Promise((r) => setTimeout(r, 10));
    expect(fired).toBe(false);

    await expect(manager.with(named('p'), () => promisify(setTimeout)(1, 'value'))).resolves.toBe(
      'value',
    );
    expect(setTimeout.name).toBe('setTimeout');
  });

  it('binds functions and event emitters to a context', () => {
    const bound = manager.bind(named('bound'), () => nameOf());
    expect(manager.with(named('other'), bound)).toBe('bound');

    const emitter = manager.bind(named('emitter'), new EventEmitter());
    const seen: unknown[] = [];
    emitter.on('event', () => seen.push(nameOf()));
    manager.with(named('emitting'), () => emitter.emit('event'));
    expect(seen).toEqual(['emitter']);
  });

  it('runs what an AsyncResource runs in the context the resource was made in', () => {
    // A pool: a waiting request binds its callback; another request releases the connection.
    const waiting: Array<(connection: string) => void> = [];
    const seen: unknown[] = [];
    manager.with(named('b'), () => {
      waiting.push(AsyncResource.bind((connection: string) => seen.push([connection, nameOf()])));
    });
    manager.with(named('a'), () => waiting.shift()!('conn-1'));
    expect(seen).toEqual([['conn-1', 'b']]);

    // A subclass kept by a client, run later from elsewhere, and made outside any context.
    class Handler extends AsyncResource {
      constructor() {
        super('Handler');
      }
      done(): unknown {
        return this.runInAsyncScope(nameOf);
      }
    }
    const handler = manager.with(named('request'), () => new Handler());
    expect(manager.with(named('socket'), () => handler.done())).toBe('request');
    expect(manager.with(named('other'), () => new Handler().done())).toBe('other');
    const rootHandler = new Handler();
    expect(manager.with(named('other'), () => rootHandler.done())).toBe(undefined);
    expect(handler.asyncId()).toBeGreaterThan(0);

    // Its listeners run in the context the emitter was made in.
    const emitter = manager.with(
      named('emitter'),
      () => new EventEmitterAsyncResource({ name: 'spec' }),
    );
    const heard: unknown[] = [];
    emitter.on('event', () => heard.push(nameOf()));
    manager.with(named('emitting'), () => emitter.emit('event'));
    expect(heard).toEqual(['emitter']);
    expect(manager.active()).toBe(ROOT_CONTEXT);

    // A resource made under a manager since disabled keeps nothing of it under the next one.
    const old = manager.with(named('old'), () => new Handler());
    manager.disable();
    const next = new PromiseContextManager().enable();
    try {
      expect(next.with(named('new'), () => old.done())).toBe('new');
      expect(next.with(named('new'), () => next.active().getValue(KEY))).toBe('new');
      const fresh = next.with(named('fresh'), () => new Handler());
      expect(
        next.with(named('elsewhere'), () =>
          fresh.runInAsyncScope(() => next.active().getValue(KEY)),
        ),
      ).toBe('fresh');
    } finally {
      next.disable();
      manager.enable();
    }
  });

  it('once disabled, leaves the timers as they were and no longer follows anything', async () => {
    const before = { setTimeout, nextTick: process.nextTick, timersSetTimeout: timers.setTimeout };
    manager.disable();
    expect(setTimeout).not.toBe(before.setTimeout);
    expect(process.nextTick).not.toBe(before.nextTick);
    expect(timers.setTimeout).toBe(setTimeout);
    // What an AsyncResource runs is Node's business again.
    const resource = manager.with(named('made'), () => new AsyncResource('after'));
    expect(manager.with(named('later'), () => resource.runInAsyncScope(nameOf))).toBe('later');
    expect(resource.asyncId()).toBeGreaterThan(0);

    const other = new PromiseContextManager().enable();
    try {
      // Enabling another manager takes the hooks over.
      const seen = await other.with(named('other'), async () => {
        await tick();
        return other.active().getValue(KEY);
      });
      expect(seen).toBe('other');
    } finally {
      other.disable();
    }
    const seenAfter = await manager.with(named('off'), async () => {
      await tick();
      return manager.active();
    });
    expect(seenAfter).toBe(ROOT_CONTEXT);
  });

  it('leaves a timer that was replaced again while it ran (fake timers) as it is', () => {
    const fake = (() => undefined) as unknown as typeof setTimeout;
    globalThis.setTimeout = fake;
    try {
      manager.disable();
      expect(globalThis.setTimeout).toBe(fake);
    } finally {
      globalThis.setTimeout = timers.setTimeout;
    }
  });
});

describe('asyncLocalStorageUsesPromiseHooks', () => {
  it.each([
    ['20.20.2', [], true],
    ['22.12.0', [], true],
    ['22.12.0', ['--experimental-async-context-frame'], false],
    ['24.1.0', [], false],
    ['24.1.0', ['--no-async-context-frame'], true],
    ['26.0.0', [], false],
  ])('Node %s with %j: %s', (version, flags, expected) => {
    expect(asyncLocalStorageUsesPromiseHooks(version, flags)).toBe(expected);
  });
});
