import type { ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { EmperorError } from '@emperor/errors';

/** The helper built by `make -C native`, unless EMPEROR_JAIL_HELPER names another (the ASan build in tests). */
export const helperPath = (): string => {
  const path = process.env.EMPEROR_JAIL_HELPER ?? fileURLToPath(new URL('../../../native/build/emperor-jail', import.meta.url));
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new EmperorError('EMPEROR_ERR_JAIL_HELPER', `expected the jail helper at ${path}, got none`, { hint: 'run bash scripts/setup.sh to build native/' });
  }
  return path;
};

/** Resolves when a helper has exited and its status fd is fully read (spawn errors count as an exit). */
export const processEnd = (child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> =>
  new Promise((resolve) => {
    let result: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let statusClosed = child.stdio[3] === null || child.stdio[3] === undefined;
    const finish = () => {
      if (result !== undefined && statusClosed) resolve(result);
    };
    child.stdio[3]?.on('close', () => {
      statusClosed = true;
      finish();
    });
    child.on('error', () => {
      result ??= { code: 125, signal: null };
      statusClosed = true;
      finish();
    });
    child.on('exit', (code, signal) => {
      result = { code, signal };
      finish();
    });
  });
