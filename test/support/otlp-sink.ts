import { createServer, type Server } from 'node:http';
import protobuf from 'protobufjs/minimal.js';

/** One span as the sink received it. */
export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  serviceName: string | undefined;
  /** The resource's string attributes. */
  resource: Record<string, string>;
}

/**
 * A real OTLP/HTTP trace receiver on a loopback port: accepts `POST /v1/traces`
 * in protobuf or JSON, like a collector, and keeps the spans. The protobuf walk
 * reads only the fields the tests look at (field numbers from the OTLP protos).
 */
export class OtlpSink {
  readonly spans: ReceivedSpan[] = [];
  /** Headers of every export request, e.g. to see OTEL_EXPORTER_OTLP_HEADERS arrive. */
  readonly headers: Array<Record<string, string | string[] | undefined>> = [];
  requests = 0;
  private server: Server | undefined;

  async start(): Promise<string> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        this.requests++;
        this.headers.push(req.headers);
        try {
          const type = String(req.headers['content-type'] ?? '');
          if (type.includes('json')) this.spans.push(...decodeJson(body));
          else this.spans.push(...decodeProtobuf(body));
          res.writeHead(200, {
            'content-type': type.includes('json') ? 'application/json' : 'application/x-protobuf',
          });
          res.end(type.includes('json') ? '{}' : undefined);
        } catch (error) {
          res.writeHead(400);
          res.end(String(error));
        }
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    const { port } = this.server.address() as { port: number };
    return `http://127.0.0.1:${port}`;
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) =>
      this.server ? this.server.close(() => resolve()) : resolve(),
    );
  }
}

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

/** The spans of an OTLP/protobuf ExportTraceServiceRequest, in the order they were written. */
export function decodeProtobuf(body: Uint8Array): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  // ExportTraceServiceRequest.resource_spans = 1
  forEachField(body, (field, reader) => {
    if (field !== 1) return false;
    const resourceSpans = reader.bytes();
    let resource: Record<string, string> = {};
    const scopeSpansList: Uint8Array[] = [];
    forEachField(resourceSpans, (f, r) => {
      if (f === 1) resource = readStringAttributes(r.bytes());
      else if (f === 2) scopeSpansList.push(r.bytes());
      else return false;
      return true;
    });
    for (const scopeSpans of scopeSpansList) {
      forEachField(scopeSpans, (f, r) => {
        if (f !== 2) return false; // spans
        const span: ReceivedSpan = {
          traceId: '',
          spanId: '',
          parentSpanId: '',
          name: '',
          serviceName: resource['service.name'],
          resource,
        };
        forEachField(r.bytes(), (sf, sr) => {
          if (sf === 1) span.traceId = hex(sr.bytes());
          else if (sf === 2) span.spanId = hex(sr.bytes());
          else if (sf === 4) span.parentSpanId = hex(sr.bytes());
          else if (sf === 5) span.name = sr.string();
          else return false;
          return true;
        });
        out.push(span);
        return true;
      });
    }
    return true;
  });
  return out;
}

/** Resource.attributes = 1 (KeyValue: key = 1, value = 2 → AnyValue.string_value = 1). */
function readStringAttributes(resource: Uint8Array): Record<string, string> {
  const attributes: Record<string, string> = {};
  forEachField(resource, (f, r) => {
    if (f !== 1) return false;
    let key = '';
    let value: string | undefined;
    forEachField(r.bytes(), (kf, kr) => {
      if (kf === 1) key = kr.string();
      else if (kf === 2) {
        forEachField(kr.bytes(), (vf, vr) => {
          if (vf !== 1) return false;
          value = vr.string();
          return true;
        });
      } else return false;
      return true;
    });
    if (value !== undefined) attributes[key] = value;
    return true;
  });
  return attributes;
}

/** Calls `visit` per field; a visitor returning false leaves the field to be skipped. */
function forEachField(
  bytes: Uint8Array,
  visit: (field: number, reader: protobuf.Reader) => boolean,
): void {
  const reader = protobuf.Reader.create(bytes);
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    if (!visit(tag >>> 3, reader)) reader.skipType(tag & 7);
  }
}

interface JsonRequest {
  resourceSpans?: Array<{
    resource?: { attributes?: Array<{ key: string; value: { stringValue?: string } }> };
    scopeSpans?: Array<{
      spans?: Array<{ traceId: string; spanId: string; parentSpanId?: string; name: string }>;
    }>;
  }>;
}

function decodeJson(body: Buffer): ReceivedSpan[] {
  const parsed = JSON.parse(body.toString('utf8')) as JsonRequest;
  const out: ReceivedSpan[] = [];
  for (const rs of parsed.resourceSpans ?? []) {
    const resource: Record<string, string> = {};
    for (const a of rs.resource?.attributes ?? []) {
      if (a.value.stringValue !== undefined) resource[a.key] = a.value.stringValue;
    }
    const serviceName = resource['service.name'];
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          traceId: s.traceId,
          spanId: s.spanId,
          parentSpanId: s.parentSpanId ?? '',
          name: s.name,
          serviceName,
          resource,
        });
      }
    }
  }
  return out;
}
