// Types of viewer.mjs, for TypeScript callers (the specs).
import type { TraceStore } from './trace-store.mjs';

export interface ViewerOptions {
  /** Default 4318, OTLP/HTTP's port; 0 picks a free one. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 200; ignored when `store` is given. */
  maxTraces?: number;
  store?: TraceStore;
}

export interface Viewer {
  url: string;
  port: number;
  store: TraceStore;
  /** Closes the server and every open connection. */
  close(): Promise<void>;
}

export declare function startViewer(options?: ViewerOptions): Promise<Viewer>;
