import type { ShimProcess } from '@emperor/jail';

/**
 * The stop every supervised process gets (the app, a daemon): `signal` to its process group (through the
 * shim), then SIGKILL to the group at `deadline`; resolves once it has exited, with whether it took the
 * signal (false: it had to be killed).
 */
export const stopProcess = async (proc: ShimProcess, signal: NodeJS.Signals | number, deadline: number): Promise<boolean> => {
  const done = proc.exited.then(() => true);
  proc.kill(signal);
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), Math.max(0, deadline - Date.now()))));
  const exited = await Promise.race([done, timedOut]);
  clearTimeout(timer);
  if (exited) return true;
  proc.kill('SIGKILL'); // the whole group inside the jail (the shim signals the group of its leader)
  await done;
  return false;
};
