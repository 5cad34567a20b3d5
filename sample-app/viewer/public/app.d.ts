// Types of app.js, for TypeScript callers (the specs); the page loads the .js itself.

export interface AppEnvironment {
  document: unknown;
  window: unknown;
  location: { hash: string; origin: string };
  fetch: (input: string, init?: Record<string, unknown>) => Promise<unknown>;
  pollMs?: number;
}

export declare function startApp(env: AppEnvironment): {
  /** Settles once the first list, map and linked trace are drawn. */
  ready: Promise<void>;
  refresh(): Promise<void>;
  stop(): void;
};
