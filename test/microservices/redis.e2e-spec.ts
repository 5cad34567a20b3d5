import { Transport } from '@nestjs/microservices';
import { Redis } from 'ioredis';
import { describeTransport, type RawPublish } from './support/transport-suite.js';

const REDIS = { host: '127.0.0.1', port: 6379 };
let publisher: Redis | undefined;

/** A plain ioredis publisher: Redis messages have no headers, so metadata rides in the packet. */
function rawPublish(): RawPublish {
  publisher = new Redis({ ...REDIS, lazyConnect: false });
  return async (pattern, data, metadata) => {
    await publisher!.publish(pattern, JSON.stringify({ pattern, data, metadata }));
  };
}

describeTransport({
  name: 'redis',
  system: 'redis',
  clientStyle: 'registerAsync',
  // Hybrid: the Redis server runs inside an HTTP application.
  hybrid: true,
  server: () => ({ transport: Transport.REDIS, options: REDIS }),
  client: () => ({ transport: Transport.REDIS, options: REDIS }),
  destination: (pattern) => ({ client: pattern, server: pattern }),
  rawPublish,
  controlCharacters: true,
  cleanup: async () => {
    await publisher?.quit();
  },
});
