// OTLP trace export requests, protobuf or JSON, turned into the store's spans
// (see `StoredSpan` in trace-store.mjs).
import { Buffer } from 'node:buffer';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

const schema = protobuf.loadSync(fileURLToPath(new URL('./otlp.proto', import.meta.url)));
const ExportTraceServiceRequest = schema.lookupType('viewer.otlp.ExportTraceServiceRequest');
const ExportTraceServiceResponse = schema.lookupType('viewer.otlp.ExportTraceServiceResponse');

/** OTLP's SpanKind values, by number. */
export const SPAN_KINDS = ['unspecified', 'internal', 'server', 'client', 'producer', 'consumer'];
/** OTLP's StatusCode values, by number. */
export const STATUS_CODES = ['UNSET', 'OK', 'ERROR'];

/** A body that is not an export request; the viewer answers it with 400. */
export class OtlpDecodeError extends Error {
  name = 'OtlpDecodeError';
}

/** An empty ExportTraceServiceResponse: no partial success to report. */
export const EMPTY_PROTOBUF_RESPONSE = ExportTraceServiceResponse.encode({}).finish();

/**
 * @param {Uint8Array} body An encoded ExportTraceServiceRequest.
 * @returns {import('./trace-store.mjs').StoredSpan[]}
 */
export function decodeProtobufRequest(body) {
  let request;
  try {
    request = ExportTraceServiceRequest.toObject(ExportTraceServiceRequest.decode(body), {
      // fixed64 times and int64 values, exact; `oneofs` names the AnyValue member that is set, so
      // `false`, `0` and `''` are told from an empty value.
      longs: BigInt,
      oneofs: true,
      arrays: true,
    });
  } catch (error) {
    throw new OtlpDecodeError(`not an OTLP ExportTraceServiceRequest: ${errorMessage(error)}`);
  }
  return fromRequest(request, protobufFields);
}

/**
 * @param {string} text OTLP/JSON: hex ids, 64-bit integers as decimal strings or numbers, enums
 *   as numbers or names.
 * @returns {import('./trace-store.mjs').StoredSpan[]}
 */
export function decodeJsonRequest(text) {
  let request;
  try {
    request = JSON.parse(text);
  } catch (error) {
    throw new OtlpDecodeError(`not JSON: ${errorMessage(error)}`);
  }
  if (request === null || typeof request !== 'object' || Array.isArray(request)) {
    throw new OtlpDecodeError('not an OTLP ExportTraceServiceRequest: expected a JSON object');
  }
  return fromRequest(request, jsonFields);
}

/**
 * What differs between the two encodings once protobufjs has made objects of the binary one:
 * ids (bytes or hex), 64-bit integers (BigInt or string/number) and enums (numbers, or names
 * in JSON).
 */
const protobufFields = {
  id: (bytes) => Buffer.from(bytes ?? []).toString('hex'),
  nanos: (value) => value ?? 0n,
  int: (value) => Number(value),
  bytes: (value) => new Uint8Array(value),
  kind: (value) => SPAN_KINDS[value ?? 0] ?? 'unspecified',
  statusCode: (value) => STATUS_CODES[value ?? 0] ?? 'UNSET',
};

const jsonFields = {
  id: (value) => jsonId(value),
  nanos: (value) => jsonBigInt(value ?? 0, 'a time'),
  int: (value) => Number(jsonBigInt(value, 'intValue')),
  bytes: (value) => new Uint8Array(Buffer.from(String(value), 'base64')),
  kind: (value) => jsonEnum(value, SPAN_KINDS, 'SPAN_KIND_', 'unspecified'),
  statusCode: (value) => jsonEnum(value, STATUS_CODES, 'STATUS_CODE_', 'UNSET'),
};

function fromRequest(request, fields) {
  const spans = [];
  for (const resourceSpans of list(request.resourceSpans, 'resourceSpans')) {
    const resource = toAttributes(resourceSpans.resource?.attributes, fields);
    const service = typeof resource['service.name'] === 'string' ? resource['service.name'] : '';
    for (const scopeSpans of list(resourceSpans.scopeSpans, 'scopeSpans')) {
      const scope = String(scopeSpans.scope?.name ?? '');
      for (const span of list(scopeSpans.spans, 'spans')) {
        spans.push(toSpan(span, service || 'unknown', scope, fields));
      }
    }
  }
  return spans;
}

function toSpan(span, service, scope, fields) {
  const traceId = fields.id(span.traceId);
  const spanId = fields.id(span.spanId);
  // Garbage often decodes as protobuf; ids of the wrong size are what gives it away.
  if (!/^[0-9a-f]{32}$/.test(traceId) || /^0+$/.test(traceId)) {
    throw new OtlpDecodeError(`span ${JSON.stringify(span.name)}: invalid trace id "${traceId}"`);
  }
  if (!/^[0-9a-f]{16}$/.test(spanId) || /^0+$/.test(spanId)) {
    throw new OtlpDecodeError(`span ${JSON.stringify(span.name)}: invalid span id "${spanId}"`);
  }
  return {
    traceId,
    spanId,
    parentSpanId: fields.id(span.parentSpanId),
    name: String(span.name ?? ''),
    kind: fields.kind(span.kind),
    service,
    scope,
    start: fields.nanos(span.startTimeUnixNano),
    end: fields.nanos(span.endTimeUnixNano),
    attributes: toAttributes(span.attributes, fields),
    events: list(span.events, 'events').map((event) => ({
      name: String(event.name ?? ''),
      time: fields.nanos(event.timeUnixNano),
      attributes: toAttributes(event.attributes, fields),
    })),
    status: {
      code: fields.statusCode(span.status?.code),
      message: String(span.status?.message ?? ''),
    },
  };
}

function toAttributes(keyValues, fields) {
  const attributes = {};
  for (const { key, value } of list(keyValues, 'attributes')) {
    attributes[String(key)] = toValue(value, fields);
  }
  return attributes;
}

/** An AnyValue. protobufjs names the member that is set in `value`; in JSON it is the one key. */
function toValue(anyValue, fields) {
  if (anyValue === null || typeof anyValue !== 'object') return null;
  const member =
    typeof anyValue.value === 'string'
      ? anyValue.value
      : Object.keys(anyValue).find((key) => anyValue[key] !== undefined);
  const value = anyValue[member];
  switch (member) {
    case 'stringValue':
      return String(value);
    case 'boolValue':
      return value === true || value === 'true';
    case 'intValue':
      return fields.int(value);
    case 'doubleValue':
      // OTLP/JSON spells the non-finite doubles as strings ("NaN", "Infinity").
      return Number(value);
    case 'arrayValue':
      return list(value?.values, 'arrayValue.values').map((item) => toValue(item, fields));
    case 'kvlistValue':
      return toAttributes(value?.values, fields);
    case 'bytesValue':
      return fields.bytes(value);
    default:
      return null;
  }
}

function list(value, what) {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new OtlpDecodeError(`${what}: expected an array`);
  return value;
}

/** OTLP/JSON ids are hex; a few older exporters sent base64, which is accepted too. */
function jsonId(value) {
  if (value === undefined || value === null || value === '') return '';
  const text = String(value);
  if (/^[0-9a-fA-F]+$/.test(text) && (text.length === 32 || text.length === 16)) {
    return text.toLowerCase();
  }
  return Buffer.from(text, 'base64').toString('hex');
}

function jsonBigInt(value, what) {
  // A JSON number past 2^53 has already lost digits in JSON.parse; a string keeps them all.
  if (typeof value === 'number' && Number.isInteger(value)) return BigInt(value);
  if (typeof value === 'string' && /^-?\d+$/.test(value)) return BigInt(value);
  throw new OtlpDecodeError(`${what}: expected an integer, got ${JSON.stringify(value)}`);
}

function jsonEnum(value, names, prefix, fallback) {
  if (typeof value === 'number') return names[value] ?? fallback;
  if (typeof value === 'string') {
    const name = value.startsWith(prefix) ? value.slice(prefix.length) : value;
    return names.find((n) => n.toUpperCase() === name.toUpperCase()) ?? fallback;
  }
  return fallback;
}

function errorMessage(error) {
  return error instanceof Error ? error.message : String(error);
}
