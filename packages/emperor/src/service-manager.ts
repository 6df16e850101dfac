import { createRequire } from 'node:module';
import { EmperorError } from '@emperor/errors';

/** The part of the sd-notify addon (libsystemd's sd_notify(3)) the daemon uses. */
interface SdNotify {
  sendState(state: string): void;
}

/** What the daemon tells its service manager, as counts of vassals by state. */
export type VassalCounts = Record<string, number>;

/** How often, while the first scan is still starting vassals, the start timeout is pushed back. */
const EXTEND_EVERY_MS = 5_000;
/** How far each push goes: a first scan that makes no progress for this long fails the start. */
const EXTEND_BY_US = 30_000_000;
/** STATUS= is sent at most this often (a burst of 500 vassal events is one update). */
const STATUS_EVERY_MS = 1_000;

/**
 * The daemon's side of systemd's notify protocol (sd_notify(3)), when systemd started it with
 * `Type=notify` (NOTIFY_SOCKET set): READY=1 once the first scan has started (or failed) every vassal,
 * STATUS= with the counts, RELOADING=1/READY=1 around a SIGHUP, STOPPING=1, WATCHDOG=1 every half
 * WatchdogSec from the event loop (a wedged loop is a missed ping), EXTEND_TIMEOUT_USEC while a long first
 * scan still makes progress. Messages go through libsystemd's own sd_notify (the sd-notify package), from
 * the main process, so the unit can keep `NotifyAccess=main`: no jail process can speak for the emperor.
 * Without NOTIFY_SOCKET every call does nothing.
 */
export class ServiceManager {
  readonly #send: (state: string) => void;
  readonly #watchdogMs: number | undefined;
  #watchdog: NodeJS.Timeout | undefined;
  #statusTimer: NodeJS.Timeout | undefined;
  #lastStatus = '';
  #pendingStatus: string | undefined;
  #lastStatusAt = 0;

  private constructor(send: (state: string) => void, watchdogMs: number | undefined) {
    this.#send = send;
    this.#watchdogMs = watchdogMs;
  }

  /** The service manager this process was started by, or undefined (a terminal, a test, another init). */
  static fromEnvironment(env: NodeJS.ProcessEnv = process.env, load: () => SdNotify = loadSdNotify): ServiceManager | undefined {
    if (env.NOTIFY_SOCKET === undefined || env.NOTIFY_SOCKET === '') return undefined;
    let sd: SdNotify;
    try {
      sd = load();
    } catch (e) {
      // An addon built for another Node.js, or never built: said at start, not as a stack trace.
      throw new EmperorError('EMPEROR_ERR_SYSTEMD', `NOTIFY_SOCKET is set (Type=notify): expected the sd-notify addon to load, got ${String((e as Error).message ?? e).split('\n')[0]}`, {
        hint: 'npm rebuild sd-notify with the Node.js the unit runs (it needs libsystemd-dev), or run bash scripts/setup.sh again',
        cause: e,
      });
    }
    // WATCHDOG_PID, when set, names the process the watchdog is for (sd_watchdog_enabled(3)).
    const usec = Number(env.WATCHDOG_USEC);
    const forUs = env.WATCHDOG_PID === undefined || Number(env.WATCHDOG_PID) === process.pid;
    return new ServiceManager((s) => sd.sendState(s), Number.isFinite(usec) && usec > 0 && forUs ? Math.max(1, Math.floor(usec / 2000)) : undefined);
  }

  /** The interval of WATCHDOG=1 pings (half WatchdogSec), if the unit sets a watchdog. */
  get watchdogIntervalMs(): number | undefined {
    return this.#watchdogMs;
  }

  /** Another process (the emperor this one handed over to) is the service's main process from now on. */
  mainPid(pid: number): void {
    this.#send(`MAINPID=${pid}\nSTATUS=handed over to pid ${pid}`);
  }

  /** Starts the WATCHDOG=1 pings, if the unit asked for them. */
  startWatchdog(): void {
    if (this.#watchdogMs === undefined || this.#watchdog !== undefined) return;
    this.#send('WATCHDOG=1');
    this.#watchdog = setInterval(() => this.#send('WATCHDOG=1'), this.#watchdogMs);
    this.#watchdog.unref();
  }

  /**
   * The first scan is under way: pushes the start timeout back every few seconds while `progress()` keeps
   * changing, so 500 vassals may take as long as they need but a wedged start still fails. Returns a stop.
   */
  extendWhile(progress: () => string): () => void {
    let last = progress();
    const timer = setInterval(() => {
      const now = progress();
      if (now !== last) this.#send(`EXTEND_TIMEOUT_USEC=${EXTEND_BY_US}`);
      last = now;
    }, EXTEND_EVERY_MS);
    timer.unref();
    return () => clearInterval(timer);
  }

  /** READY=1 with the status line. */
  ready(counts: VassalCounts): void {
    this.#lastStatus = statusLine(counts);
    this.#send(`READY=1\nSTATUS=${this.#lastStatus}`);
  }

  /** RELOADING=1 (SIGHUP): the unit shows "reloading" until the next {@link ready}. */
  reloading(): void {
    this.#send(`RELOADING=1\nMONOTONIC_USEC=${process.hrtime.bigint() / 1000n}\nSTATUS=reloading every vassal`);
  }

  /** STOPPING=1: the unit shows "deactivating" while every vassal stops. */
  stopping(vassals: number): void {
    this.#stopStatus();
    this.#send(`STOPPING=1\nSTATUS=stopping ${vassals} vassal${vassals === 1 ? '' : 's'}`);
  }

  /** STATUS= with the counts; sent at most once a second, and only when it changed. */
  status(counts: VassalCounts): void {
    const line = statusLine(counts);
    if (line === this.#lastStatus && this.#pendingStatus === undefined) return;
    this.#pendingStatus = line;
    if (this.#statusTimer !== undefined) return;
    const wait = Math.max(0, this.#lastStatusAt + STATUS_EVERY_MS - Date.now());
    this.#statusTimer = setTimeout(() => {
      this.#statusTimer = undefined;
      const text = this.#pendingStatus;
      this.#pendingStatus = undefined;
      if (text === undefined || text === this.#lastStatus) return;
      this.#lastStatus = text;
      this.#lastStatusAt = Date.now();
      this.#send(`STATUS=${text}`);
    }, wait);
    this.#statusTimer.unref();
  }

  /** Stops the timers (the daemon is exiting). */
  close(): void {
    clearInterval(this.#watchdog);
    this.#watchdog = undefined;
    this.#stopStatus();
  }

  #stopStatus(): void {
    clearTimeout(this.#statusTimer);
    this.#statusTimer = undefined;
    this.#pendingStatus = undefined;
  }
}

const STATE_ORDER = ['running', 'spawning', 'reloading', 'backoff', 'cursed', 'invalid', 'stopping', 'stopped'];

/** "12 vassals: 10 running, 1 cursed, 1 invalid" (states in a fixed order; none: "no vassals"). */
export const statusLine = (counts: VassalCounts): string => {
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  if (total === 0) return 'no vassals';
  const rank = (state: string): number => (STATE_ORDER.includes(state) ? STATE_ORDER.indexOf(state) : STATE_ORDER.length);
  const parts = Object.entries(counts)
    .filter(([, n]) => n > 0)
    .sort(([a], [b]) => rank(a) - rank(b))
    .map(([state, n]) => `${n} ${state}`);
  return `${total} vassal${total === 1 ? '' : 's'}: ${parts.join(', ')}`;
};

const loadSdNotify = (): SdNotify => createRequire(import.meta.url)('sd-notify') as SdNotify;
