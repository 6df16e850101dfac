import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { netTotals } from '@emperor/jail';
import type { Vassal } from './vassal.js';

/** What the control API shows of a vassal (`emperor status`). */
export const viewOf = (v: Vassal) => {
  let usage;
  try {
    usage = v.jail?.running ? v.jail.usage() : undefined;
  } catch {
    usage = undefined;
  }
  return {
    name: v.name,
    state: v.state,
    pid: v.pid ?? null,
    jail: v.jail?.running ? { shim: v.jail.shimPid, init: v.jail.initPid } : null,
    restarts: v.restarts,
    lastError: v.lastError ?? null,
    bornAt: v.bornAt === undefined ? null : new Date(v.bornAt).toISOString(),
    usage: usage ?? null,
    file: v.spec?.file ?? null,
    daemons: v.daemons.map((d) => ({ index: d.index, command: d.spec.command.at(-1), kind: d.spec.kind, pid: d.pid ?? null, restarts: d.restarts })),
    net: netViewOf(v),
  };
};

/** A nat jail's address and traffic (bytes and packets each way, refused attempts); null for net = none. */
const netViewOf = (v: Vassal) => {
  const n = v.net;
  if (n === undefined) return null;
  const c = n.counters;
  return { address: n.address, ...(c === undefined ? { txBytes: 0, txPackets: 0, rxBytes: 0, rxPackets: 0, refused: 0 } : netTotals(c)) };
};

/**
 * A host pid as the jail sees it: the last NSpid of /proc/PID/status (the innermost pid namespace). Null
 * when the process is gone or is no jail process.
 */
export const jailPidOf = (hostPid: number | null | undefined): number | null => {
  if (hostPid === null || hostPid === undefined) return null;
  try {
    const ns = /^NSpid:\s+(.+)$/m.exec(readFileSync(`/proc/${hostPid}/status`, 'utf8'))?.[1]?.trim().split(/\s+/);
    return ns !== undefined && ns.length > 1 ? Number(ns.at(-1)) : null;
  } catch {
    return null;
  }
};

/** Host places, longest first, and what a customer reads instead: their jail's view, or a neutral word. */
export interface HostPaths {
  /** The vassal's run dir on the host (/run inside). */
  runDir: string;
  /** The vassal file (its name is the customer's; its directory is not). */
  file: string | undefined;
  /** Other host directories that may appear in an error: the emperor's run, log and vassal dirs, cgroups. */
  others: string[];
}

/** Replaces every host path of `paths` in `text` with what the customer may know of it. */
export const redactHostPaths = (text: string, paths: HostPaths): string => {
  const pairs: Array<[string, string]> = [[paths.runDir, '/run']];
  if (paths.file !== undefined) pairs.push([paths.file, basename(paths.file)]);
  for (const o of paths.others) pairs.push([o, '(host)']);
  pairs.sort((a, b) => b[0].length - a[0].length);
  let out = text;
  for (const [host, shown] of pairs) if (host !== '' && host !== '/') out = out.split(host).join(shown);
  return out;
};

/**
 * What the customer's own control socket shows of their vassal: pids as the jail numbers them, no shim or
 * init pid, the file's name without its host directory, and errors without host paths.
 */
export const customerViewOf = (v: Vassal, hostPaths: HostPaths) => {
  const view = viewOf(v);
  return {
    ...view,
    pid: jailPidOf(view.pid),
    jail: view.jail === null ? null : { init: 1 },
    lastError: view.lastError === null ? null : redactHostPaths(view.lastError, hostPaths),
    file: view.file === null ? null : basename(view.file),
    daemons: view.daemons.map((d) => ({ ...d, pid: jailPidOf(d.pid) })),
  };
};

/** Prometheus text exposition of every vassal. */
export const metricsOf = (vassals: Iterable<Vassal>, startedAt: number, builds?: { running: number; waiting: number }): string => {
  const lines: string[] = [];
  const metric = (name: string, help: string, type: string, rows: Array<[Record<string, string>, number]>) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of rows) {
      const l = Object.entries(labels).map(([k, val]) => `${k}="${val.replace(/["\\\n]/g, '_')}"`).join(',');
      lines.push(`${name}${l ? `{${l}}` : ''} ${value}`);
    }
  };
  const views = [...vassals].map(viewOf);
  metric('emperor_uptime_seconds', 'Seconds since the emperor started.', 'gauge', [[{}, Math.round((Date.now() - startedAt) / 1000)]]);
  metric('emperor_vassals', 'Vassals by state.', 'gauge', ['spawning', 'running', 'reloading', 'stopping', 'stopped', 'backoff', 'cursed', 'invalid'].map((s) => [{ state: s }, views.filter((v) => v.state === s).length]));
  metric('emperor_vassal_up', '1 when the vassal is running.', 'gauge', views.map((v) => [{ vassal: v.name }, v.state === 'running' ? 1 : 0]));
  metric('emperor_vassal_restarts_total', 'App respawns.', 'counter', views.map((v) => [{ vassal: v.name }, v.restarts]));
  metric('emperor_vassal_memory_bytes', 'Memory used by the jail.', 'gauge', views.filter((v) => v.usage).map((v) => [{ vassal: v.name }, v.usage?.memoryBytes ?? 0]));
  metric('emperor_vassal_cpu_seconds_total', 'CPU time used by the jail.', 'counter', views.filter((v) => v.usage).map((v) => [{ vassal: v.name }, (v.usage?.cpuUsageUsec ?? 0) / 1e6]));
  metric('emperor_vassal_pids', 'Processes in the jail.', 'gauge', views.filter((v) => v.usage).map((v) => [{ vassal: v.name }, v.usage?.pids ?? 0]));
  metric('emperor_vassal_oom_kills_total', 'OOM kills in the jail.', 'counter', views.filter((v) => v.usage).map((v) => [{ vassal: v.name }, v.usage?.oomKills ?? 0]));
  const net = views.filter((v) => v.net !== null);
  metric('emperor_vassal_network_transmit_bytes_total', 'Bytes the jail sent (net = nat), headers included.', 'counter', net.map((v) => [{ vassal: v.name }, v.net?.txBytes ?? 0]));
  metric('emperor_vassal_network_transmit_packets_total', 'Packets the jail sent.', 'counter', net.map((v) => [{ vassal: v.name }, v.net?.txPackets ?? 0]));
  metric('emperor_vassal_network_receive_bytes_total', 'Bytes the jail received, headers included.', 'counter', net.map((v) => [{ vassal: v.name }, v.net?.rxBytes ?? 0]));
  metric('emperor_vassal_network_receive_packets_total', 'Packets the jail received.', 'counter', net.map((v) => [{ vassal: v.name }, v.net?.rxPackets ?? 0]));
  metric('emperor_vassal_network_refused_total', 'Packets the jail\'s firewall refused (connection attempts, spoofed or over-limit packets).', 'counter', net.map((v) => [{ vassal: v.name }, v.net?.refused ?? 0]));
  if (builds !== undefined) {
    metric('emperor_jail_builds_running', 'Jails being built now (at most jail-builds at once).', 'gauge', [[{}, builds.running]]);
    metric('emperor_jail_builds_waiting', 'Jails waiting for a build slot.', 'gauge', [[{}, builds.waiting]]);
  }
  return `${lines.join('\n')}\n`;
};

/** uWSGI's emperor stats document, for tools that read it. */
export const uwsgiStatsOf = (vassals: Iterable<Vassal>, dir: string, tyrant: boolean) => ({
  version: 'emperor-0.1.0',
  pid: process.pid,
  uid: process.getuid?.() ?? 0,
  gid: process.getgid?.() ?? 0,
  cwd: process.cwd(),
  emperor: [dir],
  emperor_tyrant: tyrant ? 1 : 0,
  throttle_level: 0,
  vassals: [...vassals].map((v) => ({
    id: v.spec ? basenameOf(v.spec.file) : v.name,
    pid: v.pid ?? 0,
    born: Math.floor((v.bornAt ?? 0) / 1000),
    last_mod: Math.floor((v.lastModAt ?? 0) / 1000),
    last_heartbeat: 0,
    loyal: v.state === 'running' ? 1 : 0,
    ready: v.state === 'running' ? 1 : 0,
    accepting: v.state === 'running' && v.spec?.socket ? 1 : 0,
    last_loyal: 0,
    last_ready: 0,
    last_accepting: 0,
    first_run: Math.floor((v.bornAt ?? 0) / 1000),
    last_run: Math.floor((v.bornAt ?? 0) / 1000),
    cursed: v.state === 'cursed' ? 1 : 0,
    zerg: 0,
    on_demand: '',
    uid: v.spec?.uid ?? 0,
    gid: v.spec?.gid ?? 0,
    monitor: 'dir',
    respawns: v.restarts,
    ...netStatsOf(v),
  })),
  blacklist: [],
});

/** uWSGI's tuntap router names a peer's counters tx, rx and dropped (reference/uwsgi.md): the same here. */
const netStatsOf = (v: Vassal) => {
  const n = netViewOf(v);
  return n === null ? {} : { net: { addr: n.address, tx: n.txBytes, rx: n.rxBytes, tx_packets: n.txPackets, rx_packets: n.rxPackets, dropped: n.refused } };
};

const basenameOf = (f: string) => f.slice(f.lastIndexOf('/') + 1);
