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
