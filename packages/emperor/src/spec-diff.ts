import { isDeepStrictEqual } from 'node:util';
import type { VassalSpec } from '@emperor/config';

/** Keys whose change needs a new jail (namespaces, mounts, user, the socket the shim holds). */
const JAIL_KEYS = ['rootfs', 'unshare', 'hostname', 'binds', 'tmpSizeBytes', 'uid', 'gid', 'home', 'socket', 'net'] as const;
/** Keys applied to the running jail's cgroups. */
const LIMIT_KEYS = ['memoryLimitBytes', 'cpuLimitPercent', 'cpuWeight', 'pidsLimit', 'cgroupOpts'] as const;
/** Keys applied to the running jail's firewall rules (net = nat). */
const NET_KEYS = ['netAllow', 'netDeny', 'netRate', 'netConnections'] as const;

/** What a new spec changes, from the heaviest action down. */
export type SpecChange = 'jail' | 'app' | 'limits' | 'none';

/**
 * Classifies a reload: a jail rebuild, an app restart, live limits and firewall rules ('limits', with
 * `limits` and `net` saying which), or nothing (a touch: still an app reload).
 */
export const classifyChange = (before: VassalSpec, after: VassalSpec): { change: SpecChange; limits: boolean; net: boolean } => {
  const differs = (k: keyof VassalSpec) => !isDeepStrictEqual(before[k], after[k]);
  const limits = LIMIT_KEYS.some(differs);
  const net = NET_KEYS.some(differs);
  if (JAIL_KEYS.some(differs)) return { change: 'jail', limits, net };
  const live: readonly string[] = [...JAIL_KEYS, ...LIMIT_KEYS, ...NET_KEYS, 'file'];
  const others = (Object.keys(after) as Array<keyof VassalSpec>).filter((k) => !live.includes(k));
  if (others.some(differs)) return { change: 'app', limits, net };
  return { change: limits || net ? 'limits' : 'none', limits, net };
};
