import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A vassal's run dir on the host (`RUN/vassals/NAME`, seen as /run in its jail): root-owned, group of the
 * vassal, mode 01775. The vassal can create its own files (pidfiles, sockets) but, with the sticky bit,
 * cannot remove or replace the listening socket the emperor created; the web server can traverse it.
 */
export const makeRunDir = (runDir: string, name: string, gid: number): string => {
  const dir = join(runDir, 'vassals', name);
  mkdirSync(dir, { recursive: true });
  chownSync(dir, 0, gid);
  chmodSync(dir, 0o1775);
  return dir;
};

export const removeRunDir = (dir: string): void => rmSync(dir, { recursive: true, force: true });

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
