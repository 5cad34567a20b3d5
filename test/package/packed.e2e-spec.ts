import { SpanKind } from '@opentelemetry/api';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const fixtures = fileURLToPath(new URL('./fixtures', import.meta.url));
// Inside the repo, so the consumer finds Nest and the other peers in the root
// node_modules, while `nestjs-tracing` itself is the unpacked tarball.
const consumer = join(root, 'test-output', 'packed-consumer');

interface Result {
  body: { text: string; traceId: string };
  traceresponse: string;
  spans: Array<{
    name: string;
    kind: number;
    traceId: string;
    spanId: string;
    parentSpanId?: string;
    service: string;
  }>;
}

describe('the packed package (npm pack), as a user installs it', () => {
  beforeAll(() => {
    rmSync(consumer, { recursive: true, force: true });
    const pkgDir = join(consumer, 'node_modules', 'nestjs-tracing');
    mkdirSync(pkgDir, { recursive: true });
    // dist/ was built before the e2e run; --ignore-scripts keeps prepack from rebuilding it
    // under the suites that run from it.
    const out = execFileSync(
      'npm',
      ['pack', '--ignore-scripts', '--pack-destination', consumer, '--json'],
      {
        cwd: root,
        encoding: 'utf8',
      },
    );
    const [{ filename }] = JSON.parse(out) as [{ filename: string }];
    execFileSync('tar', ['-xzf', join(consumer, filename), '-C', pkgDir, '--strip-components=1']);
    cpSync(fixtures, consumer, { recursive: true });
    writeFileSync(
      join(consumer, 'package.json'),
      JSON.stringify({ name: 'consumer', private: true }),
    );
  }, 120_000);

  it('ships only the built files, with declarations', () => {
    const files = readdirSync(join(consumer, 'node_modules', 'nestjs-tracing', 'dist'), {
      recursive: true,
    }) as string[];
    expect(files).toContain('index.js');
    expect(files).toContain('index.d.ts');
    expect(files).toContain(join('testing', 'index.js'));
    // The export worker is started from its own file, next to the exporter.
    expect(files).toContain(join('sdk', 'otlp-export-worker.js'));
    expect(files).toContain(join('sdk', 'otlp-http-delegate.js'));
    expect(files.some((f) => f.includes('.spec.'))).toBe(false);
  });

  it.each(['app.mjs', 'app.cjs'])('%s traces a request end to end', (script) => {
    const output = execFileSync(process.execPath, [join(consumer, script)], {
      cwd: consumer,
      encoding: 'utf8',
      timeout: 60_000,
    });
    const result = JSON.parse(output.trim().split('\n').pop() as string) as Result;
    const flavour = script.endsWith('.cjs') ? 'cjs' : 'esm';
    expect(result.body.text).toBe(`hello ${flavour}`);
    expect(result.body.traceId).toBe('0af7651916cd43dd8448eb211c80319c');
    const server = result.spans.find((s) => s.name === 'GET /hello');
    const send = result.spans.find((s) => s.name === 'send greet');
    const handler = result.spans.find((s) => s.name === 'process greet');
    const greet = result.spans.find((s) => s.name === 'Greeter.greet');
    expect(server).toMatchObject({
      kind: SpanKind.SERVER,
      parentSpanId: 'b7ad6b7169203331',
      service: `packed-${flavour}`,
    });
    // HTTP → TCP client → TCP server → @Trace, one trace: the transports load from the package.
    expect(send).toMatchObject({
      kind: SpanKind.CLIENT,
      parentSpanId: server?.spanId,
      traceId: server?.traceId,
    });
    expect(handler).toMatchObject({
      kind: SpanKind.SERVER,
      parentSpanId: send?.spanId,
      traceId: server?.traceId,
    });
    expect(greet).toMatchObject({
      kind: SpanKind.INTERNAL,
      parentSpanId: handler?.spanId,
      traceId: server?.traceId,
    });
    expect(result.traceresponse).toBe(`00-${server?.traceId}-${server?.spanId}-01`);
  });

  it.each([
    ['an ES module, nodenext', 'module', 'nodenext', 'nodenext'],
    ['CommonJS, nodenext', 'commonjs', 'nodenext', 'nodenext'],
    ['CommonJS, classic node10 resolution', 'commonjs', 'commonjs', 'node10'],
  ])(
    'type-checks a TypeScript consumer against the packed declarations (%s)',
    (_label, type, module, moduleResolution) => {
      writeFileSync(
        join(consumer, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: {
            module,
            moduleResolution,
            target: 'es2022',
            strict: true,
            experimentalDecorators: true,
            emitDecoratorMetadata: true,
            noEmit: true,
            skipLibCheck: true,
            types: [],
          },
          files: ['consumer.ts'],
        }),
      );
      writeFileSync(
        join(consumer, 'package.json'),
        JSON.stringify({ name: 'consumer', private: true, type }),
      );
      execFileSync(
        process.execPath,
        [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', consumer],
        {
          encoding: 'utf8',
        },
      );
    },
  );
});
