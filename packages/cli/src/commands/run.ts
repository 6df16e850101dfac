import type { Io } from '../io.js';

/**
 * `emperor [run] [options] DIR`: the daemon, in this process. One process for systemd to watch: its
 * MAINPID is the emperor itself (so `NotifyAccess=main`, the watchdog and a SIGKILL all reach the daemon,
 * never a wrapper that could die and leave it orphaned). Loaded only for `run`: the other commands talk to
 * the daemon over its control socket and never load it.
 */
export const run = async (args: string[], _io: Io): Promise<number> => {
  const { runDaemon } = await import('@emperor/emperor');
  return runDaemon(args);
};
