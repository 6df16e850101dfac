import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { EmperorError } from '@emperor/errors';

/** The controllers a jail needs: limits (memory, cpu, pids) and cpu accounting. */
export type Controller = 'memory' | 'cpu' | 'cpuacct' | 'pids';

/** The leaf of the emperor's own cgroup its processes move to on cgroup v2 (no internal processes). */
export const SUPERVISOR_LEAF = 'supervisor';

/** Where one controller lives for this process. */
export interface Hierarchy {
  version: 1 | 2;
  /** The controllers of this hierarchy that we use (v1 may co-mount cpu and cpuacct). */
  controllers: Controller[];
  /** The emperor's own cgroup directory in it (mount point + /proc/self/cgroup path). */
  own: string;
  /** The hierarchy's mount point. */
  mount: string;
}

/** What /proc tells about this machine's cgroups; the texts can be passed in so the rules can be read in tests. */
export interface CgroupSources {
  mountinfo: string;
  selfCgroup: string;
  /** Reads a cgroup2 directory's cgroup.controllers. */
  readControllers: (dir: string) => string;
}

const realSources = (): CgroupSources => ({
  mountinfo: readFileSync('/proc/self/mountinfo', 'utf8'),
  selfCgroup: readFileSync('/proc/self/cgroup', 'utf8'),
  readControllers: (dir) => readFileSync(join(dir, 'cgroup.controllers'), 'utf8'),
});

/**
 * Finds, for each needed controller, the hierarchy that has it: a cgroup v1 mount listing it, else the
 * cgroup2 mount if its root enables it. Hybrid machines (v1 controllers plus an empty cgroup2, like this
 * development machine) use v1. Under v2, cpu accounting comes with the cpu controller (cpu.stat).
 */
export const detectHierarchies = (sources: CgroupSources = realSources()): Hierarchy[] => {
  const v1 = new Map<string, { mount: string; root: string; controllers: string[] }>();
  let v2Mount: { mount: string; root: string } | undefined;
  for (const line of sources.mountinfo.split('\n')) {
    const [left, right] = line.split(' - ');
    if (left === undefined || right === undefined) continue;
    const fields = left.split(' ');
    // Field 4 is the mount's root within its file system, seen from our cgroup namespace; 5 its mount point.
    const root = unescape(fields[3] ?? '/');
    const mount = unescape(fields[4] ?? '');
    const [fstype, , superOpts = ''] = right.split(' ');
    if (fstype === 'cgroup2') v2Mount ??= { mount, root };
    if (fstype === 'cgroup') {
      const controllers = superOpts.split(',').filter((o) => ['memory', 'cpu', 'cpuacct', 'pids'].includes(o));
      if (controllers.length > 0) v1.set(controllers.slice().sort().join(','), { mount, root, controllers });
    }
  }
  const own = new Map<string, string>(); // "cpu,cpuacct" or "" (v2) -> path
  for (const line of sources.selfCgroup.split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (m?.[1] !== undefined && m[2] !== undefined) own.set(m[1].split(',').filter((c) => !c.startsWith('name=')).sort().join(','), m[2]);
  }
  const result: Hierarchy[] = [];
  const found = new Set<Controller>();
  for (const [key, { mount, root, controllers }] of v1) {
    const path = own.get(key);
    if (path === undefined) continue;
    result.push({ version: 1, controllers: controllers as Controller[], mount, own: ownDir(mount, root, path) });
    for (const c of controllers) found.add(c as Controller);
  }
  const missing = (['memory', 'cpu', 'pids'] as const).filter((c) => !found.has(c));
  if (missing.length > 0 && v2Mount !== undefined && own.has('')) {
    // Our own cgroup, not a leaf we made: the emperor moves itself into OWN/supervisor (the no-internal-
    // processes rule), and its children are born there; a cgroup is chosen once, never one level deeper.
    let path = own.get('') ?? '/';
    if (path.endsWith(`/${SUPERVISOR_LEAF}`)) path = path.slice(0, -SUPERVISOR_LEAF.length - 1) || '/';
    const ownV2 = ownDir(v2Mount.mount, v2Mount.root, path);
    // What our cgroup may hand down: its own cgroup.controllers (what its parent delegated), not the root's.
    let available: string[] = [];
    try {
      available = sources.readControllers(ownV2).trim().split(/\s+/);
    } catch {
      available = [];
    }
    const v2 = missing.filter((c) => available.includes(c));
    const notDelegated = missing.filter((c) => !available.includes(c));
    if (notDelegated.length > 0 && v1.size === 0) {
      throw new EmperorError('EMPEROR_ERR_JAIL_CGROUP', `${notDelegated.join(' and ')} ${notDelegated.length > 1 ? 'are' : 'is'} not delegated to ${path}: expected ${missing.join(', ')} in ${join(ownV2, 'cgroup.controllers')}, got "${available.join(' ')}"`, {
        hint: path === '/' ? `enable them in the cgroup.subtree_control above ${ownV2} (a host's root: /sys/fs/cgroup/cgroup.subtree_control; in a container, the host must delegate them to it)` : 'set Delegate=yes in the emperor\'s unit (docs/deploy/emperor.service), or run it with systemd-run -p Delegate=yes',
      });
    }
    if (v2.length > 0) {
      result.push({ version: 2, controllers: v2, mount: v2Mount.mount, own: ownV2 });
      for (const c of v2) found.add(c);
    }
  }
  const still = (['memory', 'cpu', 'pids'] as const).filter((c) => !found.has(c));
  if (still.length > 0) {
    throw new EmperorError('EMPEROR_ERR_JAIL_CGROUP', `expected the cgroup controller${still.length > 1 ? 's' : ''} ${still.join(', ')} (cgroup v1 or v2), got none mounted for this process`, {
      hint: 'mount the controller (cgroup v1), or enable it in the parent cgroup.subtree_control (cgroup v2)',
    });
  }
  return result;
};

/**
 * Our cgroup's directory under a cgroup mount: the mount shows its file system from `root` down, and
 * /proc/self/cgroup gives `path`, both as our cgroup namespace sees them. A mount that does not contain our
 * cgroup (root `/..`: the host's cgroup file system seen from a container's cgroup namespace) would put the
 * jails somewhere else entirely, so it is an error naming the fix.
 */
const ownDir = (mount: string, root: string, path: string): string => {
  const dir = (rel: string) => join(mount, rel).replace(/(.)\/+$/, '$1');
  if (root === '/') return dir(path);
  if (path === root || path.startsWith(`${root}/`)) return dir(path.slice(root.length));
  throw new EmperorError('EMPEROR_ERR_JAIL_CGROUP', `the cgroup mount at ${mount} shows ${root}, not this process's cgroup ${path}: expected a cgroup file system mounted in this cgroup namespace`, {
    hint: 'in a container with a cgroup namespace of its own, mount cgroup2 at /sys/fs/cgroup inside it (docker run --cgroupns=private, or unshare -C then mount -t cgroup2 none /sys/fs/cgroup)',
  });
};

/** mountinfo escapes spaces and such as \040. */
const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
