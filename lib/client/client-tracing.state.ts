/**
 * The client wrappers live on Nest's prototypes for the whole process; they trace only while at
 * least one TracingModule with transport tracing enabled is running.
 */
const STATE = Symbol.for('nestjs-tracing:client-tracing');
type WithState = typeof globalThis & { [STATE]?: { users: number } };

function state(): { users: number } {
  const global = globalThis as WithState;
  return (global[STATE] ??= { users: 0 });
}

export function clientTracingActive(): boolean {
  return state().users > 0;
}

/** Counts a running module in; returns the function that counts it out (once). */
export function retainClientTracing(): () => void {
  state().users++;
  let released = false;
  return () => {
    if (released) return;
    released = true;
    state().users--;
  };
}
