import { diag, DiagLogLevel, type DiagLogger } from '@opentelemetry/api';

/** Where the messages go: Nest's `Logger` of the module. */
export interface DiagSink {
  warn(message: string): void;
  log(message: string): void;
  error?(message: string): void;
  debug?(message: string): void;
  verbose?(message: string): void;
}

/** The OpenTelemetry API's registry of globals (major version 1), where `diag` keeps its logger. */
const API_GLOBALS = Symbol.for('opentelemetry.js.api.1');

function registeredDiagLogger(): unknown {
  return (globalThis as { [API_GLOBALS]?: { diag?: unknown } })[API_GLOBALS]?.diag;
}

/** The same message is said at most once in this many ms. */
const REPEAT_AFTER_MS = 60_000;
const MAX_REMEMBERED = 100;

/**
 * Lets OpenTelemetry's own diagnostics reach the application's log, through Nest's `Logger`:
 * an export the collector refused (a wrong API key answered 401, say), spans dropped from a full
 * queue, an invalid exporter variable. Without a diag logger OpenTelemetry says these to nobody,
 * and every span is lost without a line in the log. At `OTEL_LOG_LEVEL` (default `warn`; `none`
 * turns it off), a message repeated within a minute said once.
 *
 * Only when no diag logger is registered yet: one the application (or `@opentelemetry/sdk-node`)
 * registered stays. Returns what unregisters it (unless another replaced it meanwhile), or
 * undefined when none was registered.
 */
export function registerDiagLogger(
  sink: DiagSink,
  env: Record<string, string | undefined> = process.env,
): (() => void) | undefined {
  if (registeredDiagLogger() !== undefined) return undefined;
  const raw = env.OTEL_LOG_LEVEL?.trim();
  let level = DiagLogLevel.WARN;
  if (raw !== undefined && raw !== '') {
    const parsed = (DiagLogLevel as unknown as Record<string, unknown>)[raw.toUpperCase()];
    if (typeof parsed !== 'number') {
      sink.warn(
        `OTEL_LOG_LEVEL value '${raw}' is not one of none, error, warn, info, debug, verbose, all; warn is used.`,
      );
    } else {
      level = parsed;
    }
  }
  if (level === DiagLogLevel.NONE) return undefined;
  const said = new Map<string, number>();
  const say = (write: (message: string) => void) => {
    return (message: string, ...args: unknown[]) => {
      const text = [message, ...args].map(describe).join(' ');
      const now = Date.now();
      const last = said.get(text);
      if (last !== undefined && now - last < REPEAT_AFTER_MS) return;
      if (said.size >= MAX_REMEMBERED) said.clear();
      said.set(text, now);
      write(`OpenTelemetry: ${text}`);
    };
  };
  const logger: DiagLogger = {
    error: say((m) => (sink.error ? sink.error(m) : sink.warn(m))),
    warn: say((m) => sink.warn(m)),
    info: say((m) => sink.log(m)),
    debug: say((m) => (sink.debug ? sink.debug(m) : sink.log(m))),
    verbose: say((m) => (sink.verbose ? sink.verbose(m) : sink.log(m))),
  };
  diag.setLogger(logger, { logLevel: level, suppressOverrideMessage: true });
  const ours = registeredDiagLogger();
  return () => {
    if (registeredDiagLogger() === ours) diag.disable();
  };
}

/**
 * A message or argument as one line. OpenTelemetry's error handler hands an exception over as
 * JSON of its name, message and stack: said by its name and message.
 */
function describe(value: unknown): string {
  if (value instanceof Error) return `${value.name}: ${value.message}`;
  if (typeof value === 'string') {
    if (!value.startsWith('{"')) return value;
    try {
      const { name, message, code, data } = JSON.parse(value) as Record<string, unknown>;
      if (typeof message === 'string') {
        return exportErrorText(
          typeof name === 'string' ? `${name}: ${message}` : message,
          code,
          data,
        );
      }
    } catch {
      // Not JSON after all.
    }
    return value;
  }
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/**
 * An export's error as one line: its text, and what an OTLPExporterError also has, the
 * collector's status code and what it answered (printable, the first 500 characters).
 */
export function exportErrorText(text: string, code: unknown, data: unknown): string {
  let line = text;
  if ((typeof code === 'number' || typeof code === 'string') && !saysCode(line, String(code))) {
    line += ` (code ${code})`;
  }
  if (typeof data === 'string' && data !== '') line += ` ${printable(data.slice(0, 500))}`;
  return line;
}

/** Whether `text` names `code` as a word of its own (`connect ECONNREFUSED ...`, `14 UNAVAILABLE`). */
function saysCode(text: string, code: string): boolean {
  for (let at = text.indexOf(code); at !== -1; at = text.indexOf(code, at + 1)) {
    const before = at === 0 ? '' : text[at - 1]!;
    const after = text[at + code.length] ?? '';
    if (!/[\w.]/.test(before) && !/[\w.]/.test(after)) return true;
  }
  return false;
}

/** Control characters (line breaks, a binary answer's bytes) as spaces. */
function printable(text: string): string {
  let out = '';
  for (const char of text) {
    const code = char.charCodeAt(0);
    out += code < 0x20 || (code >= 0x7f && code < 0xa0) ? ' ' : char;
  }
  return out;
}
