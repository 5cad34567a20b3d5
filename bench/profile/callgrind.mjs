// Instructions per request of one variant of the http bench's app, counted by valgrind's
// callgrind: what a change costs or saves when the VM's speed is too noisy for req/s to tell.
// Not part of `npm run bench`; needs valgrind (Debian: `apt-get install valgrind`).
//
//   node bench/profile/callgrind.mjs --variant nestjs-tracing --platform fastify --route /hello
//     [--warmup 8000] [--requests 3000] [--options '{"exporter":"none"}'] [--top 30] [--jit]
//
// The app runs under callgrind with instrumentation off while it starts and warms up, on for the
// measured requests only (8 keep-alive connections), and each thread is counted apart: V8's
// compiler threads (recognised by their functions) are left out of the total, as their share
// moves with the JIT's timing; the export worker's thread is counted. Prints the total, each
// thread, the functions with the most instructions of their own, and the V8 runtime functions
// called from JavaScript (`Runtime_*`, reached through `CEntry`) with their calls per request,
// which is where a cache that gave up shows. `--jit` names JavaScript frames through a
// `--perf-basic-prof` map (approximate: V8 moves code).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { BENCH_DIR, ROOT_DIR, startSink } from '../common/proc.mjs';

const { values: opts } = parseArgs({
  options: {
    variant: { type: 'string', default: 'nestjs-tracing' },
    platform: { type: 'string', default: 'fastify' },
    route: { type: 'string', default: '/hello' },
    warmup: { type: 'string', default: '8000' },
    requests: { type: 'string', default: '3000' },
    options: { type: 'string' },
    top: { type: 'string', default: '30' },
    jit: { type: 'boolean', default: false },
  },
});
for (const tool of ['valgrind', 'callgrind_control', 'callgrind_annotate']) {
  if (spawnSync(tool, ['--help'], { stdio: 'ignore' }).error) {
    console.error(`${tool} not found: install valgrind (Debian: apt-get install valgrind).`);
    process.exit(2);
  }
}

const dir = mkdtempSync(join(tmpdir(), 'nestjs-tracing-callgrind-'));
const sink = await startSink();
const app = spawn(
  'valgrind',
  [
    '--tool=callgrind',
    '--instr-atstart=no',
    '--separate-threads=yes',
    `--callgrind-out-file=${join(dir, 'callgrind.out')}`,
    process.execPath,
    ...(opts.jit ? ['--perf-basic-prof'] : []),
    `${BENCH_DIR}http/app.mjs`,
  ],
  {
    cwd: dir, // where V8 writes any log of its own
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    env: {
      ...process.env,
      BENCH_VARIANT: opts.variant,
      BENCH_PLATFORM: opts.platform,
      OTEL_EXPORTER_OTLP_ENDPOINT: sink.endpoint,
      ...(opts.options ? { BENCH_TRACING_OPTIONS: opts.options } : {}),
    },
  },
);
let stderr = '';
app.stderr.on('data', (chunk) => (stderr = (stderr + chunk).slice(-4000)));
const exited = new Promise((resolve) => app.on('exit', resolve));
try {
  const port = await Promise.race([
    new Promise((resolve) => app.on('message', (m) => m?.type === 'ready' && resolve(m.port))),
    exited.then((code) => Promise.reject(new Error(`app exited (${code}):\n${stderr}`))),
  ]);
  const url = `http://127.0.0.1:${port}${opts.route}`;
  const load = (amount) => autocannon({ url, connections: 8, amount, timeout: 120 });
  await load(Number(opts.warmup));
  execFileSync('callgrind_control', ['-i', 'on', String(app.pid)], { stdio: 'ignore' });
  const measured = await load(Number(opts.requests));
  execFileSync('callgrind_control', ['-i', 'off', String(app.pid)], { stdio: 'ignore' });
  app.kill('SIGTERM');
  await exited;
  report(measured.requests.total, measured.non2xx, app.pid);
} finally {
  app.kill('SIGKILL');
  await sink.stop();
  rmSync(dir, { recursive: true, force: true });
  if (opts.jit) rmSync(`/tmp/perf-${app.pid}.map`, { force: true });
}

function report(requests, non2xx, pid) {
  const per = (n) => `${(n / requests / 1000).toFixed(1)}k`;
  const threads = readdirSync(dir)
    .filter((f) => f.startsWith('callgrind.out'))
    .map((f) => {
      const text = readFileSync(join(dir, f), 'utf8');
      const total = Number(/^totals: (\d+)/m.exec(text)?.[1] ?? 0);
      const compiler = /v8::internal::compiler::/.test(text) && !/Builtins_JSEntry/.test(text);
      return { file: join(dir, f), thread: /^thread: (\d+)/m.exec(text)?.[1], total, compiler };
    })
    .filter((t) => t.total > 0);
  const counted = threads.filter((t) => !t.compiler);
  const total = counted.reduce((sum, t) => sum + t.total, 0);
  console.log(
    `${opts.variant} ${opts.platform} ${opts.route}${opts.options ? ` ${opts.options}` : ''}: ` +
      `${per(total)} instructions a request (${requests} requests, ${non2xx} not 2xx)`,
  );
  console.log(
    'threads: ' +
      threads
        .map((t) => `${t.thread}${t.compiler ? ' (compiler, left out)' : ''} ${per(t.total)}`)
        .join(', '),
  );
  const names = opts.jit ? jitNames(pid) : undefined;
  // Threads that did next to nothing in the window (the libuv poller, idle helpers) are skipped.
  for (const t of counted.filter((c) => c.total >= total / 100)) {
    console.log(`\nthread ${t.thread}: instructions of their own, per request`);
    const flat = annotate(t.file, false);
    const own = new Map();
    for (const { cost, name } of flat.lines) {
      const key = names?.(name) ?? name;
      own.set(key, (own.get(key) ?? 0) + cost);
    }
    for (const [name, cost] of [...own].sort((a, b) => b[1] - a[1]).slice(0, Number(opts.top))) {
      console.log(`${(cost / requests).toFixed(0).padStart(9)}  ${name}`);
    }
    const runtime = runtimeCalls(annotate(t.file, true).text).filter(
      (r) => r.calls >= requests / 10,
    );
    if (runtime.length > 0) {
      console.log(
        `\nthread ${t.thread}: V8 runtime functions called from JavaScript at least once in 10 requests`,
      );
      for (const { name, calls, cost } of runtime) {
        console.log(
          `${(cost / requests).toFixed(0).padStart(9)}  ${(calls / requests).toFixed(1).padStart(6)} calls  ${name}`,
        );
      }
    }
  }
}

function annotate(file, tree) {
  const text = execFileSync(
    'callgrind_annotate',
    ['--threshold=100', ...(tree ? ['--tree=caller'] : []), file],
    { maxBuffer: 512 * 1024 * 1024, encoding: 'utf8' },
  );
  const lines = [];
  for (const line of text.split('\n')) {
    const m = /^\s*([\d,]+) \(\s*[\d.]+%\)\s+(?:\?\?\?:)?(.*?)(?: \[[^\]]*\])?$/.exec(line);
    if (m && !m[2].includes('PROGRAM TOTALS')) {
      lines.push({ cost: Number(m[1].replaceAll(',', '')), name: m[2] });
    }
  }
  return { text, lines };
}

/** Runtime functions with their inclusive cost and the calls that reached them through CEntry. */
function runtimeCalls(tree) {
  const out = [];
  for (const block of tree.split('\n\n')) {
    const self = /\*\s+\?\?\?:v8::internal::(Runtime_\w+)/.exec(block);
    if (!self) continue;
    let calls = 0;
    let cost = 0;
    for (const m of block.matchAll(/^\s*([\d,]+) .*< \?\?\?:Builtins_CEntry\S* \(([\d,]+)x\)/gm)) {
      cost += Number(m[1].replaceAll(',', ''));
      calls += Number(m[2].replaceAll(',', ''));
    }
    if (calls > 0) out.push({ name: self[1], calls, cost });
  }
  return out.sort((a, b) => b.cost - a.cost);
}

/** Names JIT frames (`0x…` addresses) from the app's perf map; others are left as they are. */
function jitNames(pid) {
  let entries;
  try {
    entries = readFileSync(`/tmp/perf-${pid}.map`, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => {
        const [start, size, ...name] = line.split(' ');
        return {
          start: parseInt(start, 16),
          end: parseInt(start, 16) + parseInt(size, 16),
          name: name.join(' '),
        };
      })
      .sort((a, b) => a.start - b.start);
  } catch {
    return undefined;
  }
  return (name) => {
    const m = /^0x([0-9a-f]+)/.exec(name);
    if (!m) return undefined;
    const at = parseInt(m[1], 16);
    let lo = 0;
    let hi = entries.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (entries[mid].start <= at) lo = mid;
      else hi = mid - 1;
    }
    const entry = entries[lo];
    return entry && entry.start <= at && at < entry.end
      ? entry.name.replace(ROOT_DIR, '').replace(/^JS:/, '')
      : '<JIT code>';
  };
}
