import { BOUNDED_KEYS, builtinLimits, effectiveRlimits, overCeiling, rlimitOverCeiling, type Bound, type BoundedKey } from './operator-limits.js';
import type { ParseOptions, CheckResult } from './parse.js';
import type { ConfigProblem } from './problem.js';
import type { VassalFormat } from './read-file.js';
import type { VassalInput } from './schema.js';
import { DEFAULTS, defaultHostname, type VassalSpec } from './spec.js';
import { parseUser } from './values/users.js';
import { sameSubscriptionServer, showSubscriptionServer } from './values/subscription.js';

interface Context {
  name: string;
  file: string;
  format: VassalFormat;
  lines: Map<string, Array<number | undefined>>;
  options: ParseOptions;
}

/** Fills in defaults and checks what involves more than one key. */
export const buildSpec = (v: VassalInput, ctx: Context): CheckResult => {
  const problems: ConfigProblem[] = [];
  const at = (key: string, message: string, hint?: string, code: ConfigProblem['code'] = 'EMPEROR_ERR_CONFIG_VALUE'): void => {
    problems.push({ code, file: ctx.file, line: ctx.lines.get(key)?.[0], key, message, hint });
  };

  const env: Record<string, string> = {};
  (v.env ?? []).forEach(([k, val], i) => {
    if (k in env) {
      problems.push({ code: 'EMPEROR_ERR_CONFIG_DUPLICATE_KEY', file: ctx.file, line: ctx.lines.get('env')?.[i], key: 'env', message: `expected each variable once, got ${k} a second time`, hint: 'keep one' });
    }
    env[k] = val;
  });

  const limits = ctx.options.limits ?? builtinLimits();
  let uid = v.uid?.uid;
  let gid = v.gid?.gid ?? v.uid?.gid;
  let home = v.uid?.home;
  if (ctx.options.tyrant) {
    const owner = ctx.options.owner;
    if (owner === undefined || owner.uid === 0 || owner.gid === 0) {
      problems.push({ code: 'EMPEROR_ERR_CONFIG_USER', file: ctx.file, message: `expected a file owned by an unprivileged user and group (tyrant mode), got ${owner === undefined ? 'no owner' : `owner ${owner.uid}:${owner.gid}`}`, hint: 'chown the vassal file to the customer' });
    } else if (owner.uid < limits.tyrantMinUid.value) {
      // System users (daemons, www-data, nobody) are not customers: their homes are system directories.
      problems.push({ code: 'EMPEROR_ERR_CONFIG_USER', file: ctx.file, message: `expected a file owned by a customer, uid ${limits.tyrantMinUid.value} or above (tyrant-min-uid, set in ${limits.tyrantMinUid.from}), got uid ${owner.uid}, a system user`, hint: 'chown the vassal file to the customer\'s own user' });
    } else {
      if (v.uid !== undefined && v.uid.uid !== owner.uid) at('uid', `expected the file owner's uid ${owner.uid} (tyrant mode), got ${v.uid.uid}`, 'in tyrant mode the file owner decides; remove uid', 'EMPEROR_ERR_CONFIG_USER');
      if (v.gid !== undefined && v.gid.gid !== owner.gid) at('gid', `expected the file owner's gid ${owner.gid} (tyrant mode), got ${v.gid.gid}`, 'in tyrant mode the file owner decides; remove gid', 'EMPEROR_ERR_CONFIG_USER');
      uid = owner.uid;
      gid = owner.gid;
      home = safeUser(String(owner.uid))?.home;
    }
  } else if (uid === undefined) {
    problems.push({ code: 'EMPEROR_ERR_CONFIG_MISSING_KEY', file: ctx.file, key: 'uid', message: 'expected uid (the unprivileged user the vassal runs as), got none', hint: 'add uid = USER' });
  } else if (gid === undefined) {
    at('uid', `expected gid, since uid ${uid} has no passwd entry to take a group from, got none`, 'add gid = GROUP', 'EMPEROR_ERR_CONFIG_MISSING_KEY');
  }

  if (ctx.options.tyrant) {
    // In tyrant mode the customer writes the file; these are mounted or written by root: never theirs to set.
    for (const k of ['bind', 'bind-ro', 'rootfs', 'cgroup-opt', 'unshare'] as const) {
      if (v[k] !== undefined) at(k, `expected no ${k} in tyrant mode, got one`, 'the operator sets mounts, namespaces and raw cgroup files; customers cannot', 'EMPEROR_ERR_CONFIG_USER');
    }
  }
  const sockOwner = v['chown-socket'];
  if (ctx.options.tyrant && sockOwner !== undefined && uid !== undefined && gid !== undefined) {
    // A socket owned by someone else in the customer's run dir could stand in for that user's service.
    const web = limits.socketOwners.names.map((n) => safeUser(n)).filter((u) => u !== undefined);
    const uids = [uid, ...web.map((u) => u.uid)];
    const gids = [gid, ...web.flatMap((u) => (u.gid === undefined ? [] : [u.gid]))];
    if (!uids.includes(sockOwner.uid) || !gids.includes(sockOwner.gid)) {
      at('chown-socket', `expected the file's owner or ${limits.socketOwners.names.join(', ')} (tyrant-socket-owners, set in ${limits.socketOwners.from}), got ${sockOwner.uid}:${sockOwner.gid}`, 'in tyrant mode a socket belongs to you or to the web server', 'EMPEROR_ERR_CONFIG_USER');
    }
  }
  const subs = [...(v['subscribe-to'] ?? []).map((s, i) => ({ s, key: 'subscribe-to', i })), ...(v.subscribe2 ?? []).map((s, i) => ({ s, key: 'subscribe2', i }))];
  for (const { s, key, i } of subs) {
    const line = ctx.lines.get(key)?.[i];
    const bad = (message: string, hint: string, code: ConfigProblem['code'] = 'EMPEROR_ERR_CONFIG_VALUE') => problems.push({ code, file: ctx.file, line, key, message, hint });
    if (v.socket === undefined && s.address === undefined) bad('expected a socket to announce, got no socket key and no addr=', 'add socket = app.sock (the emperor announces it), or addr= in subscribe2', 'EMPEROR_ERR_CONFIG_MISSING_KEY');
    if (!ctx.options.tyrant) continue;
    // The customer writes the file: they may announce their own socket to the operator's routers, nothing else.
    const server = showSubscriptionServer(s.server);
    if (!limits.subscriptionServers.list.some((x) => sameSubscriptionServer(x, s.server))) {
      bad(`expected one of the operator's subscription servers (${limits.subscriptionServers.list.length === 0 ? 'none set' : limits.subscriptionServers.list.join(', ')}; subscription-servers, set in ${limits.subscriptionServers.from}), got ${server}`, 'in tyrant mode the operator names the routers in emperor.ini (subscription-servers)', 'EMPEROR_ERR_CONFIG_USER');
    }
    if (s.address !== undefined) bad(`expected no addr= in tyrant mode, got ${s.address}`, 'the emperor announces your own socket; remove addr=', 'EMPEROR_ERR_CONFIG_USER');
    if (s.vassal !== undefined) bad(`expected no vassal= in tyrant mode, got ${s.vassal}`, 'the emperor names your vassal itself; remove vassal=', 'EMPEROR_ERR_CONFIG_USER');
    // root would stat the path for the customer (and tell them, by announcing or not, what exists where they cannot look)
    if (s.check !== undefined) bad(`expected no check= in tyrant mode, got ${s.check}`, 'remove check=; the emperor announces the app while it runs and withdraws it when it stops', 'EMPEROR_ERR_CONFIG_USER');
  }
  if (v.socket === undefined) {
    for (const k of ['chown-socket', 'chmod-socket'] as const) if (v[k] !== undefined) at(k, 'expected a socket key with it, got none', 'add socket = app.sock or remove this key', 'EMPEROR_ERR_CONFIG_MISSING_KEY');
  }
  if (v.ready === 'notify' && v.command === undefined) at('ready', 'expected a command to wait for, got no command', 'ready = notify waits for the app to send READY=1');
  const daemons = [...(v['attach-daemon'] ?? []), ...(v['attach-daemon2'] ?? []), ...(v['smart-attach-daemon'] ?? [])];
  const cron = [...(v.cron ?? []), ...(v.cron2 ?? []), ...(v['unique-cron'] ?? [])];
  if (v.command === undefined && daemons.length === 0 && cron.length === 0) {
    problems.push({ code: 'EMPEROR_ERR_CONFIG_MISSING_KEY', file: ctx.file, key: 'command', message: 'expected something to run (command, an attach-daemon or a cron job), got none', hint: 'add command = ...' });
  }
  // The operator's ceilings: a file may ask for less, never more (docs/security.md).
  const bounded = (key: BoundedKey): number => {
    const own = v[key];
    if (own === undefined) return (limits[BOUNDED_KEYS[key].limit] as Bound).default;
    const over = overCeiling(key, own, limits);
    if (over !== undefined) at(key, over.message, over.hint, 'EMPEROR_ERR_CONFIG_LIMIT');
    return own;
  };
  const memoryLimitBytes = bounded('memory-limit');
  const cpuLimitPercent = bounded('cpu-limit');
  const pidsLimit = bounded('pids-limit');
  const tmpSizeBytes = bounded('tmp-size');
  const runDirSizeBytes = bounded('run-dir-size');
  const ptySessions = bounded('pty-sessions');
  const stopTimeoutMs = bounded('stop-timeout');
  const netRate = bounded('net-rate');
  const netConnections = bounded('net-connections');
  const net = v.net ?? DEFAULTS.net;
  if (net === 'nat' && v.unshare !== undefined && !v.unshare.includes('net')) at('net', 'expected the net namespace in unshare with net = nat, got an unshare list without net', 'add net to unshare (a nat jail has an interface of its own)');
  if (net === 'none') {
    for (const k of ['net-allow', 'net-deny', 'net-rate', 'net-connections'] as const) if (v[k] !== undefined) at(k, 'expected net = nat with it, got net = none', 'add net = nat, or remove this key');
  }
  if (ctx.options.tyrant && v['net-allow'] !== undefined) {
    // Allow rules open private networks (the host's, the operator's): the operator's alone (emperor.ini).
    at('net-allow', 'expected no net-allow in tyrant mode, got one', 'private destinations are opened by the operator (net-allow in emperor.ini); net-deny is yours', 'EMPEROR_ERR_CONFIG_USER');
  }
  (v.rlimit ?? []).forEach((r, i) => {
    const over = rlimitOverCeiling(r.name, r.value[1], limits);
    if (over !== undefined) problems.push({ code: 'EMPEROR_ERR_CONFIG_LIMIT', file: ctx.file, line: ctx.lines.get('rlimit')?.[i], key: 'rlimit', message: over.message, hint: over.hint });
  });
  if (problems.length > 0 || uid === undefined || gid === undefined) return { ok: false, problems: problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0)) };

  const order = (key: string, i: number): number => ctx.lines.get(key)?.[i] ?? 0;
  const withOrder = <T extends { source: string }>(items: T[]): T[] => {
    const seen = new Map<string, number>();
    return items
      .map((it) => {
        const i = seen.get(it.source) ?? 0;
        seen.set(it.source, i + 1);
        return { it, o: order(it.source, i) };
      })
      .sort((a, b) => a.o - b.o)
      .map((x) => x.it);
  };

  const spec: VassalSpec = {
    name: ctx.name,
    file: ctx.file,
    format: ctx.format,
    command: v.command,
    chdir: v.chdir,
    env,
    uid,
    gid,
    home,
    socket: v.socket === undefined ? undefined : { path: v.socket, owner: v['chown-socket'], mode: v['chmod-socket'] ?? DEFAULTS.mode },
    ready: v.ready ?? DEFAULTS.ready,
    readyTimeoutMs: v['ready-timeout'] ?? DEFAULTS.readyTimeoutMs,
    stopSignal: v['stop-signal'] ?? DEFAULTS.stopSignal,
    reloadSignal: v['reload-signal'] ?? DEFAULTS.reloadSignal,
    stopTimeoutMs,
    rootfs: v.rootfs ?? DEFAULTS.rootfs,
    hostname: v.hostname ?? defaultHostname(ctx.name),
    unshare: v.unshare ?? [...DEFAULTS.unshare],
    binds: [...(v.bind ?? []), ...(v['bind-ro'] ?? [])],
    tmpSizeBytes,
    runDirSizeBytes,
    memoryLimitBytes,
    cpuLimitPercent,
    cpuWeight: v['cpu-weight'],
    pidsLimit,
    rlimits: effectiveRlimits(v.rlimit ?? [], limits),
    cgroupOpts: v['cgroup-opt'] ?? [],
    daemons: withOrder(daemons),
    cron: withOrder(cron),
    cronTimeoutMs: v['cron-harakiri'],
    touchReload: v['touch-reload'] ?? [],
    pty: v.pty ?? DEFAULTS.pty,
    ptySessions,
    subscriptions: [...(v['subscribe-to'] ?? []), ...(v.subscribe2 ?? [])],
    net,
    netAllow: v['net-allow'] ?? [],
    netDeny: v['net-deny'] ?? [],
    netRate,
    netConnections,
  };
  return { ok: true, spec };
};

const safeUser = (s: string) => {
  try {
    return parseUser(s);
  } catch {
    return undefined;
  }
};
