// Child processes of the bench: spawned pinned to a core (when the machine
// allows), talked to over IPC, read through /proc, and always ended: every
// child is tracked and killed by its own pid when the driver exits.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';

export const BENCH_DIR = fileURLToPath(new URL('..', import.meta.url));
export const ROOT_DIR = fileURLToPath(new URL('../..', import.meta.url));

/** The cores: the measured process on APP_CORE, load generators and the sink on LOAD_CORE. */
export const APP_CORE = 0;
export const LOAD_CORE = 1;

let pinningCache;
/** Whether children are pinned with taskset, and why not when they are not. */
export function pinning() {
  if (pinningCache !== undefined) return pinningCache;
  const cores = availableParallelism();
  if (process.env.BENCH_NO_PIN === '1') {
    pinningCache = { enabled: false, reason: 'BENCH_NO_PIN=1', cores };
  } else if (cores < 2) {
    pinningCache = { enabled: false, reason: `only ${cores} core available`, cores };
  } else if (spawnSync('taskset', ['-c', '0', 'true']).status !== 0) {
    pinningCache = { enabled: false, reason: 'taskset is not available', cores };
  } else {
    pinningCache = { enabled: true, reason: '', cores };
  }
  return pinningCache;
}

/** Moves the driver itself to the load core, so the app's core is the app's alone. */
export function pinSelf() {
  if (!pinning().enabled) return;
  spawnSync('taskset', ['-pc', String(LOAD_CORE), String(process.pid)], { stdio: 'ignore' });
}

/**
 * The driver's environment without OTEL_* variables: every child gets exactly
 * the OpenTelemetry configuration its bench gives it, whatever the shell set.
 */
function inheritedEnv() {
  const env = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('OTEL_')) env[key] = value;
  }
  return env;
}

const children = new Set();

function killAll() {
  for (const child of children) {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  children.clear();
}
process.on('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    killAll();
    process.exit(130);
  });
}

/**
 * A Node child process with an IPC channel. `core` pins it (taskset execs
 * node, so the pid is node's own). Its output is kept (the last 64 KiB) to be
 * shown when something goes wrong.
 */
export class Child {
  constructor(name, script, { args = [], env = {}, core, nodeArgs = [] } = {}) {
    this.name = name;
    this.output = '';
    this.messages = [];
    this.waiters = [];
    const nodeCommand = [...nodeArgs, script, ...args];
    const pinned = core !== undefined && pinning().enabled;
    const command = pinned ? 'taskset' : process.execPath;
    const argv = pinned ? ['-c', String(core), process.execPath, ...nodeCommand] : nodeCommand;
    this.process = spawn(command, argv, {
      cwd: ROOT_DIR,
      env: { ...inheritedEnv(), ...env },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    this.pid = this.process.pid;
    children.add(this.process);
    const keep = (chunk) => {
      this.output = (this.output + chunk.toString()).slice(-65536);
    };
    this.process.stdout.on('data', keep);
    this.process.stderr.on('data', keep);
    this.exited = new Promise((resolve) => {
      this.process.on('exit', (code, signal) => {
        children.delete(this.process);
        this.exitCode = code;
        this.exitSignal = signal;
        resolve({ code, signal });
        for (const waiter of this.waiters.splice(0)) waiter.reject(this.failure('exited'));
      });
    });
    this.process.on('error', (error) => keep(`spawn error: ${error.message}\n`));
    this.process.on('message', (message) => {
      const i = this.waiters.findIndex((w) => w.match(message));
      if (i === -1) this.messages.push(message);
      else this.waiters.splice(i, 1)[0].resolve(message);
    });
  }

  failure(what) {
    const tail = this.output.trim().split('\n').slice(-25).join('\n');
    return new Error(
      `${this.name} (pid ${this.pid}) ${what}${tail ? `; its output:\n${tail}` : ''}`,
    );
  }

  /** The next IPC message of `type` (one already received counts). */
  waitFor(type, timeoutMs = 30_000) {
    const match = (m) => m?.type === type;
    const i = this.messages.findIndex(match);
    if (i !== -1) return Promise.resolve(this.messages.splice(i, 1)[0]);
    if (this.exitCode !== undefined || this.exitSignal) {
      return Promise.reject(this.failure(`exited before sending '${type}'`));
    }
    return new Promise((resolve, reject) => {
      const waiter = {
        match,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(this.failure(`sent no '${type}' within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  send(message) {
    if (this.process.connected) this.process.send(message);
  }

  /** Sends a request and waits for the reply of type `${type}:reply`. */
  async request(type, body = {}, timeoutMs = 10_000) {
    const reply = this.waitFor(`${type}:reply`, timeoutMs);
    this.send({ type, ...body });
    return reply;
  }

  /**
   * SIGTERM, then SIGKILL after `graceMs`. Resolves to how long the process
   * took to exit and whether it had to be killed.
   */
  async stop(graceMs = 15_000) {
    const started = Date.now();
    if (this.exitCode !== undefined || this.exitSignal) return { ms: 0, killed: false };
    try {
      process.kill(this.pid, 'SIGTERM');
    } catch {
      // already gone
    }
    let timer;
    const killed = await Promise.race([
      this.exited.then(() => false),
      new Promise((resolve) => {
        timer = setTimeout(() => resolve(true), graceMs);
      }),
    ]);
    clearTimeout(timer);
    if (killed) {
      try {
        process.kill(this.pid, 'SIGKILL');
      } catch {
        // already gone
      }
      await this.exited;
    }
    return { ms: Date.now() - started, killed };
  }
}

let clockTicks;
/** Clock ticks per second of /proc/<pid>/stat times. */
export function clockTicksPerSecond() {
  if (clockTicks === undefined) {
    const out = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
    clockTicks = Number.parseInt(out.stdout, 10) || 100;
  }
  return clockTicks;
}

/** User + system CPU time of a process so far, in microseconds (from /proc/<pid>/stat). */
export function cpuMicros(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name may hold spaces and parentheses: fields are counted after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]); // utime (14th), stime (15th)
  return (ticks * 1e6) / clockTicksPerSecond();
}

/** VmRSS and VmHWM (peak RSS) of a process, in bytes (from /proc/<pid>/status). */
export function memory(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key) => {
    const m = status.match(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm'));
    return m ? Number(m[1]) * 1024 : undefined;
  };
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

/** Samples a process's RSS every `intervalMs` until stopped. */
export function sampleRss(pid, intervalMs = 1000) {
  const samples = [];
  const take = () => {
    try {
      samples.push({ t: Date.now(), rss: memory(pid).rss });
    } catch {
      // gone
    }
  };
  take();
  const timer = setInterval(take, intervalMs);
  return {
    samples,
    stop() {
      clearInterval(timer);
      take();
      return samples;
    },
  };
}

/** A TCP port that was free a moment ago (and has nothing listening on it now). */
export async function freePort() {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * Runs a one-shot worker of a bench on the app core: waits for its 'ready', sends it `message`
 * and returns its 'result', stopping it whatever happens.
 */
export async function runWorker(name, script, message, { nodeArgs = [] } = {}) {
  const worker = new Child(name, script, { core: APP_CORE, nodeArgs });
  try {
    await worker.waitFor('ready', 60_000);
    worker.send(message);
    return await worker.waitFor('result', 600_000);
  } finally {
    await worker.stop(5000);
  }
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Starts the OTLP sink on the load core; `counts()` reads its totals. */
export async function startSink({ hang = false } = {}) {
  const child = new Child('sink', `${BENCH_DIR}common/sink.mjs`, {
    core: LOAD_CORE,
    args: hang ? ['--hang'] : [],
  });
  const { port, hangPort } = await child.waitFor('ready');
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    child,
    endpoint,
    hangEndpoint: hangPort === undefined ? undefined : `http://127.0.0.1:${hangPort}`,
    async counts() {
      const res = await fetch(`${endpoint}/count`);
      return res.json();
    },
    stop: () => child.stop(5000),
  };
}

/** What changed in the sink's counts between two readings. */
export function sinkDelta(before, after) {
  const diff = (a = {}, b = {}) => {
    const out = {};
    for (const [k, v] of Object.entries(b)) {
      const d = v - (a[k] ?? 0);
      if (d !== 0) out[k] = d;
    }
    return out;
  };
  return {
    spans: after.spans - before.spans,
    requests: after.requests - before.requests,
    rejected: after.rejected - before.rejected,
    byService: diff(before.byService, after.byService),
    byName: diff(before.byName, after.byName),
  };
}
