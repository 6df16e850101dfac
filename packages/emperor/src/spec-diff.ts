import { isDeepStrictEqual } from 'node:util';
import type { VassalSpec } from '@emperor/config';

/** Keys whose change needs a new jail (namespaces, mounts, user, the socket the shim holds). */
const JAIL_KEYS = ['rootfs', 'unshare', 'hostname', 'binds', 'tmpSizeBytes', 'uid', 'gid', 'home', 'socket'] as const;
/** Keys applied to the running jail's cgroups. */
const LIMIT_KEYS = ['memoryLimitBytes', 'cpuLimitPercent', 'cpuWeight', 'pidsLimit', 'cgroupOpts'] as const;

/** What a new spec changes, from the heaviest action down. */
export type SpecChange = 'jail' | 'app' | 'limits' | 'none';

/** Classifies a reload: a jail rebuild, an app restart, live limits, or nothing (a touch: still an app reload). */
export const classifyChange = (before: VassalSpec, after: VassalSpec): { change: SpecChange; limits: boolean } => {
  const differs = (k: keyof VassalSpec) => !isDeepStrictEqual(before[k], after[k]);
  const limits = LIMIT_KEYS.some(differs);
  if (JAIL_KEYS.some(differs)) return { change: 'jail', limits };
  const others = (Object.keys(after) as Array<keyof VassalSpec>).filter((k) => !(JAIL_KEYS as readonly string[]).includes(k) && !(LIMIT_KEYS as readonly string[]).includes(k) && k !== 'file');
  if (others.some(differs)) return { change: 'app', limits };
  return { change: limits ? 'limits' : 'none', limits };
};
