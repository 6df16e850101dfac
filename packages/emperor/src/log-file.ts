import { chownSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Output } from '@emperor/jail';

/**
 * A per-process log file under the log dir (LOGDIR/NAME/app.log, daemon-N.log, cron.log), written by the
 * jail's shim, which outlives the emperor, and rotated by size (FILE, FILE.1 ... FILE.3 of 10 MiB): mode
 * 0640 root:GID, in a directory 0750 root:GID, so the customer can read it and nobody else can, and
 * nothing in it can be replaced by them (the shim opens it with O_NOFOLLOW in a directory only root writes).
 */
export const logOutput = (path: string, gid: number): Output => {
  mkdirSync(dirname(path), { recursive: true, mode: 0o750 });
  chownSync(dirname(path), 0, gid);
  return { log: path, gid };
};
