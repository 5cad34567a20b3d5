// bench/paired: the app of bench/http, each variant running at the same time as
// the untraced app on the same core, both under load at once. The scheduler
// splits the core between them, so whatever slows the machine down slows both
// alike, and the ratio of their CPU per request holds where the req/s of
// back-to-back runs moves by up to 30% on a busy VM. See ../README.md.
import { readFileSync } from 'node:fs';
import { APP_CORE, BENCH_DIR, Child, LOAD_CORE, sinkDelta, startSink } from '../common/proc.mjs';
import { median, num, ratio, table } from '../common/report.mjs';
import { MIN_EXPORTED_SHARE, selectVariants, startApp, VARIANTS } from '../http/bench.mjs';

const LOAD = `${BENCH_DIR}common/load-http.mjs`;
/** How many variants share the core with the untraced app in one group. */
const GROUP_SIZE = 2;
const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** Busy and total clock ticks of one core so far (from /proc/stat). */
function coreTicks(core) {
  const line = readFileSync('/proc/stat', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`cpu${core} `));
  if (line === undefined) return undefined;
  const t = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = t[3] + (t[4] ?? 0); // idle + iowait
  const total = t.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/** One load window on every app of a group at once; resolves to each app's measurement. */
async function window(members, route, settings, warmupSeconds) {
  for (const m of members) {
    m.load.send({
      type: 'run',
      url: `http://127.0.0.1:${m.port}${route}`,
      connections: settings.connections,
      warmupSeconds,
      seconds: settings.seconds,
      pid: m.app.pid,
    });
  }
  const timeout = (warmupSeconds + settings.seconds + 60) * 1000;
  await Promise.all(members.map((m) => m.load.waitFor('measuring', timeout)));
  const before = coreTicks(APP_CORE);
  const results = await Promise.all(members.map((m) => m.load.waitFor('result', timeout)));
  const after = coreTicks(APP_CORE);
  const busy =
    before && after && after.total > before.total
      ? (after.busy - before.busy) / (after.total - before.total)
      : undefined;
  return results.map((r, i) => {
    if (r.error) throw new Error(`autocannon failed on ${members[i].variant.name}: ${r.error}`);
    const m = r.measured;
    const warm = r.warmup ?? { requests: 0, errors: 0, non2xx: 0 };
    return {
      requests: warm.requests + m.requests,
      bad: m.errors + m.non2xx + warm.errors + warm.non2xx,
      rps: m.rps,
      cpuPerRequest: m.requests > 0 ? r.appCpuMicros / m.requests : undefined,
      busy,
    };
  });
}

/** Runs `untraced` and the variants of `group` side by side; returns per-variant windows. */
async function runGroup({ group, platform, route, sink, settings, failures }) {
  const members = [];
  const before = await sink.counts();
  try {
    for (const variant of group) {
      const member = { variant, windows: [] };
      members.push(member);
      member.app = startApp(variant, platform, sink, `bench-paired-${variant.name}`);
      ({ port: member.port } = await member.app.waitFor('ready', 60_000));
      member.load = new Child(`autocannon ${variant.name}`, LOAD, { core: LOAD_CORE });
      await member.load.waitFor('ready');
    }
    for (let w = 0; w < settings.windows; w++) {
      const results = await window(members, route, settings, w === 0 ? settings.warmupSeconds : 0);
      results.forEach((r, i) => members[i].windows.push(r));
    }
  } finally {
    for (const m of members) await m.load?.stop(5000);
    for (const m of members) m.stopped = await m.app?.stop(20_000);
  }
  const delta = sinkDelta(before, await sink.counts());
  const label = `${platform} ${route}`;
  for (const m of members) {
    const requests = m.windows.reduce((a, r) => a + r.requests, 0);
    const bad = m.windows.reduce((a, r) => a + r.bad, 0);
    const k = `paired ${label} ${m.variant.name}`;
    if (bad > 0) failures.push(`${k}: ${bad} errors or non-2xx responses.`);
    if (m.stopped?.killed) failures.push(`${k}: the app did not exit on SIGTERM.`);
    const produced = m.variant.spans?.[label];
    m.produced = produced;
    m.spans = delta.byService[`bench-paired-${m.variant.name}`] ?? 0;
    m.spansPerRequest = requests > 0 ? m.spans / requests : undefined;
    if (produced !== undefined && m.spans < requests * produced * MIN_EXPORTED_SHARE) {
      failures.push(
        `${k}: exported ${m.spans} spans for ${requests} requests (expected at least ` +
          `${requests * produced}); a variant that does not export is not comparable.`,
      );
    }
  }
  return members;
}

export async function run(settings, log) {
  const failures = [];
  const notes = [];
  const baseline = VARIANTS.find((v) => v.name === 'untraced');
  const others = selectVariants(settings, notes).filter((v) => v !== baseline);
  const groups = [];
  for (let i = 0; i < others.length; i += GROUP_SIZE) {
    groups.push([baseline, ...others.slice(i, i + GROUP_SIZE)]);
  }
  const platforms = settings.platforms ?? ['express', 'fastify'];
  const routes = ['/hello', '/work'];

  // 'platform route variant' → the variant's group mates and its result in each round
  const results = new Map();
  const sink = await startSink();
  try {
    for (let round = 1; round <= settings.rounds; round++) {
      for (const platform of platforms) {
        for (const route of routes) {
          for (const group of groups) {
            const names = group.map((v) => v.name).join(' + ');
            log(`paired round ${round}/${settings.rounds}: ${platform} ${route}: ${names}`);
            let members;
            try {
              members = await runGroup({ group, platform, route, sink, settings, failures });
            } catch (error) {
              failures.push(
                `paired ${platform} ${route} (${names}), round ${round}: ${error.message}`,
              );
              continue;
            }
            const [base, ...variants] = members;
            for (const m of variants) {
              const k = `${platform} ${route} ${m.variant.name}`;
              if (!results.has(k)) results.set(k, { platform, route, variants, runs: [] });
              const ratios = m.windows.map(
                (r, i) => base.windows[i].cpuPerRequest / r.cpuPerRequest,
              );
              results.get(k).runs.push({
                ratio: median(ratios),
                base: median(base.windows.map((r) => r.cpuPerRequest)),
                cpu: median(m.windows.map((r) => r.cpuPerRequest)),
                rps: median(m.windows.map((r) => r.rps)),
                busy: median(m.windows.map((r) => r.busy * 100)),
                spansPerRequest: m.spansPerRequest,
                produced: m.produced,
              });
            }
          }
        }
      }
    }
  } finally {
    await sink.stop();
  }

  const rows = [];
  for (const [k, { platform, route, variants, runs }] of results) {
    const name = k.slice(`${platform} ${route} `.length);
    const produced = runs[0].produced;
    rows.push([
      platform,
      route,
      name,
      variants
        .map((o) => o.variant.name)
        .filter((n) => n !== name)
        .join(', ') || '–',
      num(median(runs.map((r) => r.base)), 1),
      num(median(runs.map((r) => r.cpu)), 1),
      ratio(median(runs.map((r) => r.ratio))),
      num(median(runs.map((r) => r.rps))),
      num(median(runs.map((r) => r.busy))),
      produced === undefined
        ? '–'
        : `${num(median(runs.map((r) => r.spansPerRequest)), 2)} / ${produced}`,
      runs.map((r) => ratio(r.ratio)).join(' / '),
    ]);
  }

  const columns = [
    ['platform', 'l'],
    ['route', 'l'],
    ['variant', 'l'],
    ['also on the core', 'l'],
    ['untraced CPU µs/req', 'r'],
    ['variant CPU µs/req', 'r'],
    ['ratio (untraced ÷ variant CPU)', 'r'],
    ['variant req/s (core shared)', 'r'],
    ['app core busy %', 'r'],
    ['spans/req exported / produced', 'r'],
    ['ratio per round', 'r'],
  ];
  return {
    title: `HTTP, paired: each variant and the untraced app at once on core ${APP_CORE}, autocannon -c ${settings.connections} on each`,
    tables: [table(columns, rows)],
    notes: [
      ...notes,
      `Each group (the untraced app and up to ${GROUP_SIZE} variants) runs at the same time on one core, ` +
        `each app under its own load: ${plural(settings.windows, 'window')} of ${settings.seconds} s after ` +
        `a ${settings.warmupSeconds} s warm-up, in ${plural(settings.rounds, 'round')} of fresh processes. ` +
        "A round's ratio is the median over its windows of the untraced app's CPU per request over " +
        "the variant's: what the req/s ratio would be for a CPU-bound app that had the core to " +
        'itself. The table shows the median over rounds. Windows of one round agree within ~2%; ' +
        'rounds differ by up to ~5%, as each process compiles its hot code its own way. ' +
        '"also on the core": the other variant of the group, besides the untraced app.',
      'An "app core busy %" below ~95 means the load generator, not the core, set the pace; ' +
        'CPU per request then still compares the variants, under a lighter load.',
    ],
    failures,
  };
}
