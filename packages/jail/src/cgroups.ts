import { mkdirSync, readFileSync, rmdirSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { VassalSpec } from '@emperor/config';
import { EmperorError } from '@emperor/errors';
import { detectHierarchies, SUPERVISOR_LEAF, type Hierarchy } from './cgroup-detect.js';

/** The limits of a jail's cgroup (the vassal file's memory-limit, cpu-limit, cpu-weight, pids-limit, cgroup-opt). */
export interface CgroupLimits {
  memoryBytes?: number | undefined;
  cpuPercent?: number | undefined;
  cpuWeight?: number | undefined;
  pids?: number | undefined;
  raw?: Array<{ file: string; value: string }>;
}

/** A vassal's cgroup limits, from its spec: the one place the keys map to the cgroup files' values. */
export const limitsOf = (s: VassalSpec): CgroupLimits => ({ memoryBytes: s.memoryLimitBytes, cpuPercent: s.cpuLimitPercent, cpuWeight: s.cpuWeight, pids: s.pidsLimit, raw: s.cgroupOpts });

/** What a jail uses now. */
export interface CgroupUsage {
  memoryBytes: number;
  cpuUsageUsec: number;
  pids: number;
  oomKills: number;
}

const CPU_PERIOD_US = 100_000;

const write = (dir: string, file: string, value: string): void => {
  try {
    writeFileSync(join(dir, file), value);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new EmperorError('EMPEROR_ERR_JAIL_CGROUP', `${join(dir, file)}: expected to accept "${value}", got ${code ?? String(e)}`, {
      hint: code === 'ENOENT' ? 'this kernel or cgroup version has no such control file' : 'check the value against the kernel documentation',
      cause: e,
    });
  }
};

const readNumber = (path: string): number => {
  try {
    return Number(readFileSync(path, 'utf8').trim()) || 0;
  } catch {
    return 0;
  }
};

const readKey = (path: string, key: string): number => {
  try {
    const m = new RegExp(`^${key} (\\d+)$`, 'm').exec(readFileSync(path, 'utf8'));
    return m?.[1] === undefined ? 0 : Number(m[1]);
  } catch {
    return 0;
  }
};

/**
 * The cgroups of one jail: a directory per hierarchy, `OWN/PARENT/NAME`, always under the emperor's own
 * cgroup (never at a hierarchy's root). On v2 the parent gets the controllers delegated; if the emperor's
 * own cgroup holds processes, they move to a `supervisor` leaf first (the no-internal-processes rule).
 */
export class JailCgroups {
  readonly dirs: string[];
  readonly #hierarchies: Array<Hierarchy & { dir: string }>;

  private constructor(hierarchies: Array<Hierarchy & { dir: string }>) {
    this.#hierarchies = hierarchies;
    this.dirs = hierarchies.map((h) => h.dir);
  }

  /** Creates the cgroups of jail `name` under `OWN/parent` in every hierarchy. */
  static create(name: string, parent: string, hierarchies: Hierarchy[] = detectHierarchies()): JailCgroups {
    const made: Array<Hierarchy & { dir: string }> = [];
    try {
      for (const h of hierarchies) {
        const base = join(h.own, parent);
        if (h.version === 2) prepareV2(h, base);
        else mkdirSync(base, { recursive: true });
        const dir = join(base, name);
        try {
          mkdirSync(dir);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
          // Left by an emperor that was killed: empty, so it goes (rmdir fails with EBUSY if a process is in it).
          rmdirSync(dir);
          mkdirSync(dir);
        }
        made.push({ ...h, dir });
      }
    } catch (e) {
      for (const m of made) rmdirQuiet(m.dir);
      if (e instanceof EmperorError) throw e;
      throw new EmperorError('EMPEROR_ERR_JAIL_CGROUP', `cgroup for ${name}: expected to create it under ${parent}, got ${(e as NodeJS.ErrnoException).code ?? String(e)}`, {
        hint: (e as NodeJS.ErrnoException).code === 'EBUSY' ? 'a jail of that name is still running (its cgroup has processes)' : 'check that the cgroup file systems are writable by root',
        cause: e,
      });
    }
    return new JailCgroups(made);
  }

  /**
   * The cgroups of a jail that runs already (a new emperor adopting it): `OWN/parent/NAME` in every
   * hierarchy, which must all be there; nothing is created or moved.
   */
  static existing(name: string, parent: string, hierarchies: Hierarchy[] = detectHierarchies()): JailCgroups {
    const found = hierarchies.map((h) => ({ ...h, dir: join(h.own, parent, name) }));
    const missing = found.filter((h) => !existsSync(join(h.dir, 'cgroup.procs')));
    if (missing.length > 0) {
      throw new EmperorError('EMPEROR_ERR_JAIL_CGROUP', `cgroup for ${name}: expected the running jail's ${missing.map((m) => m.dir).join(', ')}, got none`, { hint: 'the jail is not where this emperor keeps jails (another --cgroup-parent?)' });
    }
    return new JailCgroups(found);
  }

  /** Writes the limits; called at creation and again on a reload (live where the kernel allows it). */
  apply(limits: CgroupLimits): void {
    for (const h of this.#hierarchies) {
      const has = (c: string) => h.controllers.includes(c as never);
      if (h.version === 1) {
        if (has('memory')) {
          const bytes = limits.memoryBytes === undefined ? '-1' : String(limits.memoryBytes);
          // memsw must stay >= the memory limit: lower it last when tightening, raise it first when loosening.
          const memsw = existsSync(join(h.dir, 'memory.memsw.limit_in_bytes'));
          if (memsw) write(h.dir, 'memory.memsw.limit_in_bytes', '-1');
          write(h.dir, 'memory.limit_in_bytes', bytes);
          if (memsw) write(h.dir, 'memory.memsw.limit_in_bytes', bytes);
        }
        if (has('cpu')) {
          write(h.dir, 'cpu.cfs_period_us', String(CPU_PERIOD_US));
          write(h.dir, 'cpu.cfs_quota_us', limits.cpuPercent === undefined ? '-1' : String(Math.round((limits.cpuPercent * CPU_PERIOD_US) / 100)));
          // v2 weight 100 is v1's 1024 shares.
          write(h.dir, 'cpu.shares', String(Math.max(2, Math.round(((limits.cpuWeight ?? 100) * 1024) / 100))));
        }
        if (has('pids')) write(h.dir, 'pids.max', limits.pids === undefined ? 'max' : String(limits.pids));
      } else {
        if (has('memory')) {
          write(h.dir, 'memory.max', limits.memoryBytes === undefined ? 'max' : String(limits.memoryBytes));
          if (existsSync(join(h.dir, 'memory.swap.max'))) write(h.dir, 'memory.swap.max', limits.memoryBytes === undefined ? 'max' : '0');
          write(h.dir, 'memory.oom.group', '1');
        }
        if (has('cpu')) {
          write(h.dir, 'cpu.max', limits.cpuPercent === undefined ? `max ${CPU_PERIOD_US}` : `${Math.round((limits.cpuPercent * CPU_PERIOD_US) / 100)} ${CPU_PERIOD_US}`);
          write(h.dir, 'cpu.weight', String(limits.cpuWeight ?? 100));
        }
        if (has('pids')) write(h.dir, 'pids.max', limits.pids === undefined ? 'max' : String(limits.pids));
      }
    }
    for (const { file, value } of limits.raw ?? []) {
      const controller = file.split('.')[0] ?? '';
      const h = this.#hierarchies.find((x) => x.controllers.includes(controller as never));
      if (h === undefined) throw new EmperorError('EMPEROR_ERR_JAIL_CGROUP', `cgroup-opt ${file}: expected a file of the memory, cpu, cpuacct or pids controller, got "${controller}"`, { hint: 'only those controllers are set up for jails' });
      // Checked before writing: writing a file cgroupfs does not have answers EACCES (it would be a create).
      if (!existsSync(join(h.dir, file))) {
        throw new EmperorError('EMPEROR_ERR_JAIL_CGROUP', `cgroup-opt ${file}: expected a control file of this host's cgroup v${h.version} ${controller} controller, got none of that name`, {
          hint: h.version === 2 ? `${file} is a cgroup v1 file; on v2 use the vassal keys (memory-limit, cpu-limit, cpu-weight, pids-limit) or a v2 file such as memory.high` : `${file} is not a cgroup v1 file of this kernel`,
        });
      }
      write(h.dir, file, value);
    }
  }

  /** Current usage, for stats. */
  usage(): CgroupUsage {
    const u: CgroupUsage = { memoryBytes: 0, cpuUsageUsec: 0, pids: 0, oomKills: 0 };
    for (const h of this.#hierarchies) {
      const has = (c: string) => h.controllers.includes(c as never);
      if (h.version === 1) {
        if (has('memory')) {
          u.memoryBytes = readNumber(join(h.dir, 'memory.usage_in_bytes'));
          u.oomKills = readKey(join(h.dir, 'memory.oom_control'), 'oom_kill');
        }
        if (has('cpuacct')) u.cpuUsageUsec = Math.round(readNumber(join(h.dir, 'cpuacct.usage')) / 1000);
      } else {
        if (has('memory')) {
          u.memoryBytes = readNumber(join(h.dir, 'memory.current'));
          u.oomKills = readKey(join(h.dir, 'memory.events'), 'oom_kill');
        }
        if (has('cpu')) u.cpuUsageUsec = readKey(join(h.dir, 'cpu.stat'), 'usage_usec');
      }
      if (has('pids')) u.pids = readNumber(join(h.dir, 'pids.current'));
    }
    return u;
  }

  /** The pids in the jail's cgroups (host pid namespace). */
  pids(): number[] {
    const all = new Set<number>();
    for (const dir of this.dirs) {
      try {
        for (const l of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n')) if (l.trim() !== '') all.add(Number(l));
      } catch {
        // ENOENT: already removed
      }
    }
    return [...all];
  }

  /**
   * SIGKILL to every process of the jail's cgroups: one write to cgroup.kill on v2 (Linux 5.14; nothing can
   * fork past it), else a kill per pid read from cgroup.procs.
   */
  kill(): void {
    for (const h of this.#hierarchies) {
      if (h.version !== 2) continue;
      try {
        writeFileSync(join(h.dir, 'cgroup.kill'), '1');
        return;
      } catch {
        // ENOENT: a kernel before 5.14 (or the cgroup is gone); the pids below are the fallback
      }
    }
    for (const pid of this.pids()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // ESRCH: it just exited
      }
    }
  }

  /** Removes the directories; they must be empty (the helper waits for that before it reports its exit). */
  remove(): void {
    for (const dir of this.dirs) rmdirQuiet(dir);
  }

  /**
   * Waits until no process is left (the kernel kills a pid namespace's processes when its init dies, but
   * not instantly), SIGKILLs stragglers after a second, then removes the directories. Used when the shim
   * itself was killed and could not wait. Timers, never a blocking sleep.
   */
  async drainAndRemove(): Promise<void> {
    const start = Date.now();
    for (;;) {
      const left = this.pids();
      if (left.length === 0) {
        try {
          return this.remove();
        } catch (e) {
          // cgroup v2 answers EBUSY for a moment after its last process is gone (the exited task is still
          // being released): try again, within the same 10 s as a process that will not leave.
          if (!/EBUSY/.test(String((e as Error).message)) || Date.now() - start > 10_000) throw e;
        }
      }
      if (Date.now() - start > 1000) this.kill();
      if (Date.now() - start > 10_000) {
        throw new EmperorError('EMPEROR_ERR_JAIL_CGROUP', `cgroup ${this.dirs[0] ?? ''}: expected it to empty, got ${left.length} process(es) still in it after 10s`, { hint: 'a process is stuck in the kernel (D state)' });
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

const rmdirQuiet = (dir: string): void => {
  try {
    rmdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new EmperorError('EMPEROR_ERR_JAIL_CGROUP', `cgroup ${dir}: expected to remove it, got ${(e as NodeJS.ErrnoException).code}`, { hint: 'a process is still in it', cause: e });
  }
};

/** Removes `OWN/parent` in every hierarchy when no jail is left in it (the daemon at exit, tests at the end). */
export const removeCgroupParent = (parent: string, hierarchies: Hierarchy[] = detectHierarchies()): void => {
  for (const h of hierarchies) {
    const base = join(h.own, parent);
    try {
      if (h.version === 2 && existsSync(join(base, SUPERVISOR_LEAF))) return; // v2 keeps the emperor's own leaf
      rmdirSync(base);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'EBUSY' && code !== 'ENOTEMPTY') throw e;
    }
  }
};

/** cgroup v2: delegate the controllers down to OWN/parent, moving our processes to a leaf if needed. */
const prepareV2 = (h: Hierarchy, base: string): void => {
  const enable = h.controllers.map((c) => `+${c}`).join(' ');
  const delegate = (dir: string) => writeFileSync(join(dir, 'cgroup.subtree_control'), enable);
  try {
    delegate(h.own);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EBUSY') throw e;
    // No internal processes: the emperor's own cgroup must become an inner node, so we move into a leaf.
    const leaf = join(h.own, SUPERVISOR_LEAF);
    mkdirSync(leaf, { recursive: true });
    for (const pid of readFileSync(join(h.own, 'cgroup.procs'), 'utf8').split('\n').filter((l) => l !== '')) {
      writeFileSync(join(leaf, 'cgroup.procs'), pid);
    }
    delegate(h.own);
  }
  mkdirSync(base, { recursive: true });
  delegate(base);
};
