// Types of trace-layout.js, for TypeScript callers (the specs); the page loads the .js itself.

export interface ApiSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: string;
  service: string;
  scope: string;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  durationMs: number;
  attributes: Record<string, unknown>;
  events: { name: string; timeUnixNano: string; attributes: Record<string, unknown> }[];
  status: { code: string; message: string };
}

export interface WaterfallRow<S> {
  span: S;
  depth: number;
  /** Where the bar starts, as a fraction of the trace's duration. */
  offset: number;
  /** How long the bar is, as a fraction of the trace's duration. */
  width: number;
  error: boolean;
  /** A span whose parent is not in the trace. */
  orphan: boolean;
  hasChildren: boolean;
}

export declare class ServiceColours {
  assign(services: Iterable<string>): this;
  colour(service: string): string;
}
export declare function waterfallRows<
  S extends Pick<
    ApiSpan,
    'spanId' | 'parentSpanId' | 'startTimeUnixNano' | 'endTimeUnixNano' | 'status'
  >,
>(spans: S[]): { start: bigint; end: bigint; durationMs: number; rows: WaterfallRow<S>[] };
export declare function timeTicks(
  durationMs: number,
  wanted?: number,
): { at: number; label: string }[];
export declare function formatDuration(ms: number): string;
export declare function exceptionOf(
  span: Pick<ApiSpan, 'events'>,
): { type: string; message: string; stacktrace: string } | undefined;
export declare function formatValue(value: unknown): string;
export declare function traceIdFromHash(hash: string): string | undefined;

export interface MapInput {
  nodes: { service: string; spans: number; errors: number }[];
  edges: { from: string; to: string; transport: string; calls: number; errors: number }[];
}
export declare const MAP_NODE: { width: number; height: number };
export declare function layoutServiceMap(map: MapInput): {
  width: number;
  height: number;
  nodes: (MapInput['nodes'][number] & {
    layer: number;
    x: number;
    y: number;
    width: number;
    height: number;
  })[];
  edges: (MapInput['edges'][number] & { path: string; labelX: number; labelY: number })[];
};
