import { lstatSync, unlinkSync } from 'node:fs';

/**
 * Removes a unix socket that root made in a directory a customer can write to: only if `lstat` says it is
 * still a socket (never a directory, a symlink or a file the customer put in its place). Never throws: a
 * teardown must finish whatever the customer did. Returns what was found, for the log.
 */
export const removeSocketFile = (path: string): 'removed' | 'absent' | 'not-a-socket' => {
  try {
    if (!lstatSync(path).isSocket()) return 'not-a-socket';
    unlinkSync(path);
    return 'removed';
  } catch {
    return 'absent';
  }
};
