import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));

interface Row {
  depth: number;
  name: string;
  service: string;
  kind: string;
  line: string;
}

/** The trace the demo printed under the heading `▶ <heading>`, one row per span. */
function traceOf(output: string, heading: string): Row[] {
  const block = output.split('\n\n').find((b) => b.startsWith(`▶ ${heading} `));
  if (block === undefined) throw new Error(`no trace for '${heading}' in:\n${output}`);
  return block
    .split('\n')
    .slice(1)
    .map((line) => {
      // `  │  ├─ OrdersService.price   gateway  internal  ···█···   0.1 ms`: the tree glyphs in
      // front of the name tell its depth.
      const match = /^([\s│├└─]*)(\S.*?)\s{2,}(\S+)\s{2,}(\S+)\s/.exec(line);
      if (match === null) throw new Error(`not a span line: '${line}'`);
      const [, prefix = '', name = '', service = '', kind = ''] = match;
      return { depth: prefix.length, name, service, kind, line };
    });
}

/** The name of the row's parent: the nearest row above it that is less deep. */
function parentOf(rows: Row[], name: string): string | undefined {
  const index = rows.findIndex((r) => r.name === name);
  if (index === -1) throw new Error(`no span '${name}' in:\n${rows.map((r) => r.line).join('\n')}`);
  const depth = rows[index]!.depth;
  return rows
    .slice(0, index)
    .reverse()
    .find((r) => r.depth < depth)?.name;
}

describe('sample-app demo (npm run demo -- --once)', () => {
  let demo: ChildProcess | undefined;

  beforeAll(() => {
    // The e2e suite runs after the root build; the sample compiles against that dist/.
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    execFileSync(process.execPath, [tsc, '-p', 'sample-app/tsconfig.json'], {
      cwd: root,
      stdio: 'pipe',
    });
  }, 60_000);

  afterAll(() => {
    if (demo !== undefined && demo.exitCode === null && demo.signalCode === null) {
      demo.kill('SIGTERM');
    }
  });

  it('prints the trace of every request as a tree and exits 0', async () => {
    // Free ports for the receiver and the gateway, so a collector on 4318 or an app on 3000 does
    // not fail the suite; and no OTEL_* from the developer's shell, which would send the spans
    // elsewhere.
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([key]) => !key.startsWith('OTEL_')),
    );
    demo = spawn(
      process.execPath,
      ['sample-app/demo.mjs', '--once', '--no-build', '--otlp-port', '0'],
      { cwd: root, env: { ...env, PORT: '0', NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    let errors = '';
    demo.stdout!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    demo.stderr!.setEncoding('utf8').on('data', (chunk: string) => (errors += chunk));
    const [code] = (await once(demo, 'exit')) as [number | null];

    expect({ code, errors }).toEqual({ code: 0, errors: '' });

    const ok = traceOf(output, 'POST /orders {"sku":"book","qty":2} → 201');
    expect(ok[0]).toMatchObject({ name: 'POST /orders', service: 'gateway', kind: 'server' });
    expect(parentOf(ok, 'OrdersService.place')).toBe('POST /orders');
    for (const step of ['reserveStock', 'price', 'charge', 'save']) {
      expect(parentOf(ok, `OrdersService.${step}`)).toBe('OrdersService.place');
    }
    expect(ok.some((r) => r.line.includes('✗'))).toBe(false);

    const failed = traceOf(output, 'POST /orders?fail=1 {"sku":"lamp","qty":1} → 500');
    expect(parentOf(failed, 'OrdersService.charge')).toBe('OrdersService.place');
    for (const name of ['POST /orders', 'OrdersService.place', 'OrdersService.charge']) {
      expect(failed.find((r) => r.name === name)?.line).toMatch(/✗ Payment of 34\.00 declined/);
    }
    expect(failed.find((r) => r.name === 'OrdersService.reserveStock')?.line).not.toContain('✗');

    // A client error is not a server error: the 400's span is not marked.
    const invalid = traceOf(output, 'POST /orders {"sku":"book","qty":0} → 400');
    expect(invalid.map((r) => r.name)).toEqual(['POST /orders']);
    expect(invalid[0]!.line).not.toContain('✗');

    expect(traceOf(output, 'GET /orders/1 → 200')[0]).toMatchObject({ name: 'GET /orders/:id' });
    expect(traceOf(output, 'GET /orders/999 → 404')[0]!.line).not.toContain('✗');
  }, 60_000);
});
