import 'reflect-metadata';
import { Controller, Get, Logger, type LoggerService } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { diag, DiagLogLevel } from '@opentelemetry/api';
import { ExportResultCode } from '@opentelemetry/core';
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';
import { TracingModule } from '../tracing.module.js';
import { exportErrorText, registerDiagLogger, type DiagSink } from './diag-logger.js';

function recordingSink(): DiagSink & { lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    error: (m) => lines.push(`error ${m}`),
    warn: (m) => lines.push(`warn ${m}`),
    log: (m) => lines.push(`log ${m}`),
    debug: (m) => lines.push(`debug ${m}`),
    verbose: (m) => lines.push(`verbose ${m}`),
  };
}

describe('registerDiagLogger', () => {
  afterEach(() => diag.disable());

  it("says OpenTelemetry's warnings and errors once a minute each, and unregisters", () => {
    const sink = recordingSink();
    const unregister = registerDiagLogger(sink, {});
    expect(unregister).toBeDefined();
    diag.error('export failed', new Error('Unauthorized'));
    diag.error('export failed', new Error('Unauthorized'));
    diag.warn('Dropped 3 spans because maxQueueSize reached');
    diag.info('not at warn');
    expect(sink.lines).toEqual([
      'error OpenTelemetry: export failed Error: Unauthorized',
      'warn OpenTelemetry: Dropped 3 spans because maxQueueSize reached',
    ]);
    unregister!();
    diag.warn('after');
    expect(sink.lines).toHaveLength(2);
  });

  it("says an exporter error's status code and answer, from OpenTelemetry's JSON of it", () => {
    const sink = recordingSink();
    registerDiagLogger(sink, {});
    diag.error(
      JSON.stringify({
        name: 'OTLPExporterError',
        message: 'Unauthorized',
        code: 401,
        data: 'invalid api key',
        stack: 'OTLPExporterError: Unauthorized\n    at ...',
      }),
    );
    expect(sink.lines).toEqual([
      'error OpenTelemetry: OTLPExporterError: Unauthorized (code 401) invalid api key',
    ]);
  });

  it('takes its level from OTEL_LOG_LEVEL, and none registers nothing', () => {
    const sink = recordingSink();
    registerDiagLogger(sink, { OTEL_LOG_LEVEL: 'debug' });
    diag.debug('a detail');
    diag.verbose('too much');
    expect(sink.lines).toContain('debug OpenTelemetry: a detail');
    expect(sink.lines.filter((line) => line.includes('too much'))).toEqual([]);
    diag.disable();
    expect(registerDiagLogger(sink, { OTEL_LOG_LEVEL: 'NONE' })).toBeUndefined();
  });

  it('warns of an invalid OTEL_LOG_LEVEL and uses warn', () => {
    const sink = recordingSink();
    registerDiagLogger(sink, { OTEL_LOG_LEVEL: 'loud' });
    diag.info('not at warn');
    diag.warn('at warn');
    expect(sink.lines).toEqual([
      "warn OTEL_LOG_LEVEL value 'loud' is not one of none, error, warn, info, debug, verbose, all; warn is used.",
      'warn OpenTelemetry: at warn',
    ]);
  });

  it('leaves a diag logger the application registered in place', () => {
    const own: string[] = [];
    diag.setLogger(
      {
        error: (m) => own.push(m),
        warn: (m) => own.push(m),
        info: () => undefined,
        debug: () => undefined,
        verbose: () => undefined,
      },
      DiagLogLevel.WARN,
    );
    const sink = recordingSink();
    expect(registerDiagLogger(sink, {})).toBeUndefined();
    diag.warn('to the app');
    expect(own).toEqual(['to the app']);
    expect(sink.lines).toEqual([]);
  });
});

@Controller()
class HelloController {
  @Get('hello')
  hello(): string {
    return 'hello';
  }
}

describe('exportErrorText', () => {
  it.each([
    ['Bad Request', 400, 'rejected', 'Bad Request (code 400) rejected'],
    // The code is said once, where the text does not name it as a word of its own.
    [
      'connect ECONNREFUSED 127.0.0.1:4318',
      'ECONNREFUSED',
      undefined,
      'connect ECONNREFUSED 127.0.0.1:4318',
    ],
    ['14 UNAVAILABLE: no connection', 14, undefined, '14 UNAVAILABLE: no connection'],
    [
      'Payload Too Large (max 4000 bytes)',
      400,
      '',
      'Payload Too Large (max 4000 bytes) (code 400)',
    ],
    ['connect to 10.0.0.4 failed', 4, undefined, 'connect to 10.0.0.4 failed (code 4)'],
  ])('says %p with code %p and answer %p as %p', (text, code, data, expected) => {
    expect(exportErrorText(text, code, data)).toBe(expected);
  });
});

describe('a collector that refuses every export', () => {
  it("is said in the application's log, not lost in silence", async () => {
    const logged: string[] = [];
    const logger: LoggerService = {
      log: () => undefined,
      error: (m: unknown) => void logged.push(String(m)),
      warn: (m: unknown) => void logged.push(String(m)),
    };
    Logger.overrideLogger(logger);
    const refusing: SpanExporter = {
      export: (_spans, done) =>
        done({ code: ExportResultCode.FAILED, error: new Error('Unauthorized (401)') }),
      shutdown: async () => undefined,
    };
    const moduleRef = await Test.createTestingModule({
      imports: [TracingModule.forRoot({ exporter: refusing, batch: { scheduledDelayMillis: 10 } })],
      controllers: [HelloController],
    }).compile();
    const app = moduleRef.createNestApplication({ logger });
    try {
      await app.listen(0, '127.0.0.1');
      await fetch(`${await app.getUrl()}/hello`);
      const deadline = Date.now() + 2000;
      while (!logged.some((m) => m.includes('Unauthorized (401)')) && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      expect(logged).toContain('OpenTelemetry: Error: Unauthorized (401)');
    } finally {
      await app.close();
      Logger.overrideLogger(false);
    }
  });
});
