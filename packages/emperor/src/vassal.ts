import { join } from 'node:path';
import { formatProblem, type CheckResult, type CronSpec, type VassalSpec } from '@emperor/config';
import { EmperorError, isEmperorError } from '@emperor/errors';
import { Jail, limitsOf, netTotals, type Hierarchy, type JailNetwork, type NetCounters, type ShimProcess } from '@emperor/jail';
import { PtyRouter } from '@emperor/pty';
import type { Logger } from 'pino';
import { isDeepStrictEqual } from 'node:util';
import { AttachedDaemon } from './attached-daemon.js';
import { DEFAULT_BACKOFF, nextRespawn, type BackoffPolicy } from './backoff.js';
import { CronScheduler, realClock, type Clock } from './cron-scheduler.js';
import type { EventBus, EventName } from './events.js';
import { logOutput } from './log-file.js';
import { defaultSocketOwner, makeRunDir, removeRunDir } from './run-dir.js';
import { classifyChange } from './spec-diff.js';
import type { Logins } from './logins.js';
import { stopProcess } from './supervised.js';
import { TouchWatcher } from './touch-watcher.js';
import type { CustomerBudget } from './customer-budget.js';
import type { StreamTimeouts } from './emperor.js';
import { CustomerRequests } from './customer-requests.js';
import { Cancelled, readiness } from './readiness.js';
import { asSaved, fingerprint, type SavedVassal, type VassalStates } from './vassal-state.js';

/** Daemons get at least this long after the app has stopped, even when the app used the whole stop-timeout. */
const DAEMON_MIN_GRACE_MS = 1_000;

/** The named states of a vassal. */
export type VassalState = 'spawning' | 'running' | 'reloading' | 'stopping' | 'stopped' | 'backoff' | 'cursed' | 'invalid';

/** Where a vassal keeps things, and how it behaves. */
export interface VassalContext {
  runDir: string;
  logDir: string;
  cgroupParent: string;
  /** The cgroup hierarchies, found once by the emperor (default: detected for each jail). */
  hierarchies?: Hierarchy[];
  /** The root-only directory of the jails' control sockets (RUN/shims). */
  controlDir: string;
  /** Runs a jail build (run dir, namespaces, mounts, cgroups) when one of the emperor's build slots is free. */
  buildSlot?: <T>(build: () => Promise<T>) => Promise<T>;
  bus: EventBus;
  log: Logger;
  backoff?: BackoffPolicy;
  /** The clock cron reads (tests inject one). */
  clock?: Clock;
  /** Makes the customer's control socket (status, logs, reload, restart of this vassal only) at a path. */
  customerControl?: (vassal: string, path: string, uid: number, gid: number) => { listen(): Promise<void>; close(): Promise<void> };
  /** Connections each customer may hold across their sockets (pty sessions count). */
  customers?: CustomerBudget;
  /** Where `emperor pty` finds the vassals a uid may enter. */
  logins?: Logins;
  timeouts?: StreamTimeouts;
  /** Where what the emperor knows of each vassal is kept for the next emperor (RUN/state). */
  states?: VassalStates;
  /** True (once) when a previous emperor left this vassal's jail running: it is adopted, not built again. */
  adoptable?: (name: string) => boolean;
  /** The network of net = nat jails (veths, nftables, counters). */
  network?: JailNetwork;
  /** Called after every state change (the announcer subscribes a running vassal, unsubscribes any other). */
  onState?: (vassal: Vassal) => void;
}

/** The app: one process in the jail (the shim's), with its start time. */
interface App {
  proc: ShimProcess;
  pid: number | undefined;
  startedAt: number;
  /** The jail's OOM kill count when the app started: a higher one at its exit means the kernel killed it. */
  oomKills: number;
}


/**
 * One vassal: its last good spec, its jail and its app, and the rules that move it between states.
 * Operations are serialized (one at a time, in order), so a burst of file events never interleaves.
 */
export class Vassal {
  readonly name: string;
  state: VassalState = 'stopped';
  spec: VassalSpec | undefined;
  jail: Jail | undefined;
  restarts = 0;
  lastError: string | undefined;
  bornAt: number | undefined;
  lastModAt: number | undefined;
  readonly #ctx: VassalContext;
  readonly #policy: BackoffPolicy;
  #app: App | undefined;
  #runDir: string | undefined;
  #touch: TouchWatcher[] = [];
  /** What the touch watchers saw last (saved for the next emperor, which compares its first look to it). */
  #touchSeen = new Map<string, { paths: string[]; seen: string[] }>();
  readonly #daemonTouchRate = new CustomerRequests();
  /** The uid this vassal is listed for in the login directory, while it is. */
  #listedFor: number | undefined;
  #queue: Promise<void> = Promise.resolve();
  #failures = 0;
  #timer: NodeJS.Timeout | undefined;
  #daemons: AttachedDaemon[] = [];
  #router: PtyRouter | undefined;
  #customerControl: { listen(): Promise<void>; close(): Promise<void> } | undefined;
  #cron: CronScheduler | undefined;
  /** Minute each cron job last ran: kept across reloads so no job runs twice for one minute. */
  readonly #cronLastRun = new Map<string, number>();
  readonly #cronRunning = new Map<string, ShimProcess>();
  /** Aborted by stop, restart and shutdown: cuts short a spawn or reload waiting for readiness. */
  #cancel = new AbortController();
  #customerPending: 'reload' | 'restart' | undefined;
  readonly #customerRate = new CustomerRequests();
  #homeWarned = false;
  /** Handed over to the next emperor ({@link detach}): nothing more is saved or started. */
  #detached = false;
  #persistQueued = false;
  /** The jail a teardown is stopping (no longer `jail`), for {@link kill}. */
  #stoppingJail: Jail | undefined;
  /** The jail has a network attachment (net = nat) to remove at teardown. */
  #netAttached = false;
  /** The counters of the previous jail of this vassal: a rebuilt jail's counters go on from them. */
  #netCarry: NetCounters | undefined;

  constructor(name: string, ctx: VassalContext) {
    this.name = name;
    this.#ctx = ctx;
    this.#policy = ctx.backoff ?? DEFAULT_BACKOFF;
  }

  #network(): JailNetwork {
    const n = this.#ctx.network;
    if (n === undefined) throw new EmperorError('EMPEROR_ERR_NET', `${this.name}: network: expected an emperor with a network for net = nat, got none`, { hint: 'a bug: report it' });
    return n;
  }

  /** Its jail's network (net = nat): address and the counters last read from the kernel. */
  get net(): { address: string; counters: NetCounters | undefined } | undefined {
    const a = this.#netAttached ? this.#ctx.network?.attachment(this.name) : undefined;
    return a === undefined ? undefined : { address: a.address, counters: this.#ctx.network?.cached(this.name) };
  }

  /** The app's host pid, when it runs. */
  get pid(): number | undefined {
    return this.#app?.pid;
  }

  #emit(event: EventName, detail: Record<string, unknown> = {}): void {
    this.#ctx.bus.publish(this.name, event, { state: this.state, ...detail });
    this.#persist();
  }

  /**
   * Saves what the next emperor needs (RUN/state/NAME.json), after each event: a stopped vassal leaves
   * nothing (the next emperor starts it afresh). Never throws: a full disk costs the history, not the vassal.
   */
  #persist(): void {
    // Once a turn of the event loop, however many changes it made (a spawn is three).
    if (this.#persistQueued || this.#ctx.states === undefined) return;
    this.#persistQueued = true;
    setImmediate(() => {
      this.#persistQueued = false;
      this.#persistNow();
    });
  }

  #persistNow(): void {
    const states = this.#ctx.states;
    if (states === undefined || this.#detached) return;
    try {
      if (this.spec === undefined || (this.state === 'stopped' && this.jail === undefined)) return states.remove(this.name);
      states.write(this.name, {
        version: 1, fingerprint: fingerprint(this.spec), spec: this.spec, ...(this.jail?.label ? { jail: this.jail.label } : {}), state: this.state, restarts: this.restarts, failures: this.#failures,
        ...(this.lastError === undefined ? {} : { lastError: this.lastError }), ...(this.bornAt === undefined ? {} : { bornAt: this.bornAt }),
        ...(this.lastModAt === undefined ? {} : { lastModAt: this.lastModAt }),
        cronLastRun: Object.fromEntries(this.#cronLastRun), daemonRestarts: this.#daemons.map((d) => d.restarts),
        ...(this.#touchSeen.size === 0 ? {} : { touchSeen: Object.fromEntries(this.#touchSeen) }),
      });
    } catch (err) {
      this.#ctx.log.warn({ vassal: this.name, err }, `${this.name}: its state could not be saved for the next emperor`);
    }
  }

  #set(state: VassalState): void {
    this.state = state;
    this.#persist();
    this.#ctx.onState?.(this);
  }

  /** The host path of its listening socket (what a router connects to), while it has a run dir. */
  get socketPath(): string | undefined {
    const s = this.spec?.socket;
    return s === undefined || this.#runDir === undefined ? undefined : join(this.#runDir, s.path);
  }

  /** Runs an operation after the ones before it; errors are recorded, never thrown at the caller. */
  #enqueue(op: () => Promise<void>): Promise<void> {
    this.#queue = this.#queue.then(op).catch((e: unknown) => {
      if (e instanceof Cancelled) return; // a stop or restart is queued right behind
      this.lastError = isEmperorError(e) ? e.describe() : String(e);
      this.#ctx.log.error({ vassal: this.name, err: e }, 'vassal operation failed');
      this.#emit('error', { error: this.lastError });
    });
    return this.#queue;
  }

  /** A new or changed vassal file: spawn, reload, or keep the last good config and report the problem. */
  load(result: CheckResult): Promise<void> {
    return this.#enqueue(async () => {
      this.lastModAt = Date.now();
      if (!result.ok && this.spec === undefined) {
        // Broken while no emperor ran, its jail still running: adopted with the last good spec, which runs on.
        const saved = this.#ctx.states?.read(this.name);
        if (saved !== undefined && this.#ctx.adoptable?.(this.name) === true) await this.#adopt(saved.spec);
      }
      if (!result.ok) {
        this.lastError = result.problems.map(formatProblem).join('; ');
        if (this.spec === undefined || this.state === 'invalid') this.#set('invalid');
        this.#emit('invalid', { problems: result.problems.map(formatProblem), running: this.spec !== undefined && this.jail !== undefined });
        return;
      }
      this.lastError = undefined;
      if (this.spec === undefined && this.#ctx.adoptable?.(this.name) === true) return this.#adopt(result.spec);
      if (this.spec === undefined) {
        const saved = this.#ctx.states?.read(this.name);
        // Cursed under the previous emperor and the file unchanged: still cursed (only a change lifts it).
        if (saved !== undefined && saved.state === 'cursed' && saved.fingerprint === fingerprint(result.spec)) return this.#stayCursed(result.spec, saved);
      }
      return this.#apply(result.spec);
    });
  }

  /** A good spec, for a vassal that runs (reload by what changed) or not (spawn). Inside an operation. */
  async #apply(spec: VassalSpec): Promise<void> {
    const before = this.spec;
    if (before === undefined || this.jail === undefined || !this.jail.running) {
      this.#failures = 0;
      return this.#spawn(spec);
    }
    // Compared as saved (a spec a previous emperor saved has lost its undefined keys).
    const { change, limits, net } = classifyChange(asSaved(before), asSaved(spec));
    if (this.state === 'cursed' || this.state === 'backoff') {
      // A changed file lifts the curse: start over with the new config.
      this.#failures = 0;
      await this.#teardown();
      return this.#spawn(spec);
    }
    if (change === 'jail') {
      await this.#teardown();
      return this.#spawn(spec, 'restarted');
    }
    if (limits) {
      this.jail.cgroups.apply(limitsOf(spec));
      this.#emit('limits');
    }
    if (net && this.#netAttached) {
      // Rules only (net-allow, net-deny, net-rate, net-connections): rewritten in one transaction; the app
      // and its connections go on. A failure leaves the old rules and is reported; the app is not touched.
      try {
        await this.#ctx.network?.update(spec);
        this.#emit('net-rules', { rules: { allow: spec.netAllow.map((r) => r.text), deny: spec.netDeny.map((r) => r.text) } });
      } catch (e) {
        this.lastError = isEmperorError(e) ? e.describe() : String(e);
        this.#emit('error', { error: this.lastError });
      }
    }
    this.spec = spec;
    if (change !== 'limits') {
      if (!isDeepStrictEqual(asSaved(before).daemons, asSaved(spec).daemons)) {
        await this.#stopDaemons(Date.now() + before.stopTimeoutMs);
        await this.#startDaemons(spec, this.#cancel.signal);
      } else {
        for (const d of this.#daemons) await d.reload(spec.stopTimeoutMs);
      }
      this.#startCron(spec);
      this.#startTouch(spec);
      await this.#reloadApp();
    }
  }

  #restore(saved: SavedVassal): void {
    this.restarts = saved.restarts;
    this.#failures = saved.failures;
    this.lastError = saved.lastError;
    this.bornAt = saved.bornAt;
    for (const [k, v] of Object.entries(saved.cronLastRun)) this.#cronLastRun.set(k, v);
  }

  #stayCursed(spec: VassalSpec, saved: SavedVassal): void {
    this.#restore(saved);
    this.spec = spec;
    this.#set('cursed');
    this.#emit('cursed', { failures: this.#failures, error: this.lastError, previousEmperor: true });
  }

  /**
   * Takes over the jail a previous emperor left running (its shim answers on RUN/shims/NAME.sock): the same
   * spec (the jail's label is the fingerprint of the spec it was built with) is adopted as it runs; a spec
   * changed while no emperor ran is adopted with the old one, then goes the normal reload path; a jail whose
   * spec cannot be known (no saved state matching its label) is stopped and built afresh.
   */
  async #adopt(spec: VassalSpec): Promise<void> {
    const saved = this.#ctx.states?.read(this.name);
    if (saved !== undefined) this.#restore(saved);
    const runDir = join(this.#ctx.runDir, 'vassals', this.name);
    const fresh = fingerprint(spec);
    const built = saved?.jail !== undefined ? saved.spec : spec;
    const adopted = await Jail.adopt(built, { runDir, controlDir: this.#ctx.controlDir, cgroupParent: this.#ctx.cgroupParent, ...(this.#ctx.hierarchies ? { hierarchies: this.#ctx.hierarchies } : {}) });
    if (adopted === undefined) {
      // A dead shim's socket: what it left (run dir, cgroups) is cleared by the build.
      this.#ctx.log.info({ vassal: this.name }, `${this.name}: the previous emperor's jail is gone; building it again`);
      return this.#apply(spec);
    }
    const { jail, processes } = adopted;
    // The saved state of this very jail says what runs in it (reloads included); else a jail built from
    // this very file is as it was built.
    const known = saved !== undefined && saved.jail === jail.label ? saved.spec : jail.label === fresh ? spec : undefined;
    if (known === undefined) {
      this.#ctx.log.warn({ vassal: this.name, label: jail.label }, `${this.name}: a running jail of unknown spec (no saved state for it); stopping it and building it again`);
      return this.#rebuildAdopted(built, jail, runDir, spec);
    }
    if (known.net === 'nat') {
      // The slot is the kernel's to tell (the link's alias); the rules are rewritten for this emperor.
      let adoptedNet = false;
      try {
        adoptedNet = await this.#network().adopt(known);
      } catch (e) {
        this.#ctx.log.warn({ vassal: this.name, err: e }, `${this.name}: the network of the previous emperor's jail could not be taken over`);
      }
      if (!adoptedNet) {
        // Its emperor died while it was being built (before its network was attached).
        this.#ctx.log.warn({ vassal: this.name }, `${this.name}: a running net = nat jail without its network; stopping it and building it again`);
        return this.#rebuildAdopted(known, jail, runDir, spec);
      }
      this.#netAttached = true;
    }
    await this.#takeOver(known, jail, processes, runDir);
    if (fingerprint(known) !== fresh) {
      this.#ctx.log.info({ vassal: this.name }, `${this.name}: its file changed while no emperor ran; reloading it`);
      await this.#apply(spec);
    } else if (saved?.state === 'reloading' && saved.jail === jail.label) {
      // The previous emperor died during a reload: done again (the old and new apps were sorted out above).
      this.#ctx.log.info({ vassal: this.name }, `${this.name}: the previous emperor was reloading it; reloading it again`);
      await this.#reloadApp();
    }
  }

  /** Stops a jail found running that cannot be taken over as it is (built from `built`), then builds `spec`. */
  async #rebuildAdopted(built: VassalSpec, jail: Jail, runDir: string, spec: VassalSpec): Promise<void> {
    this.spec = built;
    this.jail = jail;
    this.#runDir = runDir;
    await this.#teardown();
    this.spec = undefined;
    return this.#apply(spec);
  }

  /** Makes the adopted jail and its processes this vassal's, as a {@link #build} would have left them. */
  async #takeOver(spec: VassalSpec, jail: Jail, processes: ShimProcess[], runDir: string): Promise<void> {
    this.spec = spec;
    this.jail = jail;
    this.#runDir = runDir;
    this.#watchJail(jail);
    this.bornAt ??= Date.now();
    const kind = (p: ShimProcess) => p.id.replace(/-\d+$/, '');
    const seq = (p: ShimProcess) => Number(/-(\d+)$/.exec(p.id)?.[1] ?? 0);
    const running = processes.filter((p) => p.running).sort((a, b) => seq(a) - seq(b));
    // The previous emperor's helpers (touch watchers, smart-daemon checks) are started again by this one.
    for (const p of running) if (kind(p) === 'touch' || kind(p).startsWith('check-')) p.kill('SIGKILL');
    // Logins of the previous emperor: it held their terminals (the pty masters), gone with it. A hangup,
    // as a terminal that closed gives; a shell that ignores it runs on, within the jail's limits.
    for (const p of running) if (kind(p) === 'pty') p.kill('SIGHUP');
    await this.#openSockets(spec, jail, runDir);
    const saved = this.#ctx.states?.read(this.name);
    this.#daemons = spec.daemons.map((d, i) => new AttachedDaemon(i, d, {
      vassal: this.name, jail, spec, logDir: this.#ctx.logDir, bus: this.#ctx.bus, signal: this.#cancel.signal,
      onControlDeath: () => void this.stop(),
    }));
    for (const d of this.#daemons) {
      d.restarts = saved?.daemonRestarts[d.index] ?? 0;
      const mine = running.filter((p) => kind(p) === `daemon-${d.index}`);
      for (const old of mine.slice(0, -1)) old.kill('SIGKILL'); // a restart of it was under way
      await d.adopt(mine.at(-1));
    }
    this.#startCron(spec);
    this.#startTouch(spec, saved?.touchSeen);
    const apps = running.filter((p) => kind(p) === 'app');
    // Several: a reload was under way. The newest is the app; the others were being stopped.
    for (const old of apps.slice(0, -1)) void this.#stopApp({ proc: old, pid: old.pid, startedAt: 0, oomKills: 0 }, spec);
    const proc = apps.at(-1);
    if (proc !== undefined) {
      const app: App = { proc, pid: proc.pid, startedAt: Date.now(), oomKills: jail.usage().oomKills };
      this.#watchApp(app);
      this.#app = app;
      this.#set('running');
      this.#emit('adopted', { pid: app.pid, jail: jail.initPid, restarts: this.restarts });
      return;
    }
    if (spec.command === undefined) {
      this.#set('running');
      this.#emit('adopted', { jail: jail.initPid, restarts: this.restarts });
      return;
    }
    // The app ended while no emperor ran (or the previous one died before starting it): the respawn policy.
    const ended = processes.filter((p) => kind(p) === 'app').at(-1);
    this.#set('running');
    this.#emit('adopted', { jail: jail.initPid, restarts: this.restarts, app: 'not running' });
    if (ended !== undefined) {
      const exit = await ended.exited;
      this.lastError = `the app ended (${exit.signal === null ? `code ${exit.code}` : `signal ${exit.signal}`}) while no emperor was running`;
      this.#emit('exited', { pid: ended.pid, code: exit.code, signal: exit.signal });
      return this.#failed();
    }
    const app = await this.#startApp(spec, this.#cancel.signal);
    if (app === undefined) return this.#failed();
    this.#app = app;
    this.#emit('spawned', { pid: app.pid });
  }

  /**
   * Lets the jail run on for the next emperor (an upgrade): the emperor's own parts (timers, watchers, the
   * pty router, the customer socket) stop; the app, the daemons and the jail are not touched.
   */
  async detach(): Promise<void> {
    this.#abortWaits();
    await this.#enqueue(async () => {
      this.#persistNow();
      this.#detached = true;
      if (this.#timer !== undefined) clearTimeout(this.#timer);
      this.#cron?.stop();
      for (const w of this.#touch) w.stop();
      for (const d of this.#daemons) d.detach();
      await this.#router?.close().catch(() => undefined);
      await this.#customerControl?.close().catch(() => undefined);
      if (this.#listedFor !== undefined) this.#ctx.logins?.remove(this.#listedFor, this.name);
      this.jail?.detach();
    });
  }

  /** Graceful reload (the API's reload, SIGHUP): each daemon's reload signal, then the app. */
  reload(): Promise<void> {
    return this.#enqueue(async () => {
      if (!(this.jail?.running && this.state === 'running') || this.spec === undefined) return;
      for (const d of this.#daemons) await d.reload(this.spec.stopTimeoutMs);
      await this.#reloadApp();
    });
  }

  /** The attached daemons (for status). */
  get daemons(): readonly AttachedDaemon[] {
    return this.#daemons;
  }

  async #startDaemons(spec: VassalSpec, signal: AbortSignal): Promise<void> {
    const jail = this.jail;
    if (jail === undefined) return;
    this.#daemons = spec.daemons.map((d, i) => new AttachedDaemon(i, d, {
      vassal: this.name, jail, spec, logDir: this.#ctx.logDir, bus: this.#ctx.bus, signal,
      onControlDeath: () => void this.stop(),
    }));
    for (const d of this.#daemons) {
      await d.start();
      if (signal.aborted) throw new Cancelled();
    }
  }

  /**
   * Daemons stop after the app: stop signals last started first, all of them waited for together until
   * `deadline` (then SIGKILL), so a vassal's stop takes stop-timeout however many daemons it has.
   */
  async #stopDaemons(deadline: number): Promise<void> {
    const ds = this.#daemons;
    this.#daemons = [];
    await Promise.all([...ds].reverse().map((d) => d.stop(Math.max(0, deadline - Date.now()))));
  }

  /**
   * touch-reload: a touched path reloads the app, as a reload from the customer's socket would (same rate);
   * a daemon's `touch=` restarts that daemon (uWSGI's attach-daemon2), at the same rate.
   */
  #startTouch(spec: VassalSpec, saved?: SavedVassal['touchSeen']): void {
    for (const w of this.#touch) w.stop();
    this.#touch = [];
    this.#touchSeen.clear();
    const jail = this.jail;
    if (jail === undefined) return;
    // An adopted jail's watchers start from what the previous emperor's saw (same paths only): a path
    // touched while no emperor ran is a touch.
    const options = (key: string, paths: string[]) => {
      const before = saved?.[key];
      return {
        seen: before !== undefined && before.paths.join('\0') === paths.join('\0') ? before.seen : undefined,
        onSeen: (seen: string[]) => {
          this.#touchSeen.set(key, { paths, seen });
          this.#persist();
        },
      };
    };
    if (spec.touchReload.length > 0) {
      this.#touch.push(new TouchWatcher(jail, spec.touchReload, (path) => {
        const r = this.customerRequest('reload');
        this.#ctx.log.info({ vassal: this.name, path, outcome: r.outcome }, `${this.name}: ${path} was touched; reload ${r.outcome}`);
      }, options('app', spec.touchReload)));
    }
    for (const d of this.#daemons) {
      if (d.spec.touch.length === 0) continue;
      this.#touch.push(new TouchWatcher(jail, d.spec.touch, (path) => {
        const wait = this.#daemonTouchRate.take();
        this.#ctx.log.info({ vassal: this.name, daemon: d.index, path, outcome: wait > 0 ? 'rate-limited' : 'accepted' }, `${this.name}: ${path} was touched; restart of daemon ${d.index} ${wait > 0 ? 'rate-limited' : 'accepted'}`);
        if (wait > 0) return;
        void this.#enqueue(async () => {
          if (!this.#daemons.includes(d) || this.jail !== jail || !jail.running || this.spec === undefined) return;
          await d.stop(this.spec.stopTimeoutMs);
          await d.start();
        });
      }, options(`daemon-${d.index}`, d.spec.touch)));
    }
    for (const w of this.#touch) w.start();
  }

  #startCron(spec: VassalSpec): void {
    this.#cron?.stop();
    this.#cron = new CronScheduler(spec.cron, (job, minute) => this.#runCron(job, minute, spec), this.#cronLastRun, this.#ctx.clock ?? realClock);
    this.#cron.start();
  }

  /** One cron run, in the jail as the vassal user, with its timeout; unique jobs never overlap. */
  #runCron(job: CronSpec, minute: Date, spec: VassalSpec): void {
    const jail = this.jail;
    const key = JSON.stringify([job.schedule, job.command]);
    if (jail === undefined || !jail.running) return;
    if (job.unique && this.#cronRunning.has(key)) {
      this.#emit('cron', { command: job.command.at(-1), minute: minute.toISOString(), skipped: 'still running' });
      return;
    }
    let proc: ShimProcess;
    try {
      proc = jail.start('cron', { argv: job.command, env: spec.env, cwd: spec.chdir, output: logOutput(join(this.#ctx.logDir, this.name, 'cron.log'), spec.gid) });
    } catch (e) {
      // The jail stopped between the tick and now: this minute's run is lost, and said so.
      this.#emit('cron', { command: job.command.at(-1), minute: minute.toISOString(), skipped: isEmperorError(e) ? e.describe() : String(e) });
      return;
    }
    this.#cronRunning.set(key, proc);
    const timeoutMs = job.timeoutMs ?? spec.cronTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    if (timeoutMs !== undefined && timeoutMs > 0) timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    void proc.exited.then((exit) => {
      clearTimeout(timer);
      if (this.#cronRunning.get(key) === proc) this.#cronRunning.delete(key);
      this.#emit('cron', { command: job.command.at(-1), minute: minute.toISOString(), code: exit.code, signal: exit.signal });
    });
  }

  /** Full restart: a new jail and app; lifts a curse. */
  restart(): Promise<void> {
    this.#abortWaits();
    return this.#enqueue(async () => {
      const spec = this.spec;
      if (spec === undefined) return;
      this.#failures = 0;
      await this.#teardown();
      await this.#spawn(spec, 'restarted');
    });
  }

  /** Starts a stopped vassal again (the API's start). */
  start(): Promise<void> {
    return this.#enqueue(async () => {
      if (this.spec === undefined || (this.jail?.running && this.state !== 'cursed')) return;
      this.#failures = 0;
      await this.#teardown();
      await this.#spawn(this.spec);
    });
  }

  /** SIGKILL to the vassal's jail, running or being stopped (a shutdown past its deadline). */
  kill(): void {
    (this.jail ?? this.#stoppingJail)?.kill();
  }

  /** Cuts short whatever spawn or reload is waiting (readiness, a smart daemon), so what comes next runs now. */
  #abortWaits(): void {
    this.#cancel.abort();
    this.#cancel = new AbortController();
  }

  /**
   * A reload or restart asked for from the customer's own socket: at most one pending (a restart asked
   * while a reload waits turns it into a restart), and {@link CustomerRequests}' rate, so a customer cannot
   * keep the emperor rebuilding their jail.
   */
  customerRequest(action: 'reload' | 'restart'): { outcome: 'accepted' | 'coalesced' } | { outcome: 'rate-limited'; retryAfterMs: number } {
    if (this.#customerPending !== undefined) {
      if (action === 'restart') this.#customerPending = 'restart';
      return { outcome: 'coalesced' };
    }
    const wait = this.#customerRate.take();
    if (wait > 0) return { outcome: 'rate-limited', retryAfterMs: wait };
    this.#customerPending = action;
    void this.#queue.then(() => {
      const a = this.#customerPending ?? action;
      this.#customerPending = undefined;
      return a === 'restart' ? this.restart() : this.reload();
    });
    return { outcome: 'accepted' };
  }

  /** Graceful stop: the app's stop signal, SIGKILL after its stop-timeout, then the jail goes. */
  stop(): Promise<void> {
    this.#abortWaits();
    return this.#enqueue(async () => {
      if (this.state === 'stopped' && this.jail === undefined) return;
      this.#set('stopping');
      await this.#teardown();
      this.#set('stopped');
      // A nat jail's traffic as its counters had it when they were removed (kept: a start goes on from it).
      const net = this.#netCarry;
      this.#emit('stopped', net === undefined ? {} : { net: netTotals(net) });
    });
  }

  /**
   * Builds the jail and starts everything in it. Whatever fails on the way (run dir, jail, pty socket,
   * daemons) is reported, what was built is torn down, and the respawn policy decides what comes next.
   */
  async #spawn(spec: VassalSpec, event: EventName = 'spawned'): Promise<void> {
    this.spec = spec;
    this.#set('spawning');
    try {
      await this.#build(spec, event, this.#cancel.signal);
    } catch (e) {
      if (e instanceof Cancelled) throw e; // the stop or restart queued behind tears down what was built
      this.lastError = isEmperorError(e) ? e.describe() : String(e);
      this.#emit('error', { error: this.lastError });
      await this.#teardown();
      return this.#failed();
    }
  }

  async #build(spec: VassalSpec, event: EventName, signal: AbortSignal): Promise<void> {
    const gid = spec.gid;
    const socket = spec.socket === undefined ? undefined : { path: spec.socket.path, ...(spec.socket.owner ?? defaultSocketOwner(gid)), mode: spec.socket.mode };
    const slot = this.#ctx.buildSlot ?? ((build) => build());
    const runDir = await slot(async () => {
      if (signal.aborted) throw new Cancelled(); // a stop came while it waited for its slot
      const dir = await makeRunDir(this.#ctx.runDir, this.name, gid, spec.runDirSizeBytes);
      this.#runDir = dir;
      const network = spec.net === 'nat' ? this.#network() : undefined;
      await network?.prepare(spec);
      this.jail = await Jail.create(spec, { runDir: dir, controlDir: this.#ctx.controlDir, cgroupParent: this.#ctx.cgroupParent, socket, label: fingerprint(spec), ...(this.#ctx.hierarchies ? { hierarchies: this.#ctx.hierarchies } : {}), ...(network ? { resolvConf: network.resolvConfOf(this.name) } : {}) });
      if (network !== undefined) {
        // Before anything of the customer's runs in it: the jail's first packet is filtered and counted.
        this.#netAttached = true;
        const attached = await network.attach(spec, { pid: this.jail.initPid, start: this.jail.initStart }, this.#netCarry);
        this.#netCarry = undefined;
        this.#ctx.log.info({ vassal: this.name, address: attached.address, link: attached.link }, `${this.name}: network ${attached.address} via ${attached.link}`);
      }
      return dir;
    });
    if (this.jail === undefined) throw new Cancelled();
    const jail = this.jail;
    this.#watchJail(jail);
    this.bornAt = Date.now();
    if (jail.missingHome !== undefined && !this.#homeWarned) {
      this.#homeWarned = true;
      this.#ctx.log.warn({ vassal: this.name, home: jail.missingHome }, `${this.name}: home ${jail.missingHome} does not exist; HOME and the working directory are / (as login(1) does)`);
    }
    if (spec.subscriptions.length > 0) this.#ctx.log.warn({ vassal: this.name }, `${this.name}: subscriptions are validated but not sent by this version yet`);
    await this.#openSockets(spec, jail, runDir);
    // Daemons first, in the order written: the app usually needs its redis or memcached.
    await this.#startDaemons(spec, signal);
    this.#startCron(spec);
    this.#startTouch(spec);
    if (spec.command === undefined) {
      this.#set('running');
      this.#emit(event, { jail: jail.initPid });
      return;
    }
    const app = await this.#startApp(spec, signal);
    if (app === undefined) return this.#failed();
    this.#app = app;
    this.#set('running');
    this.#emit(event, { pid: app.pid });
  }

  #watchJail(jail: Jail): void {
    void jail.exited.then(() => {
      // The jail died under us (its shim or init was killed): treat it like an app failure. A jail another
      // emperor took over (replaced) is not ours to respawn.
      if (this.jail === jail && !jail.replaced && (this.state === 'running' || this.state === 'spawning')) void this.#enqueue(async () => this.#failed());
    });
  }

  /** The emperor's sockets in the run dir: the pty router (customers' ssh), the customer control socket. */
  async #openSockets(spec: VassalSpec, jail: Jail, runDir: string): Promise<void> {
    const gid = spec.gid;
    if (spec.pty) {
      const customers = this.#ctx.customers;
      const uid = spec.uid;
      this.#router = new PtyRouter(jail, join(runDir, 'pty.sock'), (ev) => this.#ctx.log[ev.event === 'refused' || ev.event === 'bad-client' ? 'warn' : 'info']({ vassal: this.name, ...ev }, `${this.name}: pty ${ev.event}`), {
        maxSessions: spec.ptySessions,
        ...this.#ctx.timeouts,
        ...(customers === undefined ? {} : { admit: () => customers.admit(uid) }),
      });
      await this.#router.listen();
      this.#ctx.logins?.add(uid, this.name, this.#router.path);
      this.#listedFor = uid;
    }
    if (this.#ctx.customerControl !== undefined) {
      // Seen as /run/control.sock inside the jail: `emperor status`, `logs`, `reload`, `restart` work there.
      this.#customerControl = this.#ctx.customerControl(this.name, join(runDir, 'control.sock'), spec.uid, gid);
      await this.#customerControl.listen();
    }
  }

  /**
   * Starts the app in the jail; resolves once it is running (and ready, with ready = notify, within
   * ready-timeout). Undefined when it did not come up; throws {@link Cancelled} when a stop cut the wait short.
   */
  async #startApp(spec: VassalSpec, signal: AbortSignal): Promise<App | undefined> {
    const jail = this.jail;
    if (jail === undefined || spec.command === undefined) return undefined;
    const proc = jail.start('app', { argv: spec.command, env: spec.env, cwd: spec.chdir, socket: spec.socket !== undefined, notify: spec.ready === 'notify', output: logOutput(join(this.#ctx.logDir, this.name, 'app.log'), spec.gid) });
    const app: App = { proc, pid: undefined, startedAt: Date.now(), oomKills: jail.usage().oomKills };
    this.#watchApp(app);
    // Its whole process group, through the shim.
    const giveUp = () => proc.kill('SIGKILL');
    try {
      app.pid = (await proc.started).pid;
    } catch (e) {
      // Never silent: the helper's step and errno (or how the app ended before it ran) is the reason of the
      // backoff or curse that follows.
      this.lastError = isEmperorError(e) ? e.describe() : String(e);
      this.#emit('error', { error: this.lastError });
      return undefined;
    }
    if (spec.ready === 'notify') {
      const how = await readiness(proc.ready, proc.exited, spec.readyTimeoutMs, signal);
      if (how === 'aborted') {
        giveUp();
        throw new Cancelled();
      }
      if (how === 'timeout') {
        giveUp();
        this.lastError = `ready = notify: expected READY=1 within ready-timeout (${spec.readyTimeoutMs / 1000} s), got nothing; the app was killed`;
        this.#emit('error', { error: this.lastError });
      }
      if (how !== 'ready') return undefined;
      this.#emit('ready', { pid: app.pid });
    }
    return app;
  }

  #watchApp(app: App): void {
    void app.proc.exited.then((exit) => {
      if (exit.error) this.lastError = exit.error.describe();
      void this.#enqueue(async () => this.#appExited(app, exit));
    });
  }

  async #appExited(app: App, exit: { code: number | null; signal: number | null }): Promise<void> {
    if (this.#app !== app) return; // an old app that a reload replaced, or a stop: expected
    this.#app = undefined;
    this.#emit('exited', { pid: app.pid, code: exit.code, signal: exit.signal });
    this.#reportOom(app);
    if (this.state !== 'running') return;
    // Its jail is gone (the shim or init was killed): one failure, which the jail's end reports.
    if (this.jail !== undefined && !this.jail.running) return;
    const uptime = Date.now() - app.startedAt;
    if (uptime >= this.#policy.minUptimeMs) this.#failures = 0;
    await this.#failed();
  }

  /**
   * An app that died of the jail's memory limit: the kernel's OOM kills (memory.events or memory.oom_control,
   * read from the jail, which outlives them: its init is spared) went up while it ran. Said as an `oom`
   * event and the vassal's last error, so the operator and the customer see why it restarted.
   */
  #reportOom(app: App): void {
    const jail = this.jail;
    if (jail === undefined || !jail.running) return;
    const oomKills = jail.usage().oomKills;
    if (oomKills <= app.oomKills) return;
    const limit = this.spec?.memoryLimitBytes;
    this.lastError = `the kernel's OOM killer ended the app (pid ${app.pid ?? '?'}): the jail reached its memory-limit${limit === undefined ? '' : ` of ${limit} bytes`}; raise memory-limit or make the app use less`;
    this.#emit('oom', { pid: app.pid, oomKills, memoryLimitBytes: limit, error: this.lastError });
  }

  /** After a failure: respawn now, later (backoff), or never (curse). */
  async #failed(): Promise<void> {
    this.#failures++;
    const next = nextRespawn(this.#failures, this.#policy);
    if (next.curse) {
      await this.#teardown();
      this.#set('cursed');
      this.#emit('cursed', { failures: this.#failures, error: this.lastError });
      return;
    }
    this.restarts++;
    if (next.delayMs === 0) return this.#respawnApp();
    this.#set('backoff');
    this.#emit('backoff', { delayMs: next.delayMs, failures: this.#failures, error: this.lastError });
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#enqueue(async () => {
        if (this.state === 'backoff') await this.#respawnApp();
      });
    }, next.delayMs);
  }

  async #respawnApp(): Promise<void> {
    const spec = this.spec;
    if (spec === undefined) return;
    if (this.jail === undefined || !this.jail.running) {
      await this.#teardown();
      return this.#spawn(spec);
    }
    this.#set('spawning');
    const app = await this.#startApp(spec, this.#cancel.signal);
    if (app === undefined) return this.#failed();
    this.#app = app;
    this.#set('running');
    this.#emit('spawned', { pid: app.pid, respawn: true });
  }

  /** Start the new app, wait until it runs (or is ready), then stop the old one: the socket never closes. */
  async #reloadApp(): Promise<void> {
    const spec = this.spec;
    const old = this.#app;
    if (spec === undefined || spec.command === undefined) return;
    this.#set('reloading');
    let app: App | undefined;
    try {
      app = await this.#startApp(spec, this.#cancel.signal);
    } catch (e) {
      if (e instanceof Cancelled) this.#set(old === undefined ? 'spawning' : 'running'); // the stop behind it ends both
      throw e;
    }
    if (app === undefined) {
      // The new app did not come up: keep the old one serving and report it.
      this.#set(old === undefined ? 'backoff' : 'running');
      this.#emit('error', { error: `reload: the new app did not start${this.lastError ? `: ${this.lastError}` : ''}` });
      if (old === undefined) await this.#failed();
      return;
    }
    this.#app = app;
    this.#set('running');
    if (old !== undefined) await this.#stopApp(old, spec);
    this.#emit('reloaded', { pid: app.pid });
  }

  /** The stop signal to the app's process group, then SIGKILL at `deadline` (default: after stop-timeout). */
  async #stopApp(app: App, spec: VassalSpec, deadline = Date.now() + spec.stopTimeoutMs): Promise<void> {
    await stopProcess(app.proc, spec.stopSignal as NodeJS.Signals | number, deadline);
  }

  /**
   * Stops the app, the daemons and the jail, removes the run dir. Every step runs whatever the steps
   * before it met (a customer may have replaced any file of their run dir): a failure is logged and the
   * teardown goes on, so a stop always ends with nothing running. The app gets its stop signal first; the
   * daemons get theirs once it has gone; whatever still runs at stop-timeout is killed (daemons get at
   * least {@link DAEMON_MIN_GRACE_MS} after the app).
   */
  async #teardown(): Promise<void> {
    const step = async (what: string, work: () => unknown): Promise<void> => {
      try {
        await work();
      } catch (e) {
        this.#ctx.log.warn({ vassal: this.name, err: e }, `${this.name}: teardown: ${what} failed; going on`);
      }
    };
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#cron?.stop();
    this.#cron = undefined;
    for (const w of this.#touch) w.stop();
    this.#touch = [];
    const listed = this.#listedFor;
    this.#listedFor = undefined;
    if (listed !== undefined) this.#ctx.logins?.remove(listed, this.name);
    const router = this.#router;
    this.#router = undefined;
    await step('closing the pty router', () => router?.close());
    const control = this.#customerControl;
    this.#customerControl = undefined;
    await step('closing the customer control socket', () => control?.close());
    const deadline = Date.now() + (this.spec?.stopTimeoutMs ?? 0);
    const app = this.#app;
    this.#app = undefined;
    const spec = this.spec;
    if (app !== undefined && spec !== undefined) await step('stopping the app', () => this.#stopApp(app, spec, deadline));
    await step('stopping the daemons', () => this.#stopDaemons(Math.max(deadline, Date.now() + Math.min(DAEMON_MIN_GRACE_MS, spec?.stopTimeoutMs ?? 0))));
    const jail = this.jail;
    this.jail = undefined;
    this.#stoppingJail = jail;
    if (jail !== undefined) await step('stopping the jail', () => jail.stop());
    this.#stoppingJail = undefined;
    if (this.#netAttached) {
      this.#netAttached = false;
      await step('removing the network', async () => {
        this.#netCarry = await this.#ctx.network?.detach(this.name);
      });
    }
    const runDir = this.#runDir;
    this.#runDir = undefined;
    if (runDir !== undefined) await step('removing the run dir', () => removeRunDir(runDir));
  }

  /** Waits until every queued operation is done (tests, shutdown). */
  async settled(): Promise<void> {
    let q: Promise<void>;
    do {
      q = this.#queue;
      await q;
    } while (q !== this.#queue);
  }
}


