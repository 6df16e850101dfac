/** A wait of a spawn or reload that a stop, restart or shutdown cut short; not a failure of the vassal. */
export class Cancelled extends Error {}

/**
 * How a wait for readiness ends: `ready` wins, or `exited`, or the timeout, or an abort of `signal` (a stop).
 * Leaves no timer and no listener behind (a vassal reloaded a thousand times keeps one signal).
 */
export const readiness = (ready: Promise<unknown>, exited: Promise<unknown>, ms: number, signal: AbortSignal): Promise<'ready' | 'exited' | 'timeout' | 'aborted'> =>
  new Promise((resolve) => {
    let t: NodeJS.Timeout | undefined;
    const done = (how: 'ready' | 'exited' | 'timeout' | 'aborted') => {
      clearTimeout(t);
      signal.removeEventListener('abort', onAbort);
      resolve(how);
    };
    const onAbort = () => done('aborted');
    if (signal.aborted) return done('aborted');
    signal.addEventListener('abort', onAbort, { once: true });
    t = setTimeout(() => done('timeout'), ms);
    void ready.then(() => done('ready'));
    void exited.then(() => done('exited'));
  });
