import { join } from 'node:path';
import type { DaemonSpec, VassalSpec } from '@emperor/config';
import type { Jail, Output, ShimProcess } from '@emperor/jail';
import type { EventBus } from './events.js';
import { DEFAULT_BACKOFF, nextRespawn } from './backoff.js';
import { logOutput } from './log-file.js';
import { stopProcess } from './supervised.js';

/** What a daemon needs from its vassal. */
export interface DaemonContext {
  vassal: string;
  jail: Jail;
  spec: VassalSpec;
  logDir: string;
  bus: EventBus;
  /** A control daemon died: the vassal stops. */
  onControlDeath: () => void;
  /** Aborted by a stop of the vassal: a smart daemon's first process is not waited for any more. */
  signal?: AbortSignal;
}

/**
 * One attached daemon in a vassal's jail: started before the app, restarted with backoff when it dies
 * (without touching the app or the other daemons), stopped with its stop signal then SIGKILL of its whole
 * process group after the vassal's stop-timeout. A smart daemon daemonizes itself: it is followed through
 * its pidfile, read and signalled from inside the jail (as the vassal user), never through host paths.
 */
export class AttachedDaemon {
  readonly index: number;
  readonly spec: DaemonSpec;
  restarts = 0;
  #ctx: DaemonContext;
  #proc: ShimProcess | undefined;
  #pid: number | undefined;
  #stopping = false;
  #failures = 0;
  #startedAt = 0;
  #timer: NodeJS.Timeout | undefined;
  readonly #log: Output;

  constructor(index: number, spec: DaemonSpec, ctx: DaemonContext) {
    this.index = index;
    this.spec = spec;
    this.#ctx = ctx;
    this.#log = logOutput(join(ctx.logDir, ctx.vassal, `daemon-${index}.log`), ctx.spec.gid);
  }

  get pid(): number | undefined {
    return this.#pid;
  }

  #emit(event: 'daemon-spawned' | 'daemon-exited' | 'daemon-backoff', detail: Record<string, unknown>): void {
    this.#ctx.bus.publish(this.#ctx.vassal, event, { daemon: this.index, command: this.spec.command.at(-1), ...detail });
  }

  /** A process of this daemon's in the jail, through the shim: the daemon itself (logged), or a check. */
  #exec(argv: string[], log = true): ShimProcess {
    return this.#ctx.jail.start(log ? `daemon-${this.index}` : `check-${this.index}`, { argv, env: this.#ctx.spec.env, cwd: this.spec.chdir, output: log ? this.#log : 'null' });
  }

  /** Starts it; resolves once it runs (a smart daemon: once its pidfile names a live process). */
  async start(): Promise<void> {
    this.#stopping = false;
    this.#startedAt = Date.now();
    const proc = this.#exec(this.spec.command);
    this.#proc = proc;
    try {
      this.#pid = (await proc.started).pid;
    } catch {
      this.#pid = undefined;
    }
    if (this.spec.kind === 'smart') {
      // It forks into the background and its first process exits: within ready-timeout, or it is killed
      // and counts as a failure (a first process that never exits would hold the vassal in spawning).
      const signal = this.#ctx.signal;
      let t: NodeJS.Timeout | undefined;
      const onAbort = () => proc.kill('SIGKILL');
      signal?.addEventListener('abort', onAbort, { once: true });
      const exited = await Promise.race([proc.exited.then(() => true), new Promise<boolean>((r) => (t = setTimeout(() => r(false), this.#ctx.spec.readyTimeoutMs)))]);
      clearTimeout(t);
      signal?.removeEventListener('abort', onAbort);
      this.#proc = undefined;
      if (!exited) {
        proc.kill('SIGKILL'); // its whole group, through the shim
        await proc.exited;
        this.#emit('daemon-exited', { pid: this.#pid, error: `smart-attach-daemon: expected its first process to exit within ready-timeout (${this.#ctx.spec.readyTimeoutMs / 1000} s), got one still running; killed` });
        return this.#died({ code: null, signal: 9 });
      }
      if (signal?.aborted) return;
      const ok = await this.#waitPidfile();
      this.#emit('daemon-spawned', { smart: true, running: ok });
      if (!ok) return this.#died({ code: null, signal: null });
      this.#timer = setTimeout(() => this.#guard(this.#checkSmart()), this.spec.freqSeconds * 1000);
      return;
    }
    this.#emit('daemon-spawned', { pid: this.#pid });
    void proc.exited.then((exit) => {
      if (this.#proc === proc) {
        this.#proc = undefined;
        this.#died(exit);
      }
    });
  }

  /**
   * Takes over this daemon as a previous emperor left it: `proc`, its running process (a plain daemon), is
   * followed from now on; a smart daemon is followed through its pidfile again. Nothing running (it died
   * while no emperor ran): started, as a death would have.
   */
  async adopt(proc: ShimProcess | undefined): Promise<void> {
    this.#stopping = false;
    this.#startedAt = Date.now();
    if (this.spec.kind === 'smart') {
      this.#timer = setTimeout(() => this.#guard(this.#checkSmart()), 0);
      return;
    }
    if (proc === undefined) return this.start();
    this.#proc = proc;
    this.#pid = proc.pid;
    void proc.exited.then((exit) => {
      if (this.#proc === proc) {
        this.#proc = undefined;
        this.#died(exit);
      }
    });
  }

  /** Handed to the next emperor: no timer of ours goes on; the daemon runs on. */
  detach(): void {
    this.#stopping = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#proc = undefined;
  }

  /** Runs `sh -c SCRIPT` in the jail as the vassal user; resolves with its exit code. */
  async #inJail(script: string): Promise<number | null> {
    if (!this.#ctx.jail.running) return null;
    return (await this.#exec(['/bin/sh', '-c', script], false).exited).code;
  }

  #pidfileScript(action: string): string {
    const f = this.spec.pidfile?.replace(/'/g, "'\\''") ?? '';
    return `p=$(cat '${f}' 2>/dev/null) && [ -n "$p" ] && ${action} "$p"`;
  }

  async #waitPidfile(): Promise<boolean> {
    const deadline = Date.now() + this.spec.freqSeconds * 1000;
    while (!this.#stopping && !this.#ctx.signal?.aborted && Date.now() < deadline) {
      if ((await this.#inJail(this.#pidfileScript('kill -0'))) === 0) return true;
      await new Promise((r) => setTimeout(r, 100));
    }
    return false;
  }

  async #checkSmart(): Promise<void> {
    this.#timer = undefined;
    if (this.#stopping) return;
    const alive = (await this.#inJail(this.#pidfileScript('kill -0'))) === 0;
    if (this.#stopping) return; // stopped while we were checking: nothing more to schedule
    if (alive) {
      this.#timer = setTimeout(() => this.#guard(this.#checkSmart()), this.spec.freqSeconds * 1000);
      return;
    }
    this.#died({ code: null, signal: null });
  }

  #died(exit: { code: number | null; signal: number | null }): void {
    this.#emit('daemon-exited', { pid: this.#pid, code: exit.code, signal: exit.signal });
    this.#pid = undefined;
    if (this.#stopping) return;
    if (this.spec.control) return this.#ctx.onControlDeath();
    // The app's respawn policy, without the curse (a daemon is restarted for as long as its vassal runs).
    const policy = { ...DEFAULT_BACKOFF, maxDelayMs: this.spec.maxThrottleMs ?? DEFAULT_BACKOFF.maxDelayMs, curseAfter: Infinity };
    if (Date.now() - this.#startedAt >= policy.minUptimeMs) this.#failures = 0;
    this.#failures++;
    this.restarts++;
    const next = nextRespawn(this.#failures, policy);
    const delay = next.curse ? policy.maxDelayMs : next.delayMs;
    if (delay > 0) this.#emit('daemon-backoff', { delayMs: delay });
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (!this.#stopping) this.#guard(this.start());
    }, delay);
  }

  /** Work started from a timer: a failure (the jail went away meanwhile) is reported, never thrown. */
  #guard(work: Promise<void>): void {
    work.catch((e: unknown) => {
      if (!this.#stopping) this.#emit('daemon-exited', { error: e instanceof Error ? e.message : String(e) });
    });
  }

  /** Its reload signal if it has one (notifypid for smart daemons), else a stop and a start. */
  async reload(stopTimeoutMs: number): Promise<void> {
    const sig = this.spec.reloadSignal;
    if (sig !== undefined && this.spec.kind === 'plain' && this.#proc !== undefined) {
      this.#proc.kill(sig as NodeJS.Signals);
      return;
    }
    if (sig !== undefined && this.spec.kind === 'smart' && this.spec.notifyPid) {
      await this.#inJail(this.#pidfileScript(`kill -${String(sig).replace(/^SIG/, '')}`));
      return;
    }
    await this.stop(stopTimeoutMs);
    await this.start();
  }

  /** Stop signal to the whole group, SIGKILL after the timeout: no grandchild survives. */
  async stop(timeoutMs: number): Promise<void> {
    this.#stopping = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    const sig = String(this.spec.stopSignal).replace(/^SIG/, '');
    if (this.spec.kind === 'smart') {
      // Signalled from inside the jail, as the vassal user; SIGKILL once stop-timeout has passed. Anything
      // it forked that outlives it goes with the jail's teardown (its init's death ends the pid namespace).
      await this.#inJail(this.#pidfileScript(`kill -${sig}`));
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline && (await this.#inJail(this.#pidfileScript('kill -0'))) === 0) await new Promise((r) => setTimeout(r, 50));
      await this.#inJail(this.#pidfileScript('kill -KILL'));
      return;
    }
    const proc = this.#proc;
    this.#proc = undefined;
    if (proc === undefined) return;
    await stopProcess(proc, this.spec.stopSignal as NodeJS.Signals | number, Date.now() + timeoutMs);
    this.#emit('daemon-exited', { pid: this.#pid, stopped: true });
    this.#pid = undefined;
  }
}
