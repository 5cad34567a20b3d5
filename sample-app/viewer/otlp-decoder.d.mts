// Types of otlp-decoder.mjs, for TypeScript callers (the specs).
import type { SpanKindName, StatusCodeName, StoredSpan } from './trace-store.mjs';

export declare const SPAN_KINDS: SpanKindName[];
export declare const STATUS_CODES: StatusCodeName[];
export declare const EMPTY_PROTOBUF_RESPONSE: Uint8Array;
export declare class OtlpDecodeError extends Error {}
export declare function decodeProtobufRequest(body: Uint8Array): StoredSpan[];
export declare function decodeJsonRequest(text: string): StoredSpan[];
