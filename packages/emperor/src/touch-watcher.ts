import type { Jail, ShimProcess } from '@emperor/jail';

/** How often the paths are looked at (uWSGI's master looks at touch-reload files every few seconds too). */
export const TOUCH_INTERVAL_S = 2;
/** A watcher that dies (the customer may kill it: it is theirs) is started again after this long. */
const RESTART_MS = 10_000;
/** At most this much unparsed output is kept: the customer could write into the watcher's pipe. */
const MAX_BUFFER = 64 * 1024;

/**
 * Prints, every interval, one line per path (its mtime in seconds, or "-" when it is missing) and a "."
 * line. It runs in the jail as the vassal user, so a path is resolved the way the customer's own processes
 * see it: root never looks at a path the customer controls.
 */
const SCRIPT = `while :; do for p; do stat -L -c %Y -- "$p" 2>/dev/null || echo -; done; echo .; sleep ${TOUCH_INTERVAL_S}; done`;

/**
 * `touch-reload`: watches paths inside the jail and calls `onTouch` when one's mtime changes (or it appears).
 * The watcher is one small shell loop in the jail, counted in its pids and memory like any process of it.
 */
export class TouchWatcher {
  readonly #jail: Jail;
  readonly #paths: readonly string[];
  readonly #onTouch: (path: string) => void;
  #proc: ShimProcess | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #last: string[] | undefined;

  readonly #onSeen: (seen: string[]) => void;

  /**
   * `seen`: what a previous watcher of the same paths saw last (a previous emperor's, from the saved state),
   * so a path touched while no emperor ran counts as touched; `onSeen` is told every change of it.
   */
  constructor(jail: Jail, paths: readonly string[], onTouch: (path: string) => void, options: { seen?: string[] | undefined; onSeen?: (seen: string[]) => void } = {}) {
    this.#jail = jail;
    this.#paths = paths;
    this.#onTouch = onTouch;
    this.#onSeen = options.onSeen ?? (() => {});
    if (options.seen?.length === paths.length) this.#last = options.seen;
  }

  start(): void {
    if (this.#stopped || !this.#jail.running) return;
    let proc: ShimProcess;
    try {
      proc = this.#jail.start('touch', { argv: ['/bin/sh', '-c', SCRIPT, 'emperor-touch-reload', ...this.#paths], env: { PATH: '/usr/bin:/bin' }, cwd: '/', output: 'emperor' });
    } catch {
      return; // the jail stopped meanwhile
    }
    this.#proc = proc;
    let buffer = '';
    let snapshot: string[] = [];
    proc.on('output', (fd, d) => {
      if (fd !== 1) return;
      buffer += d.toString('utf8');
      if (buffer.length > MAX_BUFFER) buffer = '';
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        if (line !== '.') {
          snapshot.push(line);
          continue;
        }
        if (snapshot.length === this.#paths.length) this.#compare(snapshot);
        snapshot = [];
      }
    });
    void proc.exited.then(() => {
      if (this.#proc !== proc || this.#stopped) return;
      this.#proc = undefined;
      this.#timer = setTimeout(() => this.start(), RESTART_MS);
      this.#timer.unref();
    });
  }

  #compare(now: string[]): void {
    const before = this.#last;
    this.#last = now;
    if (before === undefined || now.some((v, i) => v !== before[i])) this.#onSeen(now);
    if (before === undefined) return;
    const touched = now.findIndex((v, i) => v !== '-' && v !== before[i]);
    if (touched >= 0) this.#onTouch(this.#paths[touched] as string);
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#proc?.kill('SIGTERM');
    this.#proc = undefined;
  }
}
