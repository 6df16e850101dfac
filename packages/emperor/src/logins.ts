import { chmodSync, chownSync, lstatSync, mkdirSync, readdirSync, rmSync, rmdirSync, symlinkSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The emperor's answer to "which vassals may I enter?", in the file system: `RUN/logins/UID/NAME`, a
 * root-made symlink to the vassal's pty socket, for every running vassal of that uid with a pty.
 * `RUN/logins` is root's, mode 0711 (nobody lists the uids); `RUN/logins/UID` belongs to that uid, mode
 * 0500 (only they read it, nobody but root writes it). `emperor pty` reads its own uid's directory and
 * nothing else, so no socket or symlink another customer makes can redirect or block a login (the kernel's
 * permission checks stand in for SO_PEERCRED, and there is no socket to flood). docs/decisions.md.
 */
export class Logins {
  readonly dir: string;

  constructor(runDir: string) {
    this.dir = join(runDir, 'logins');
  }

  /** Wipes what a previous emperor left and makes the directory afresh. */
  reset(): void {
    rmSync(this.dir, { recursive: true, force: true });
    mkdirSync(this.dir, { mode: 0o711 });
    chmodSync(this.dir, 0o711); // mkdir's mode goes through the umask
  }

  /** Lists `name` (its pty socket at `ptySocket`) for `uid`. */
  add(uid: number, name: string, ptySocket: string): void {
    const mine = join(this.dir, String(uid));
    if (lstatSync(mine, { throwIfNoEntry: false }) === undefined) {
      mkdirSync(mine, { mode: 0o500 });
      chownSync(mine, uid, 0);
      chmodSync(mine, 0o500);
    }
    const entry = join(mine, name);
    // Whatever is there (a leftover, or something the uid put there after a chmod of its own directory) goes:
    // unlink never follows.
    rmSync(entry, { force: true, recursive: true });
    symlinkSync(ptySocket, entry);
  }

  /** Unlists `name` for `uid`; the uid's directory goes with its last entry. Never throws. */
  remove(uid: number, name: string): void {
    const mine = join(this.dir, String(uid));
    try {
      unlinkSync(join(mine, name));
    } catch {
      // absent already
    }
    try {
      if (readdirSync(mine).length === 0) rmdirSync(mine);
    } catch {
      // another vassal of this uid is listed, or the directory is gone
    }
  }

  /** Removes everything (emperor shutdown). */
  clear(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
