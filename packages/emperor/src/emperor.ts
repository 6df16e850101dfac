import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { builtinLimits, builtinNetwork, checkVassalFile, clearUserCache, formatProblem, type CheckResult, type NetworkSettings, type OperatorLimits } from '@emperor/config';
import { detectHierarchies, JailCgroups, JailNetwork, netTotals, removeCgroupParent, ShimClient, type Hierarchy } from '@emperor/jail';
import { availableParallelism } from 'node:os';
import pLimit from 'p-limit';
import type { Logger } from 'pino';
import type { BackoffPolicy } from './backoff.js';
import type { Clock } from './cron-scheduler.js';
import { Announcer } from './announcer.js';
import { ControlServer } from './control-server.js';
import { Logins } from './logins.js';
import { VassalNames } from './vassal-names.js';
import { CustomerBudget } from './customer-budget.js';
import { EventBus, WARNING_EVENTS } from './events.js';
import { isVassalFile, Monitor } from './monitor.js';
import { RunLock } from './run-lock.js';
import { removeRunDir } from './run-dir.js';
import { Vassal, type VassalContext } from './vassal.js';
import { VassalStates } from './vassal-state.js';

/** How an emperor runs. */
export interface EmperorOptions {
  /** The directory of vassal files. */
  dir: string;
  /** Default /run/emperor: control.sock and vassals/NAME/. */
  runDir: string;
  /** Default /var/log/emperor: NAME/app.log. */
  logDir: string;
  /** uid/gid from each file's owner; root-owned files and symlinks are refused. */
  tyrant: boolean;
  /** The cgroup directory under the emperor's own cgroup that holds the jails. */
  cgroupParent: string;
  log: Logger;
  backoff?: BackoffPolicy;
  /** The clock cron reads (tests inject one). */
  clock?: Clock;
  /** The operator's defaults and ceilings (emperor.ini); the built-in ones when absent. */
  limits?: OperatorLimits;
  /** Shorter stall and frame timeouts for customer streams (tests; docs/security.md has the defaults). */
  timeouts?: StreamTimeouts;
  /** Jails built at once (emperor.ini `jail-builds`); default {@link DEFAULT_JAIL_BUILDS}. */
  jailBuilds?: number;
  /** The network of net = nat jails (emperor.ini net-*); the built-in pool and the host's uplink when absent. */
  network?: NetworkSettings;
  /** How often subscriptions are sent again (tests); default {@link SUBSCRIBE_FREQ_MS}. */
  subscribeFreqMs?: number;
}

/** How often the jails' network counters are read for the event stream's refused connections. */
export const NET_POLL_MS = 5_000;

/** How long a customer's stream may stall (not read its output) or leave a frame half-sent. */
export interface StreamTimeouts {
  stallMs?: number;
  frameTimeoutMs?: number;
}

/** Connections one customer may hold across all their sockets (docs/security.md). */
export const CUSTOMER_CONNECTIONS = 16;
/**
 * Jails built at once by default: two per core. A build is mounts, namespaces and cgroup writes, mostly
 * kernel work: a burst of 500 files queues instead of thrashing two cores (each vassal's wait is a promise).
 */
export const DEFAULT_JAIL_BUILDS = Math.max(2, 2 * availableParallelism());

/** Past the largest stop-timeout, a shutdown waits this much more before it kills what is left. */
export const SHUTDOWN_GRACE_MS = 3_000;

/**
 * The emperor: a monitor over the vassal directory, one {@link Vassal} per file, the control socket.
 * It never blocks its event loop: every wait is a timer or a promise.
 */
export class Emperor {
  readonly options: EmperorOptions;
  readonly bus = new EventBus();
  readonly vassals = new Map<string, Vassal>();
  readonly startedAt = Date.now();
  readonly customers = new CustomerBudget(CUSTOMER_CONNECTIONS);
  readonly logins: Logins;
  readonly limits: OperatorLimits;
  /** The identity (inode, size, mtime) of each file as last loaded: a repeated event for it is not a change. */
  readonly #seen = new Map<string, string>();
  readonly #names = new VassalNames();
  readonly #buildSlot: ReturnType<typeof pLimit>;
  #monitor: Monitor | undefined;
  #control: ControlServer | undefined;
  #stopping = false;
  #detaching = false;
  /** File events being handled (checked, then loaded): the first scan is over when none is left. */
  readonly #inflight = new Set<Promise<void>>();
  /** RUN/emperor.pid, held from start to the end of stop. */
  #lock: RunLock | undefined;
  /** The cgroup hierarchies and the emperor's own cgroup in them: found once, at start. */
  #hierarchies: Hierarchy[] | undefined;
  /** RUN/state: what the next emperor needs of each vassal. */
  #states: VassalStates | undefined;
  /** Vassals whose jail a previous emperor left running (a shim answers on RUN/shims/NAME.sock), not yet adopted. */
  readonly #adoptable = new Set<string>();
  /** From the first scan on: the jails no file claimed (removed while no emperor ran) are stopped. */
  #sweep: Promise<void> | undefined;
  /** The network of net = nat jails: used (nft, ip) only once such a jail exists or was left running. */
  readonly network: JailNetwork;
  /** After the first scan: what of the network no running jail holds is removed. */
  #netSweep: Promise<void> | undefined;
  #netPoll: NodeJS.Timeout | undefined;
  readonly #refusedSeen = new Map<string, number>();
  /** Sends the running vassals' subscriptions (subscribe-to, subscribe2) to their routers. */
  readonly announcer: Announcer;

  constructor(options: EmperorOptions) {
    this.options = options;
    this.logins = new Logins(options.runDir);
    this.limits = options.limits ?? builtinLimits();
    this.#buildSlot = pLimit(options.jailBuilds ?? DEFAULT_JAIL_BUILDS);
    this.network = new JailNetwork(options.network ?? builtinNetwork(), join(options.runDir, 'net'));
    this.announcer = new Announcer(options.log, { tyrant: options.tyrant, ...(options.subscribeFreqMs ? { freqMs: options.subscribeFreqMs } : {}) });
    this.bus.setMaxListeners(0); // one listener per /events client: bounded by the control socket's connection cap
    this.bus.on('event', (e) => options.log[WARNING_EVENTS.has(e.event) ? 'warn' : 'info']({ vassal: e.vassal, event: e.event, detail: e }, `${e.vassal}: ${e.event}`));
  }

  async start(): Promise<void> {
    // One emperor per run dir: a second one refuses before it touches anything of the first's.
    this.#lock = RunLock.acquire(this.options.runDir);
    // Then: a host whose cgroups cannot hold jails (a v2 controller not delegated) is an
    // error naming what to set, once, instead of every vassal failing with it.
    this.#hierarchies = detectHierarchies();
    mkdirSync(join(this.options.runDir, 'vassals'), { recursive: true, mode: 0o755 });
    this.#states = new VassalStates(this.options.runDir);
    for (const f of readdirSync(this.#controlDir, { withFileTypes: true })) {
      if (f.isSocket() && f.name.endsWith('.sock')) this.#adoptable.add(f.name.slice(0, -'.sock'.length));
    }
    if (this.#adoptable.size > 0) this.options.log.info({ jails: this.#adoptable.size }, `${this.#adoptable.size} jails of a previous emperor found running: adopting them`);
    mkdirSync(this.options.logDir, { recursive: true, mode: 0o755 });
    this.logins.reset();
    this.#control = new ControlServer(this, join(this.options.runDir, 'control.sock'));
    await this.#control.listen();
    this.#monitor = new Monitor(this.options.dir, { change: (f) => this.#track(this.#changed(f)), remove: (f) => this.#track(this.#removed(f)) });
    await this.#monitor.ready();
    // Every file present has claimed its name by now (synchronously, as the monitor reported it).
    this.#sweep = this.#stopOrphans();
    this.#netSweep = (async () => {
      await this.#sweep;
      await this.firstScan();
      // A crash or SIGKILL of an earlier emperor or jail left links, rules or counters nobody holds.
      await this.network.sweep().catch((err: unknown) => this.options.log.warn({ err }, 'the network of jails no longer running could not be removed'));
    })();
    this.#netPoll = setInterval(() => void this.#pollNet(), NET_POLL_MS);
    this.#netPoll.unref();
    this.options.log.info({ dir: this.options.dir, runDir: this.options.runDir }, 'emperor governing');
  }

  /** Publishes `net-refused` for each vassal whose firewall refused more since the last look. */
  async #pollNet(): Promise<void> {
    if (this.network.attached.length === 0) return;
    let counters;
    try {
      counters = await this.network.counters(NET_POLL_MS / 2);
    } catch (err) {
      this.options.log.warn({ err }, 'the jails\' network counters could not be read');
      return;
    }
    for (const [name, c] of counters) {
      const before = this.#refusedSeen.get(name) ?? 0;
      this.#refusedSeen.set(name, c.refused.packets);
      if (c.refused.packets > before) this.bus.publish(name, 'net-refused', { refused: c.refused.packets, new: c.refused.packets - before, net: netTotals(c) });
    }
    for (const name of this.#refusedSeen.keys()) if (!counters.has(name)) this.#refusedSeen.delete(name);
  }

  get #controlDir(): string {
    const dir = join(this.options.runDir, 'shims');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    return dir;
  }

  #vassalContext(): VassalContext {
    const o = this.options;
    return {
      runDir: o.runDir, controlDir: this.#controlDir, logDir: o.logDir, cgroupParent: o.cgroupParent, bus: this.bus, log: o.log,
      ...(this.#hierarchies ? { hierarchies: this.#hierarchies } : {}), buildSlot: (build) => this.#buildSlot(build),
      ...(o.backoff ? { backoff: o.backoff } : {}), ...(o.clock ? { clock: o.clock } : {}), ...(o.timeouts ? { timeouts: o.timeouts } : {}),
      customerControl: (vassal, path, uid, gid) => new ControlServer(this, path, { vassal, uid, gid }), customers: this.customers, logins: this.logins,
      ...(this.#states ? { states: this.#states } : {}), adoptable: (name) => this.#adoptable.delete(name), network: this.network,
      onState: (v) => this.#announce(v),
    };
  }

  #announce(v: Vassal): void {
    const spec = v.spec;
    if (v.state === 'running' && spec !== undefined && spec.subscriptions.length > 0 && !this.#detaching) {
      this.announcer.running({ name: v.name, uid: spec.uid, subscriptions: spec.subscriptions, socketPath: v.socketPath });
    } else {
      this.announcer.notRunning(v.name);
    }
  }

  /**
   * The jails of a previous emperor whose file is gone (removed while no emperor ran): stopped as a removed
   * file's vassal is (stop signal, stop-timeout, SIGKILL), with the spec it saved; without one, through its
   * shim, and whatever it leaves (cgroups, run dir) is removed.
   */
  async #stopOrphans(): Promise<void> {
    const names = [...this.#adoptable];
    await Promise.all(names.map(async (name) => {
      if (this.#names.holder(name) !== undefined || !this.#adoptable.has(name)) return;
      const saved = this.#states?.read(name);
      // A dead shim's socket: nothing runs; what it left goes with the leftovers below.
      const probe = await ShimClient.connect(join(this.#controlDir, `${name}.sock`)).catch(() => undefined);
      probe?.close();
      if (probe === undefined) {
        this.#adoptable.delete(name);
        rmSync(join(this.#controlDir, `${name}.sock`), { force: true });
        return;
      }
      this.options.log.info({ vassal: name }, `${name}: its file was removed while no emperor ran; stopping its jail`);
      if (saved !== undefined) {
        const v = new Vassal(name, this.#vassalContext());
        await v.load({ ok: true, spec: saved.spec });
        await v.stop();
        return;
      }
      this.#adoptable.delete(name);
      try {
        const client = await ShimClient.connect(join(this.#controlDir, `${name}.sock`));
        const closed = new Promise<void>((r) => client.once('close', r));
        client.send(['stop']);
        await Promise.race([closed, new Promise((r) => setTimeout(r, SHUTDOWN_GRACE_MS))]);
        client.close();
        await JailCgroups.existing(name, this.options.cgroupParent, this.#hierarchies).drainAndRemove();
      } catch (err) {
        this.options.log.warn({ vassal: name, err }, `${name}: the jail of a removed file could not be stopped through its shim`);
      }
      await removeRunDir(join(this.options.runDir, 'vassals', name));
      this.#states?.remove(name);
    }));
    // What a previous emperor left of vassals with neither a file nor a running jail (it died while it
    // stopped one): its saved state, its run dir (a tmpfs mount), its empty cgroups.
    let dirs: string[] = [];
    try {
      dirs = readdirSync(join(this.options.runDir, 'vassals'));
    } catch {
      // none yet
    }
    const left = new Set([...(this.#states?.names() ?? []), ...dirs]);
    await Promise.all([...left].map(async (name) => {
      if (this.#names.holder(name) !== undefined || this.#adoptable.has(name) || this.vassals.has(name)) return;
      this.#states?.remove(name);
      await removeRunDir(join(this.options.runDir, 'vassals', name));
      try {
        await JailCgroups.existing(name, this.options.cgroupParent, this.#hierarchies).drainAndRemove();
      } catch {
        // no cgroups of that name: nothing to remove
      }
    }));
  }

  /** A file event being handled: kept until done; what it throws (a bug) is logged, never kills the start. */
  #track(work: Promise<void>): void {
    const tracked = work.catch((err: unknown) => this.options.log.error({ err }, 'a vassal file event failed (a bug in Emperor, please report)'));
    this.#inflight.add(tracked);
    void tracked.finally(() => this.#inflight.delete(tracked));
  }

  /**
   * Resolves once the files present at start have each been acted on: every vassal spawned (running, or
   * waiting for readiness no more), failed (backoff, cursed) or refused (invalid). systemd's READY=1.
   */
  async firstScan(): Promise<void> {
    while (this.#inflight.size > 0) await Promise.all([...this.#inflight]);
    await this.settled();
  }

  /** Jail builds under way and waiting for a slot (`/metrics`). */
  builds(): { running: number; waiting: number; slots: number } {
    return { running: this.#buildSlot.activeCount, waiting: this.#buildSlot.pendingCount, slots: this.#buildSlot.concurrency };
  }

  /** How many vassals are in each state (systemd's STATUS=, `emperor status`). */
  counts(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const v of this.vassals.values()) counts[v.state] = (counts[v.state] ?? 0) + 1;
    return counts;
  }

  async #changed(file: string): Promise<void> {
    if (this.#stopping) return;
    const claim = this.#names.claim(file);
    if (!claim.ok) return this.#duplicate(file, claim.name, claim.holder);
    const name = claim.name;
    let v = this.vassals.get(name);
    if (v === undefined) {
      v = new Vassal(name, this.#vassalContext());
      this.vassals.set(name, v);
    }
    // inotify may report one write as several events (add, then change): only a real change reloads.
    // The content counts, not only the mtime (two writes within one clock tick share it, uWSGI's bug);
    // a touch changes the mtime, so it still reloads, as operators expect.
    const id = identity(file);
    if (this.#seen.get(name) === id) return;
    this.#seen.set(name, id);
    clearUserCache();
    const result = this.#sameOwner(v, this.#perUid(name, await checkVassalFile(file, { tyrant: this.options.tyrant, noFollow: this.options.tyrant, limits: this.limits })));
    await v.load(result);
  }

  /** A second file for a name in use: refused and reported; the vassal of the first is not touched. */
  #duplicate(file: string, name: string, holder: string): void {
    const problem = formatProblem({ code: 'EMPEROR_ERR_CONFIG_NAME', file, message: `expected a vassal name no other file uses, got ${JSON.stringify(VassalNames.nameOf(file))}, which ${holder} uses`, hint: 'names are compared without extension and case; remove one of the two files' });
    this.options.log.warn({ vassal: name, file, holder, code: 'EMPEROR_ERR_CONFIG_NAME' }, problem);
    this.bus.publish(name, 'invalid', { file, duplicateOf: holder, problems: [problem], running: this.vassals.get(name)?.jail !== undefined });
  }

  /** Tyrant mode: a vassal's name belongs to the uid of its running file; a file of another owner is refused. */
  #sameOwner(v: Vassal, result: CheckResult): CheckResult {
    if (!this.options.tyrant || !result.ok || v.spec === undefined || v.jail === undefined || v.spec.uid === result.spec.uid) return result;
    return { ok: false, problems: [{ code: 'EMPEROR_ERR_CONFIG_USER', file: result.spec.file, message: `expected the owner of the running vassal (uid ${v.spec.uid}), got a file owned by uid ${result.spec.uid}`, hint: 'a vassal belongs to the customer whose file started it; remove it first' }] };
  }

  /** Tyrant mode: a uid gets at most tyrant-vassals-per-uid vassals; one more file is refused (invalid). */
  #perUid(name: string, result: CheckResult): CheckResult {
    if (!this.options.tyrant || !result.ok) return result;
    const uid = result.spec.uid;
    const own = [...this.vassals.values()].filter((x) => x.name !== name && x.spec?.uid === uid && x.state !== 'invalid');
    const max = this.limits.vassalsPerUid;
    if (own.length < max.value || this.vassals.get(name)?.spec?.uid === uid) return result;
    return { ok: false, problems: [{ code: 'EMPEROR_ERR_CONFIG_LIMIT', file: result.spec.file, message: `expected at most ${max.value} vassals for uid ${uid} (tyrant-vassals-per-uid, set in ${max.from}), got one more`, hint: 'remove one of them, or have the operator raise tyrant-vassals-per-uid in emperor.ini' }] };
  }

  async #removed(file: string): Promise<void> {
    const name = this.#names.release(file);
    if (name === undefined) return; // a refused duplicate went away: nothing ran from it
    const v = this.vassals.get(name);
    if (v === undefined) return;
    this.#seen.delete(name);
    await v.stop();
    // A file of the same name may have come back while it stopped.
    if (this.vassals.get(name) === v && v.state === 'stopped' && this.#names.holder(name) === undefined) {
      this.vassals.delete(name);
      this.bus.publish(name, 'removed');
    }
    // A duplicate refused while this file held the name may now have it.
    if (this.#names.holder(name) === undefined && !this.#stopping) {
      for (const other of readdirSync(this.options.dir)) {
        const path = join(this.options.dir, other);
        if (isVassalFile(other) && VassalNames.same(path, file)) return this.#changed(path);
      }
    }
  }

  /** SIGHUP: every vassal re-reads its file; unchanged ones reload their app. */
  async reloadAll(): Promise<void> {
    await Promise.all([...this.vassals.values()].map((v) => v.reload()));
  }

  /** SIGTERM/SIGINT: stop watching, stop every vassal (each within its stop-timeout), close the socket. */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    await this.#monitor?.close();
    // Every vassal stops within its stop-timeout (docs/daemon.md); past the largest one and a grace, what
    // is left is killed, so a shutdown always ends (systemd's own stop timeout is never the one that acts).
    const all = [...this.vassals.values()];
    const bound = Math.max(0, ...all.map((v) => v.spec?.stopTimeoutMs ?? 0)) + SHUTDOWN_GRACE_MS;
    let timer: NodeJS.Timeout | undefined;
    const stopped = await Promise.race([Promise.all(all.map((v) => v.stop())).then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), bound)))]);
    clearTimeout(timer);
    if (!stopped) {
      this.options.log.error({ boundMs: bound }, 'vassals did not stop in time; killing their jails');
      for (const v of all) v.kill();
      await Promise.race([Promise.all(all.map((v) => v.settled())), new Promise((r) => setTimeout(r, SHUTDOWN_GRACE_MS))]);
    }
    // The first scan is over now (every vassal has stopped): the jails of removed files too.
    await this.#sweep;
    if (this.#lock !== undefined) await this.#stopOrphans();
    clearInterval(this.#netPoll);
    await this.#netSweep;
    await this.announcer.close();
    // Every jail is gone: so is the table (and any link or counter of theirs still there).
    if (this.#lock !== undefined) await this.network.close().catch((err: unknown) => this.options.log.error({ err }, 'the jails\' network could not be removed'));
    await this.#control?.close();
    // A start refused by the run-dir lock stops here: the run dir is another emperor's.
    if (this.#lock === undefined) return;
    rmSync(join(this.options.runDir, 'control.sock'), { force: true });
    this.logins.clear();
    try {
      // Undefined when the start failed before any cgroup was looked at: nothing to remove then.
      if (this.#hierarchies !== undefined) removeCgroupParent(this.options.cgroupParent, this.#hierarchies);
    } catch (err) {
      this.options.log.error({ err }, 'the jails\' cgroup parent could not be removed');
    }
    this.#lock.release();
    this.#lock = undefined;
    this.options.log.info('emperor stopped');
  }

  /**
   * Hands every jail over to the next emperor (an upgrade): stops watching, lets each vassal's app, daemons
   * and jail run on (their state saved in RUN/state), closes the control socket and releases the run dir's
   * lock. Nothing a customer runs is touched; the next emperor adopts it all.
   */
  async detach(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    // The vassals run on and the next emperor announces them: no unsubscribe, or the routers would drop them.
    this.#detaching = true;
    this.announcer.detach();
    await this.#monitor?.close();
    await Promise.all([...this.vassals.values()].map((v) => v.detach()));
    await this.#sweep;
    clearInterval(this.#netPoll);
    await this.#netSweep;
    await this.#control?.close();
    if (this.#lock === undefined) return;
    rmSync(join(this.options.runDir, 'control.sock'), { force: true });
    this.#lock.release();
    this.#lock = undefined;
    this.options.log.info({ vassals: this.vassals.size }, 'emperor detached: every jail runs on for the next emperor');
  }

  /** Waits until every vassal is done with what it was doing (tests). */
  async settled(): Promise<void> {
    await Promise.all([...this.vassals.values()].map((v) => v.settled()));
  }
}

/** What makes a vassal file "the same": its content and mtime (regular files up to 1 MiB; else its stat). */
const identity = (file: string): string => {
  const st = lstatSync(file, { throwIfNoEntry: false, bigint: true });
  if (st === undefined) return 'gone';
  const stat = `${st.ino}:${st.size}:${st.mtimeNs}`;
  if (!st.isFile() || st.size > 1024n * 1024n) return stat;
  try {
    return `${stat}:${createHash('sha256').update(readFileSync(file)).digest('hex')}`;
  } catch {
    return stat;
  }
};
