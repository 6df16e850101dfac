import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Io } from '../io.js';

/**
 * `emperor [run] [options] DIR`: starts the daemon in the foreground. The CLI never imports the daemon; it
 * runs the daemon's own entry and passes signals on, so systemd's stop and reload reach it.
 */
export const run = async (args: string[], _io: Io): Promise<number> => {
  const pkg = createRequire(import.meta.url).resolve('@emperor/emperor/package.json');
  const child = spawn(process.execPath, [join(dirname(pkg), 'bin', 'emperor-daemon.js'), ...args], { stdio: 'inherit' });
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(sig, () => child.kill(sig));
  return new Promise((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 + 15 : 1))));
};
