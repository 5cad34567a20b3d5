import { recordGetter, recordSetter, type HeaderRecord } from './header-values.js';

/**
 * Redis: Redis pub/sub messages have no headers, so the context travels in the packet's
 * `metadata` object inside the message (written by a client's dispatch hook, read with
 * `RedisContext#getMetadata()`).
 */
export type RedisCarrier = HeaderRecord;

export const redisGetter = recordGetter;
export const redisSetter = recordSetter;

/** `messaging.system` of a Redis pub/sub hop. */
export const REDIS_SYSTEM = 'redis';
