import { execFile, execFileSync } from 'node:child_process';
import { lstatSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { EmperorError } from '@emperor/errors';

const run = promisify(execFile);

/** True when `dir` is the root of a mount (a run dir's tmpfs, left or live). */
const isMountPoint = (dir: string): boolean => {
  const st = lstatSync(dir, { throwIfNoEntry: false });
  return st !== undefined && st.isDirectory() && st.dev !== statSync(dirname(dir)).dev;
};

/** Unmounts whatever is mounted at `dir` (lazily: nothing can keep it busy) until nothing is. */
const unmountAll = async (dir: string): Promise<void> => {
  for (let i = 0; i < 8 && isMountPoint(dir); i++) await run('umount', ['--lazy', '--', dir]);
};

/**
 * A vassal's run dir on the host (`RUN/vassals/NAME`, seen as /run in its jail): a tmpfs of its own, of
 * `sizeBytes` (run-dir-size) with a matching inode count, so a customer filling their /run fills only
 * that; root-owned, group of the vassal, mode 01775. The vassal can create its own files (pidfiles,
 * sockets) but, with the sticky bit, cannot remove or replace the listening socket the emperor created;
 * the web server can traverse it. Whatever a previous emperor left at that path is wiped first.
 */
export const makeRunDir = async (runDir: string, name: string, gid: number, sizeBytes: number): Promise<string> => {
  const dir = join(runDir, 'vassals', name);
  await removeRunDir(dir);
  mkdirSync(dir, { mode: 0o700 });
  const inodes = Math.max(1024, Math.floor(sizeBytes / 4096));
  try {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes},nr_inodes=${inodes},mode=1775,uid=0,gid=${gid},nosuid,nodev`, `emperor-run-${name}`, dir]);
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw new EmperorError('EMPEROR_ERR_JAIL_SETUP', `run dir ${dir}: expected to mount a tmpfs of ${sizeBytes} bytes, got ${(e as { stderr?: string }).stderr?.trim() || String(e)}`, { hint: 'the emperor needs root and a writable mount table (not a read-only container)', cause: e });
  }
  return dir;
};

/** Unmounts and removes a run dir; never follows a symlink out of it (rm of the entries, not their targets). */
export const removeRunDir = async (dir: string): Promise<void> => {
  await unmountAll(dir).catch(() => undefined);
  try {
    rmSync(dir, { recursive: true, force: true });
  } catch {
    // EBUSY: still mounted (umount failed); the next spawn of this vassal tries again
  }
};

let wwwData: number | null | undefined;

/** The default owner of a vassal's socket: www-data:GID where www-data exists (so nginx can connect), else root:GID. */
export const defaultSocketOwner = (gid: number): { uid: number; gid: number } => {
  if (wwwData === undefined) {
    try {
      wwwData = Number(execFileSync('getent', ['passwd', 'www-data'], { encoding: 'utf8' }).split(':')[2]);
    } catch {
      wwwData = null;
    }
  }
  return { uid: wwwData ?? 0, gid };
};
