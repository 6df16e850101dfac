import type { CronSpec } from './values/cron.js';
import type { DaemonSpec } from './values/daemon.js';
import type { RlimitName, RlimitPair } from './values/rlimit.js';
import type { BindSpec } from './values/paths.js';
import type { SubscriptionSpec } from './values/subscription.js';
import type { VassalFormat } from './read-file.js';
import type { NetRule } from './values/net.js';

/** A namespace a jail can unshare. */
export type Namespace = 'fs' | 'ipc' | 'uts' | 'net' | 'pid';

/** The vassal's listening socket, owned by the emperor. */
export interface SocketSpec {
  /** Relative to the vassal's run dir (seen as /run in the jail). */
  path: string;
  /** Undefined: the emperor's default, www-data:<vassal group> where www-data exists. */
  owner: { uid: number; gid: number } | undefined;
  mode: number;
}

/** A fully validated vassal: what every later layer works from. Defaults are filled in. */
export interface VassalSpec {
  name: string;
  file: string;
  format: VassalFormat;
  /** argv of the app; undefined for vassals with only daemons or cron jobs. */
  command: string[] | undefined;
  chdir: string | undefined;
  env: Record<string, string>;
  /** The unprivileged user and group it runs as (in tyrant mode, the file owner's). */
  uid: number;
  gid: number;
  /** The host directory mounted read-write as the vassal's home. */
  home: string | undefined;
  socket: SocketSpec | undefined;
  ready: 'none' | 'notify';
  /** How long the app (and a smart daemon's first process) may take to be ready before it counts as failed. */
  readyTimeoutMs: number;
  stopSignal: string | number;
  reloadSignal: string | number;
  stopTimeoutMs: number;
  /** `host` or an absolute path to a distro tree. */
  rootfs: string;
  hostname: string;
  unshare: Namespace[];
  binds: BindSpec[];
  tmpSizeBytes: number;
  /** Size of the tmpfs that is the vassal's run dir (its /run). */
  runDirSizeBytes: number;
  memoryLimitBytes: number;
  cpuLimitPercent: number;
  cpuWeight: number | undefined;
  pidsLimit: number;
  /** Every rlimit the helper sets before exec; Infinity is unlimited. */
  rlimits: Record<RlimitName, RlimitPair>;
  cgroupOpts: Array<{ file: string; value: string }>;
  /** attach-daemon, attach-daemon2 and smart-attach-daemon, in the order written. */
  daemons: DaemonSpec[];
  /** cron, cron2 and unique-cron, in the order written. */
  cron: CronSpec[];
  cronTimeoutMs: number | undefined;
  touchReload: string[];
  pty: boolean;
  /** Concurrent pty router sessions (SSH logins) at most. */
  ptySessions: number;
  subscriptions: SubscriptionSpec[];
  /** `none`: loopback only; `nat`: one interface, a pool address, NAT out of the host (docs/network.md). */
  net: 'none' | 'nat';
  /** Private destinations the vassal may reach besides the operator's (net = nat). */
  netAllow: NetRule[];
  /** Public destinations it may not reach. */
  netDeny: NetRule[];
  /** Egress bits per second at most; Infinity: no limit. */
  netRate: number;
  /** Connections (conntrack entries) the jail may have open at once. */
  netConnections: number;
}

/** Defaults, documented in docs/vassal-file.md. */
export const DEFAULTS = {
  mode: 0o660,
  ready: 'none',
  readyTimeoutMs: 60_000,
  stopSignal: 'SIGTERM',
  reloadSignal: 'SIGHUP',
  rootfs: 'host',
  unshare: ['fs', 'ipc', 'uts', 'net', 'pid'],
  pty: true,
  net: 'none',
} as const;

/** The default hostname of a vassal: its name, with characters a hostname cannot have made "-". */
export const defaultHostname = (name: string): string => name.replace(/[^A-Za-z0-9.-]/g, '-').replace(/^[-.]+|[-.]+$/g, '').slice(0, 64) || 'vassal';
