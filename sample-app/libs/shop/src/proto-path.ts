import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** `sample-app/protos/orders.proto`, found from wherever this file runs (sources or dist/). */
function findProto(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'protos', 'orders.proto');
    if (existsSync(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) throw new Error('sample-app/protos/orders.proto not found');
    dir = parent;
  }
}

export const ORDERS_PROTO = findProto();
