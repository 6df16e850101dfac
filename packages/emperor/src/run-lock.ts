import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { EmperorError } from '@emperor/errors';

/** A process's start time (field 22 of /proc/PID/stat, clock ticks since boot), or undefined if it is gone. */
export const startTime = (pid: number): string | undefined => {
  try {
    // comm may hold spaces and parentheses: fields are counted after the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
};

/**
 * One emperor per run dir: `RUN/emperor.pid` holds the pid and start time of the emperor that governs it.
 * A second emperor finds the first alive (same pid, same start time: not a reused pid) and refuses to start,
 * naming it; a file left by an emperor that died is taken over. Created with O_EXCL, so of two emperors
 * starting at once exactly one wins.
 */
export class RunLock {
  readonly path: string;
  readonly #content: string;

  private constructor(path: string, content: string) {
    this.path = path;
    this.#content = content;
  }

  static acquire(runDir: string): RunLock {
    mkdirSync(runDir, { recursive: true, mode: 0o755 });
    const path = join(runDir, 'emperor.pid');
    const content = `${process.pid} ${startTime(process.pid) ?? '0'}\n`;
    for (let attempt = 0; attempt < 3; attempt++) {
      let fd: number;
      try {
        fd = openSync(path, 'wx', 0o644);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        const holder = RunLock.holder(path);
        if (holder !== undefined) {
          throw new EmperorError('EMPEROR_ERR_ALREADY_RUNNING', `${runDir}: expected no other emperor on this run dir, got one running as pid ${holder}`, {
            hint: `stop it first (systemctl stop emperor, or kill ${holder}), or give this one another --run-dir`,
          });
        }
        // Left by an emperor that is gone (or whose pid now belongs to another process): take it over.
        try {
          unlinkSync(path);
        } catch {
          // ENOENT: another emperor took it over just now; the next attempt says who
        }
        continue;
      }
      try {
        writeSync(fd, content);
      } finally {
        closeSync(fd);
      }
      return new RunLock(path, content);
    }
    throw new EmperorError('EMPEROR_ERR_ALREADY_RUNNING', `${runDir}: expected to take ${path}, got it taken each time`, { hint: 'another emperor is starting on this run dir' });
  }

  /** The pid of the live emperor a lock file names, if it names one. */
  static holder(path: string): number | undefined {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch {
      return undefined;
    }
    const [pid, start] = text.trim().split(' ');
    const n = Number(pid);
    if (!Number.isInteger(n) || n <= 0 || n === process.pid) return undefined;
    return startTime(n) === start ? n : undefined;
  }

  /** Gives the run dir up (at the end of a stop); only a file that is still ours is removed. */
  release(): void {
    try {
      if (readFileSync(this.path, 'utf8') === this.#content) unlinkSync(this.path);
    } catch {
      // ENOENT: already gone
    }
  }
}
