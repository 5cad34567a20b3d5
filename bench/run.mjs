// `npm run bench [-- --quick] [-- --only http,rpc] [-- --rounds N] [-- --seconds S] [-- --warmup S]`
// Runs the benches (http, paired, rpc, decorator, export, outage) and prints their tables as
// markdown. Exits non-zero when a bench failed or a traced variant was not
// comparable (for example: it exported no spans). See bench/README.md.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { pinning, pinSelf, ROOT_DIR } from './common/proc.mjs';
import { VARIANTS } from './http/bench.mjs';
import { VARIANTS as RPC_VARIANTS } from './rpc/variants.mjs';

const BENCHES = ['http', 'paired', 'rpc', 'decorator', 'export', 'outage'];

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string', multiple: true },
    rounds: { type: 'string' },
    seconds: { type: 'string' },
    warmup: { type: 'string' },
    platform: { type: 'string', multiple: true },
    transport: { type: 'string', multiple: true },
    variant: { type: 'string', multiple: true },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (values.help) {
  process.stdout.write(
    'usage: npm run bench -- [--quick] [--only http,paired,rpc,decorator,export,outage] [--rounds N]\n' +
      '                        [--seconds S] [--warmup S] [--platform express|fastify] [--transport tcp|nats|rmq]\n' +
      '                        [--variant untraced,nestjs-tracing,...]   (of the http, paired and rpc benches)\n',
  );
  process.exit(0);
}

const list = (v) => (v ?? []).flatMap((x) => x.split(',')).filter(Boolean);
const only = list(values.only);
for (const name of only) {
  if (!BENCHES.includes(name)) {
    process.stderr.write(`unknown bench '${name}'; choose from ${BENCHES.join(', ')}\n`);
    process.exit(2);
  }
}
const variantNames = VARIANTS.map((v) => v.name);
const picked = list(values.variant);
for (const name of picked) {
  if (!variantNames.includes(name) && !RPC_VARIANTS.includes(name)) {
    process.stderr.write(
      `unknown variant '${name}'; --variant picks variants of the http and paired benches ` +
        `(${variantNames.join(', ')}) and of the rpc bench (${RPC_VARIANTS.join(', ')})\n`,
    );
    process.exit(2);
  }
}
// Each bench gets the names that are its own variants (all of them when none is); the rpc bench
// always runs `untraced` too, as its ratios are against it.
const httpVariants = picked.filter((name) => variantNames.includes(name));
const rpcVariants = picked.some((name) => RPC_VARIANTS.includes(name))
  ? RPC_VARIANTS.filter((name) => name === 'untraced' || picked.includes(name))
  : [];
const platforms = list(values.platform);
const transports = list(values.transport);
const selected = only.length > 0 ? BENCHES.filter((b) => only.includes(b)) : BENCHES;
const quick = values.quick;
const rounds = values.rounds ? Number(values.rounds) : undefined;
const seconds = values.seconds ? Number(values.seconds) : undefined;
// Seconds of load before measuring, in the http, paired, rpc and outage benches.
const warmup = values.warmup ? Number(values.warmup) : undefined;
for (const [flag, value, least] of [
  ['--rounds', rounds, 1],
  ['--seconds', seconds, 1],
  ['--warmup', warmup, 1],
]) {
  if (value !== undefined && !(Number.isInteger(value) && value >= least)) {
    process.stderr.write(`${flag} takes a whole number of at least ${least}\n`);
    process.exit(2);
  }
}

const settings = {
  http: {
    rounds: rounds ?? (quick ? 1 : 3),
    warmupSeconds: warmup ?? (quick ? 1 : 3),
    seconds: seconds ?? (quick ? 3 : 10),
    connections: 50,
    platforms: platforms.length ? platforms : undefined,
    variants: httpVariants.length ? httpVariants : undefined,
  },
  paired: {
    rounds: rounds ?? (quick ? 1 : 3),
    windows: quick ? 1 : 3,
    warmupSeconds: warmup ?? (quick ? 1 : 5),
    seconds: seconds ?? (quick ? 3 : 5),
    connections: 50,
    platforms: platforms.length ? platforms : undefined,
    variants: httpVariants.length ? httpVariants : undefined,
  },
  rpc: {
    rounds: rounds ?? (quick ? 1 : 3),
    warmupSeconds: warmup ?? (quick ? 1 : 3),
    seconds: seconds ?? (quick ? 3 : 10),
    inFlight: 50,
    transports: transports.length ? transports : undefined,
    variants: rpcVariants.length ? rpcVariants : undefined,
  },
  decorator: {
    rounds: rounds ?? (quick ? 1 : 11),
    calls: 100_000,
  },
  export: {
    rounds: rounds ?? (quick ? 1 : 5),
    iterations: quick ? 50 : 400,
  },
  outage: {
    rounds: rounds ?? (quick ? 1 : 3),
    warmupSeconds: warmup ?? (quick ? 1 : 3),
    seconds: seconds ?? (quick ? 5 : 20),
    connections: 50,
  },
};

const log = (line) => process.stderr.write(`[bench] ${line}\n`);

function versionOf(pkg) {
  try {
    const require = createRequire(`${ROOT_DIR}package.json`);
    const path = require.resolve(`${pkg}/package.json`);
    return JSON.parse(readFileSync(path, 'utf8')).version;
  } catch {
    return 'not installed';
  }
}

if (!existsSync(`${ROOT_DIR}dist/index.js`)) {
  process.stderr.write(
    'dist/ is missing: run `npm run build` first (the benches load the built package).\n',
  );
  process.exit(2);
}

/** The newest modification time under `dir`, in ms. */
function newest(dir) {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile() || entry.name.endsWith('.spec.ts')) continue;
    latest = Math.max(latest, statSync(`${entry.parentPath ?? entry.path}/${entry.name}`).mtimeMs);
  }
  return latest;
}
const staleDist = newest(`${ROOT_DIR}lib`) > statSync(`${ROOT_DIR}dist/index.js`).mtimeMs;

pinSelf();
const pin = pinning();
const out = [];
const print = (text = '') => {
  out.push(text);
  process.stdout.write(`${text}\n`);
};

print(
  `# nestjs-tracing benchmarks${quick ? ' (--quick: short runs, 1 round; smoke check only)' : ''}`,
);
print();
print(
  `Node ${process.version}, ${pin.cores} cores, load average at start ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}; ` +
    (pin.enabled
      ? 'pinned with taskset: measured process on core 0; load generator, sink and driver on core 1.'
      : `NOT pinned (${pin.reason}): every process shares all cores.`),
);
let gitHead = 'unknown';
try {
  gitHead = execFileSync('git', ['rev-parse', '--short', 'HEAD'], {
    cwd: ROOT_DIR,
    encoding: 'utf8',
  }).trim();
} catch {
  // not a checkout
}
print(
  `nestjs-tracing ${versionOf('nestjs-tracing')} (dist/ of ${gitHead}), @nestjs/core ${versionOf('@nestjs/core')}, ` +
    `@opentelemetry/sdk-trace-node ${versionOf('@opentelemetry/sdk-trace-node')}, ` +
    `@opentelemetry/sdk-node ${versionOf('@opentelemetry/sdk-node')}, nestjs-otel ${versionOf('nestjs-otel')}, ` +
    `autocannon ${versionOf('autocannon')}.`,
);

if (staleDist) {
  print();
  print(
    '**Warning: lib/ has changed since dist/ was built; these numbers are of the older build (`npm run build`).**',
  );
}

const failures = [];
for (const name of selected) {
  const started = Date.now();
  let result;
  try {
    const mod = await import(`./${name}/bench.mjs`);
    result = await mod.run(settings[name], log);
  } catch (error) {
    failures.push(`${name}: ${error?.stack ?? error}`);
    print();
    print(`## ${name}: FAILED`);
    print();
    print('```');
    print(String(error?.message ?? error));
    print('```');
    continue;
  }
  print();
  print(`## ${result.title}`);
  for (const t of result.tables) {
    print();
    print(t);
  }
  if (result.notes?.length) {
    print();
    for (const n of result.notes) print(n.startsWith('  ') ? `    ${n.trim()}` : `- ${n}`);
  }
  print();
  print(`(${name}: ${((Date.now() - started) / 1000).toFixed(0)} s)`);
  failures.push(...result.failures);
}

if (failures.length > 0) {
  print();
  print('## FAILED');
  print();
  for (const f of failures) print(`- ${f.replace(/\n/g, '\n  ')}`);
  process.exitCode = 1;
}
