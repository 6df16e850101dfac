import type { Io } from '../io.js';

/**
 * `emperor router --http ADDR --subscription-server ADDR [...]`: the subscription server and HTTP router,
 * a process of its own (docs/router.md): a flood of requests never costs the emperor's event loop.
 */
export const router = async (args: string[], _io: Io): Promise<number> => {
  const { routerMain } = await import('@emperor/router');
  return routerMain(args);
};
