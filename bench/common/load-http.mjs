// The HTTP load generator: autocannon, a warm-up run then a measured run
// against one URL. Around the measured run it reads the app's CPU time from
// /proc, so CPU per request covers exactly the measured window.
//
// A child of the bench driver: gets a 'run' message, answers with 'result'.
import autocannon from 'autocannon';
import { cpuMicros } from './proc.mjs';

function load(url, connections, seconds) {
  return autocannon({ url, connections, duration: seconds, pipelining: 1 });
}

function summary(result) {
  return {
    requests: result.requests.total,
    sent: result.requests.sent,
    seconds: result.duration,
    rps: result.requests.total / result.duration,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors,
    timeouts: result.timeouts,
    non2xx: result.non2xx,
  };
}

process.on('message', async (message) => {
  if (message?.type !== 'run') return;
  const { url, connections, warmupSeconds, seconds, pid } = message;
  try {
    const warmup =
      warmupSeconds > 0 ? summary(await load(url, connections, warmupSeconds)) : undefined;
    process.send({ type: 'measuring' });
    const cpuBefore = cpuMicros(pid);
    const measured = summary(await load(url, connections, seconds));
    const cpuAfter = cpuMicros(pid);
    process.send({
      type: 'result',
      warmup,
      measured,
      appCpuMicros: cpuAfter - cpuBefore,
    });
  } catch (error) {
    process.send({ type: 'result', error: String(error?.stack ?? error) });
  }
});
process.on('disconnect', () => process.exit(0));
process.send({ type: 'ready' });
