import { Controller, Injectable, Module } from '@nestjs/common';
import { EventPattern, Payload } from '@nestjs/microservices';
import { Trace, TraceService, TracingModule } from 'nestjs-tracing';
import { PATTERNS } from '../../../libs/shop/src/index.js';

/** A small listener: keeps what the shop did, in memory. */
@Injectable()
export class AuditLog {
  readonly entries: unknown[] = [];

  constructor(private readonly tracing: TraceService) {}

  @Trace()
  append(entry: unknown): void {
    this.entries.push(entry);
    this.tracing.setAttribute('audit.entries', this.entries.length);
  }
}

@Controller()
export class AuditController {
  constructor(private readonly log: AuditLog) {}

  @EventPattern(PATTERNS.audit)
  onAudit(@Payload() entry: unknown): void {
    this.log.append(entry);
  }
}

@Module({
  imports: [TracingModule.forRoot({ serviceName: 'audit' })],
  controllers: [AuditController],
  providers: [AuditLog],
})
export class AuditModule {}
