// Types of trace-store.mjs, for TypeScript callers (the specs); the JSDoc there is the reference.
import { EventEmitter } from 'node:events';

export type SpanKindName =
  'unspecified' | 'internal' | 'server' | 'client' | 'producer' | 'consumer';
export type StatusCodeName = 'UNSET' | 'OK' | 'ERROR';

export type AttributeValue =
  | string
  | number
  | boolean
  | null
  | Uint8Array
  | AttributeValue[]
  | { [key: string]: AttributeValue };

export interface StoredEvent {
  name: string;
  time: bigint;
  attributes: Record<string, AttributeValue>;
}

export interface StoredSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: SpanKindName;
  service: string;
  scope: string;
  start: bigint;
  end: bigint;
  attributes: Record<string, AttributeValue>;
  events: StoredEvent[];
  status: { code: StatusCodeName; message: string };
}

export interface TraceSummary {
  traceId: string;
  rootName: string;
  rootService: string;
  services: string[];
  spanCount: number;
  start: bigint;
  end: bigint;
  startTime: number;
  durationMs: number;
  error: boolean;
}

export interface ServiceMap {
  nodes: { service: string; spans: number; errors: number }[];
  edges: { from: string; to: string; transport: string; calls: number; errors: number }[];
}

export declare class TraceStore extends EventEmitter<{
  spans: [traceIds: string[]];
  evict: [traceIds: string[]];
  clear: [];
}> {
  constructor(options?: { maxTraces?: number });
  readonly maxTraces: number;
  readonly size: number;
  add(spans: StoredSpan[]): string[];
  has(traceId: string): boolean;
  get(traceId: string): StoredSpan[];
  isComplete(traceId: string): boolean;
  summary(traceId: string): TraceSummary | undefined;
  list(): TraceSummary[];
  serviceMap(): ServiceMap;
  clear(): void;
}

export declare function transportOf(child: StoredSpan, parent?: StoredSpan): string;
export declare function summarize(spans: StoredSpan[]): TraceSummary;
export declare function nanosToMillis(nanos: bigint): number;
