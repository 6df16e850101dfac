import type { CronSpec } from '@emperor/config';
import { matches } from './cron-match.js';

/** The clock a scheduler reads and the timers it sets; tests pass their own. */
export interface Clock {
  now: () => number;
  setTimeout: (fn: () => void, ms: number) => unknown;
  clearTimeout: (handle: unknown) => void;
}

export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** A job's identity across reloads: its schedule and command. */
export const jobKey = (job: CronSpec): string => JSON.stringify([job.schedule, job.command]);

/**
 * Fires `run(job, minute)` for every job whose schedule matches each minute, at the start of that minute.
 * `lastRun` (owned by the vassal, so it survives reloads) makes sure a job never runs twice for the same
 * minute, even when the scheduler is replaced mid-minute by a reload.
 */
export class CronScheduler {
  readonly #jobs: CronSpec[];
  readonly #run: (job: CronSpec, minute: Date) => void;
  readonly #clock: Clock;
  readonly #lastRun: Map<string, number>;
  #timer: unknown;
  #stopped = false;

  constructor(jobs: CronSpec[], run: (job: CronSpec, minute: Date) => void, lastRun: Map<string, number>, clock: Clock = realClock) {
    this.#jobs = jobs;
    this.#run = run;
    this.#clock = clock;
    this.#lastRun = lastRun;
  }

  start(): void {
    if (this.#jobs.length > 0) this.#arm();
  }

  #arm(): void {
    if (this.#stopped) return;
    const now = this.#clock.now();
    const next = Math.floor(now / 60_000) * 60_000 + 60_000;
    this.#timer = this.#clock.setTimeout(() => this.tick(new Date(next)), next - now);
  }

  /** Runs what matches `minute` (the timer calls this; tests may too). */
  tick(minute: Date): void {
    const m = Math.floor(minute.getTime() / 60_000) * 60_000;
    for (const job of this.#jobs) {
      const key = jobKey(job);
      if (this.#lastRun.get(key) === m || !matches(job, new Date(m))) continue;
      this.#lastRun.set(key, m);
      this.#run(job, new Date(m));
    }
    this.#arm();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
  }
}
