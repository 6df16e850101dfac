import { basename, extname } from 'node:path';
import { watch, type FSWatcher } from 'chokidar';

const EXTENSIONS = new Set(['.ini', '.json', '.yaml', '.yml']);

/** Editor and panel temp files (vim .swp, emacs .#x and x~, write-then-rename .tmp) are not vassals. */
export const isVassalFile = (path: string): boolean => {
  const base = basename(path);
  return !base.startsWith('.') && !base.endsWith('~') && EXTENSIONS.has(extname(base).toLowerCase());
};

/** File events, coalesced per file: `change` covers add and change (the vassal decides which it is). */
export interface MonitorHandlers {
  change: (file: string) => void;
  remove: (file: string) => void;
}

/**
 * The monitor: inotify through chokidar, no polling, over one directory (not its subdirectories). Events of
 * one file that come within `settleMs` are coalesced, so a panel that writes a file in several chunks, or an
 * editor that truncates then writes, causes one reload.
 */
export class Monitor {
  readonly #watcher: FSWatcher;
  readonly #timers = new Map<string, NodeJS.Timeout>();

  constructor(dir: string, handlers: MonitorHandlers, settleMs = 15) {
    this.#watcher = watch(dir, {
      depth: 0,
      ignoreInitial: false,
      followSymlinks: false,
      alwaysStat: false,
      ignored: (path, stats) => stats?.isFile() === true && !isVassalFile(path),
    });
    const later = (file: string, fn: () => void) => {
      clearTimeout(this.#timers.get(file));
      this.#timers.set(file, setTimeout(() => {
        this.#timers.delete(file);
        fn();
      }, settleMs));
    };
    const onChange = (file: string) => {
      if (isVassalFile(file)) later(file, () => handlers.change(file));
    };
    this.#watcher.on('add', onChange);
    this.#watcher.on('change', onChange);
    this.#watcher.on('unlink', (file) => {
      if (isVassalFile(file)) later(file, () => handlers.remove(file));
    });
  }

  /** Resolves once the initial scan is done. */
  ready(): Promise<void> {
    return new Promise((resolve) => this.#watcher.once('ready', () => resolve()));
  }

  async close(): Promise<void> {
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
    await this.#watcher.close();
  }
}
