import { existsSync, readdirSync, watch, type FSWatcher } from 'node:fs';
import { basename, extname, join } from 'node:path';

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
 * The monitor: inotify on one directory (node's fs.watch), no polling delay. Every event for a file is
 * coalesced for `settleMs`, then the file's presence decides between change and remove, so a panel's
 * write-then-rename, an editor's truncate-then-write, or a burst of writes each end in one decision.
 * A rescan every `rescanMs` catches what an inotify queue overflow could drop (it changes nothing when
 * nothing changed: the emperor compares file identities).
 *
 * chokidar was used first and dropped events: a rename over an existing vassal file under load was
 * sometimes never reported (measured: 1 of the first 5 rewrites lost, packages/emperor/test/reload-under-load.ts).
 */
export class Monitor {
  readonly #dir: string;
  readonly #handlers: MonitorHandlers;
  readonly #settleMs: number;
  readonly #timers = new Map<string, NodeJS.Timeout>();
  readonly #known = new Set<string>();
  #watcher: FSWatcher | undefined;
  #rescan: NodeJS.Timeout | undefined;

  constructor(dir: string, handlers: MonitorHandlers, settleMs = 15, rescanMs = 30_000) {
    this.#dir = dir;
    this.#handlers = handlers;
    this.#settleMs = settleMs;
    this.#watcher = watch(dir, { persistent: true }, (_type, name) => {
      if (name === null) return void this.#scan();
      if (isVassalFile(name)) this.#touch(name);
    });
    this.#watcher.on('error', () => this.#scan());
    this.#rescan = setInterval(() => this.#scan(), rescanMs);
    this.#rescan.unref();
  }

  #touch(name: string): void {
    clearTimeout(this.#timers.get(name));
    this.#timers.set(name, setTimeout(() => {
      this.#timers.delete(name);
      const file = join(this.#dir, name);
      if (existsSync(file)) {
        this.#known.add(name);
        this.#handlers.change(file);
      } else if (this.#known.delete(name)) {
        this.#handlers.remove(file);
      }
    }, this.#settleMs));
  }

  /** Every vassal file now in the directory, and every known one that is gone. */
  #scan(): void {
    let names: string[] = [];
    try {
      names = readdirSync(this.#dir).filter(isVassalFile);
    } catch {
      names = [];
    }
    for (const n of names) this.#touch(n);
    for (const n of this.#known) if (!names.includes(n)) this.#touch(n);
  }

  /** The initial scan: resolves once every existing file has been reported. */
  async ready(): Promise<void> {
    this.#scan();
    await new Promise((r) => setTimeout(r, this.#settleMs + 5));
  }

  async close(): Promise<void> {
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
    clearInterval(this.#rescan);
    this.#watcher?.close();
    this.#watcher = undefined;
  }
}
