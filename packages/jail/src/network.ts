import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { inNet, ipv4ToNumber, numberToIpv4, showNet, type Ipv4Net, type NetRule, type NetworkSettings, type VassalSpec } from '@emperor/config';
import { EmperorError } from '@emperor/errors';

/**
 * The network of `net = nat` jails (docs/network.md): one veth pair per jail (host end `emvN`, jail end
 * `eth0`), a /30 of the operator's pool per jail, and one nftables table, `inet emperor`, that NATs them
 * out of the uplinks, keeps them apart from each other, the host and private networks, and counts their
 * traffic. The kernel forwards every packet; the emperor only writes rules and reads counters.
 *
 * Everything is named after the jail's slot N in the pool (link `emvN`, chains `vN_*`, counters
 * `vN_tx|rx|refused`); the link's alias (`emperor:NAME`) says whose slot it is, so a new emperor learns the
 * slots of the jails it adopts from the kernel, and removes what belongs to no running jail.
 */

export const NFT_TABLE = 'emperor';
/** Prefix of the host ends of jail veths: the emperor owns every link whose name starts with it. */
export const LINK_PREFIX = 'emv';
const ALIAS_PREFIX = 'emperor:';

/** Destinations no jail reaches unless an allow rule names them (RFC 1918, 6598, 3927, loopback, multicast...). */
export const PRIVATE_NETS = ['0.0.0.0/8', '10.0.0.0/8', '100.64.0.0/10', '127.0.0.0/8', '169.254.0.0/16', '172.16.0.0/12', '192.168.0.0/16', '198.18.0.0/15', '224.0.0.0/4', '240.0.0.0/4'];

/** Bytes and packets of one direction. */
export interface Flow {
  bytes: number;
  packets: number;
}

/** A jail's traffic: out of it (tx), into it (rx), and what the firewall refused (attempts, not bytes). */
export interface NetCounters {
  tx: Flow;
  rx: Flow;
  refused: Flow;
}

/** One attached jail: its slot, addresses and host link. */
export interface NetAttachment {
  name: string;
  slot: number;
  address: string;
  gateway: string;
  link: string;
}

/** Counters as events and views show them: bytes and packets each way, refused attempts. */
export const netTotals = (c: NetCounters) => ({ txBytes: c.tx.bytes, txPackets: c.tx.packets, rxBytes: c.rx.bytes, rxPackets: c.rx.packets, refused: c.refused.packets });

const zero = (): NetCounters => ({ tx: { bytes: 0, packets: 0 }, rx: { bytes: 0, packets: 0 }, refused: { bytes: 0, packets: 0 } });

const netError = (vassal: string, message: string, hint: string): EmperorError => new EmperorError('EMPEROR_ERR_NET', `${vassal}: network: ${message}`, { hint });

/** What a tool did: its exit code (null: killed or not started), its output, the spawn error if any. */
interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
  error?: NodeJS.ErrnoException;
}

/**
 * Runs a tool (15 s at most), feeding it `input`. node:child_process rather than execa: execa's stream
 * set-up costs about 2 ms a spawn here, and a nat jail's build runs three (docs/benchmarks.md).
 */
const spawnTool = (cmd: string[], input = ''): Promise<Ran> =>
  new Promise((resolve) => {
    const [file, ...args] = cmd;
    const c = spawn(file ?? 'false', args, { stdio: ['pipe', 'pipe', 'pipe'], timeout: 15_000 });
    let stdout = '';
    let stderr = '';
    let error: NodeJS.ErrnoException | undefined;
    c.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    c.stdin.on('error', () => {}); // a tool that exits without reading its input
    c.on('error', (e) => (error = e));
    c.on('close', (code) => resolve({ code, stdout: stdout.replace(/\n$/, ''), stderr, ...(error ? { error } : {}) }));
    c.stdin.end(input);
  });

/** Runs a tool; a failure is an {@link EmperorError} whose message is the tool's stderr. */
const run = async (vassal: string, cmd: string[], input?: string): Promise<string> => {
  const [file] = cmd;
  const r = await spawnTool(cmd, input);
  if (r.code === 0) return r.stdout;
  if (r.error?.code === 'ENOENT') {
    throw netError(vassal, `expected the ${file} command, got none on the PATH`, file === 'nft' ? 'install nftables (apt-get install nftables); the kernel needs nf_tables' : 'install iproute2 and util-linux');
  }
  const text = r.stderr.trim() || (r.error ? String(r.error) : `exit ${r.code}`);
  const kernel = /not supported|No such file or directory|Protocol not available/i.test(text);
  throw netError(vassal, `${file} failed: ${text.split('\n').slice(0, 6).join(' | ')}`, file === 'nft' && kernel ? 'a kernel without nf_tables (CONFIG_NF_TABLES, nft_nat, nft_ct, nft_connlimit) cannot run net = nat jails' : 'docs/network.md; if the message names a rule of the emperor\'s, report it');
};

/** The nft match of a rule's destination, protocol and ports. */
const matchOf = (r: NetRule): string => {
  const dest = `ip daddr ${showNet(r.dest)}`;
  const ports = r.ports === undefined ? '' : r.ports[0] === r.ports[1] ? ` dport ${r.ports[0]}` : ` dport ${r.ports[0]}-${r.ports[1]}`;
  if (r.proto === 'tcp' || r.proto === 'udp') return `${dest} ${r.proto}${ports === '' ? ` dport 1-65535` : ports}`;
  if (r.proto === 'icmp') return `${dest} ip protocol icmp`;
  return dest;
};

const resolverRules = (dns: number[]): NetRule[] =>
  dns.flatMap((a) => (['udp', 'tcp'] as const).map((proto) => ({ proto, dest: { addr: a, bits: 32 }, ports: [53, 53] as [number, number], text: `${proto} ${numberToIpv4(a)}:53` })));

/** Counter objects of a slot. */
const counterNames = (slot: number) => ({ tx: `v${slot}_tx`, rx: `v${slot}_rx`, refused: `v${slot}_refused` });

/** The network of every `net = nat` jail of one emperor. */
export class JailNetwork {
  readonly settings: NetworkSettings;
  readonly #stateDir: string;
  /** Slot of each attached vassal. */
  readonly #slots = new Map<string, number>();
  /** Slots of links found at start (a previous emperor's jails), by the vassal their alias names. */
  #reserved: Map<number, string> | undefined;
  #base: Promise<void> | undefined;
  #uplinks: string[] | undefined;
  #dns: number[] | undefined;
  #cache: { at: number; counters: Map<string, NetCounters> } | undefined;
  #reading: Promise<Map<string, NetCounters>> | undefined;
  /** Serializes changes to the table and the slot map. */
  #queue: Promise<unknown> = Promise.resolve();

  /** `stateDir`: root's directory for the jails' resolv.conf files (RUN/net). */
  constructor(settings: NetworkSettings, stateDir: string) {
    this.settings = settings;
    this.#stateDir = stateDir;
  }

  /** Slots in the pool: one /30 each. */
  get capacity(): number {
    return 2 ** (32 - this.settings.pool.bits) / 4;
  }

  #serial<T>(work: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(work, work);
    this.#queue = next.catch(() => undefined);
    return next;
  }

  addressesOf(slot: number): { gateway: string; address: string } {
    const net = this.settings.pool.addr + slot * 4;
    return { gateway: numberToIpv4(net + 1), address: numberToIpv4(net + 2) };
  }

  /** The vassal's attachment, if it has one. */
  attachment(name: string): NetAttachment | undefined {
    const slot = this.#slots.get(name);
    if (slot === undefined) return undefined;
    return { name, slot, ...this.addressesOf(slot), link: `${LINK_PREFIX}${slot}` };
  }

  /** The resolv.conf a nat jail sees as /etc/resolv.conf (written by {@link prepare}). */
  resolvConfOf(name: string): string {
    return join(this.#stateDir, `${name}.resolv.conf`);
  }

  /** Resolvers: the operator's, else the host's own that a jail can reach (not loopback). */
  #resolvers(vassal: string): number[] {
    if (this.#dns !== undefined) return this.#dns;
    if (this.settings.dns.length > 0) return (this.#dns = this.settings.dns);
    let text = '';
    try {
      text = readFileSync('/etc/resolv.conf', 'utf8');
    } catch {
      // none: the error below
    }
    const found = [...text.matchAll(/^\s*nameserver\s+(\S+)/gm)].map((m) => ipv4ToNumber(m[1] ?? '')).filter((n): n is number => n !== undefined && !inNet(n, { addr: 0x7f000000, bits: 8 }));
    if (found.length === 0) throw netError(vassal, "expected a resolver for the jails, got none (the host's /etc/resolv.conf names no IPv4 resolver outside 127.0.0.0/8)", 'set net-dns = ADDRESS in emperor.ini');
    return (this.#dns = found.slice(0, 3));
  }

  /**
   * Before the jail is built: writes its resolv.conf (a root-owned file outside every run dir, bound
   * read-only over /etc/resolv.conf) and checks the host can route jails at all.
   */
  async prepare(spec: VassalSpec): Promise<void> {
    const dns = this.#resolvers(spec.name);
    mkdirSync(this.#stateDir, { recursive: true, mode: 0o755 });
    const file = this.resolvConfOf(spec.name);
    const tmp = `${file}.tmp`;
    writeFileSync(tmp, `# written by the emperor for ${spec.name} (net = nat): net-dns in emperor.ini\n${dns.map((d) => `nameserver ${numberToIpv4(d)}`).join('\n')}\noptions timeout:2 attempts:2\n`, { mode: 0o644 });
    renameSync(tmp, file);
    await this.#ensureBase(spec.name);
  }

  /** The uplinks: the operator's (each must exist), else the default route's interface. */
  async #findUplinks(vassal: string): Promise<string[]> {
    if (this.#uplinks !== undefined) return this.#uplinks;
    const links = JSON.parse(await run(vassal, ['ip', '-j', 'link', 'show'])) as Array<{ ifname: string }>;
    if (this.settings.uplinks.length > 0) {
      for (const u of this.settings.uplinks) {
        if (!links.some((l) => l.ifname === u)) throw netError(vassal, `expected the uplink ${u} (net-uplink, ${this.settings.from.uplinks}), got no such interface`, `ip link shows the host's interfaces; set net-uplink to the one that reaches the internet`);
      }
      return (this.#uplinks = this.settings.uplinks);
    }
    const routes = JSON.parse(await run(vassal, ['ip', '-j', '-4', 'route', 'show', 'default'])) as Array<{ dev?: string }>;
    const devs = [...new Set(routes.map((r) => r.dev).filter((d): d is string => d !== undefined))];
    if (devs.length === 0) throw netError(vassal, 'expected an uplink (the interface of the default route), got no IPv4 default route', 'give the host a default route, or set net-uplink = IFACE in emperor.ini');
    return (this.#uplinks = devs);
  }

  /**
   * The table's fixed part, made once per emperor: maps from a jail link to its chains, the private set,
   * the NAT rule. Rewritten whole in one transaction (base chains flushed and refilled) so an emperor
   * started with other settings replaces its predecessor's; the per-jail chains and map entries of adopted
   * jails are left as they are.
   */
  #ensureBase(vassal: string): Promise<void> {
    this.#base ??= (async () => {
      // Links of ours already here belong to jails a previous emperor left running: their slots are
      // theirs until they are adopted (or swept, once the first scan is over), never a new jail's.
      this.#reserved ??= await this.#links(vassal);
      const uplinks = await this.#findUplinks(vassal);
      const T = `inet ${NFT_TABLE}`;
      const pool = showNet(this.settings.pool);
      const script = [
        `add table ${T}`,
        `add set ${T} private { type ipv4_addr; flags interval; auto-merge; }`,
        `flush set ${T} private`,
        `add element ${T} private { ${[...new Set([...PRIVATE_NETS, pool])].join(', ')} }`,
        `add map ${T} from_jail { type ifname : verdict; }`,
        `add map ${T} to_host { type ifname : verdict; }`,
        `add map ${T} to_jail { type ifname : verdict; }`,
        `add chain ${T} forward { type filter hook forward priority filter; policy accept; }`,
        `add chain ${T} input { type filter hook input priority filter; policy accept; }`,
        `add chain ${T} output { type filter hook output priority filter; policy accept; }`,
        `add chain ${T} postrouting { type nat hook postrouting priority srcnat; policy accept; }`,
        ...['forward', 'input', 'output', 'postrouting'].map((c) => `flush chain ${T} ${c}`),
        `add rule ${T} forward iifname vmap @from_jail`,
        `add rule ${T} forward oifname vmap @to_jail`,
        // A link of ours that is not (or no longer) in a map: nothing passes.
        `add rule ${T} forward iifname "${LINK_PREFIX}*" drop`,
        `add rule ${T} forward oifname "${LINK_PREFIX}*" drop`,
        `add rule ${T} input iifname vmap @to_host`,
        `add rule ${T} input iifname "${LINK_PREFIX}*" drop`,
        `add rule ${T} output oifname vmap @to_jail`,
        `add rule ${T} output oifname "${LINK_PREFIX}*" drop`,
        `add rule ${T} postrouting ip saddr ${pool} oifname { ${uplinks.map((u) => `"${u}"`).join(', ')} } masquerade`,
      ];
      await run(vassal, ['nft', '-f', '-'], `${script.join('\n')}\n`);
      // The kernel forwards only with this on (as Docker, podman and libvirt set it): docs/network.md.
      try {
        writeFileSync('/proc/sys/net/ipv4/ip_forward', '1');
      } catch (e) {
        throw netError(vassal, `expected to turn on IPv4 forwarding, got ${(e as NodeJS.ErrnoException).code}`, 'the emperor needs a writable /proc/sys/net (no ProtectKernelTunables=) and CAP_NET_ADMIN');
      }
    })();
    this.#base.catch(() => (this.#base = undefined)); // a later jail tries again (nftables installed meanwhile)
    return this.#base;
  }

  /** The per-jail chains' rules (filling chains made and flushed by the caller). */
  #jailRules(spec: VassalSpec, slot: number): string[] {
    const T = `inet ${NFT_TABLE}`;
    const { address } = this.addressesOf(slot);
    const c = counterNames(slot);
    const refuse = `counter name ${c.refused} reject with icmpx admin-prohibited`;
    // The resolvers as prepare() found them (an adopted jail's rules too: its emperor may not have prepared it).
    const allow = [...resolverRules(this.#resolvers(spec.name)), ...this.settings.allow, ...spec.netAllow];
    const out = `${T} v${slot}_out`;
    const host = `${T} v${slot}_host`;
    const into = `${T} v${slot}_in`;
    const rate = spec.netRate === Infinity ? [] : [`add rule ${out} limit rate over ${Math.max(1, Math.floor(spec.netRate / 8))} bytes/second burst ${Math.max(1500, Math.floor(spec.netRate / 8))} bytes counter drop`];
    return [
      // Only its own address leaves a jail (it has no capability to change it; this holds even if it did).
      `add rule ${out} ip saddr != ${address} counter name ${c.refused} drop`,
      `add rule ${out} meta nfproto != ipv4 counter name ${c.refused} drop`,
      ...rate,
      `add rule ${out} ct state established,related counter name ${c.tx} accept`,
      `add rule ${out} ct state invalid drop`,
      `add rule ${out} ct count over ${spec.netConnections} ${refuse}`,
      ...spec.netDeny.map((r) => `add rule ${out} ${matchOf(r)} ${refuse}`),
      // Never another vassal, whatever an allow rule covers (an operator's `any 10.0.0.0/8` holds the pool).
      `add rule ${out} ip daddr ${showNet(this.settings.pool)} ${refuse}`,
      ...allow.map((r) => `add rule ${out} ${matchOf(r)} counter name ${c.tx} accept`),
      `add rule ${out} ip daddr @private ${refuse}`,
      `add rule ${out} counter name ${c.tx} accept`,
      `add rule ${host} ip saddr != ${address} counter name ${c.refused} drop`,
      `add rule ${host} meta nfproto != ipv4 counter name ${c.refused} drop`,
      `add rule ${host} ct state established,related counter name ${c.tx} accept`,
      ...allow.map((r) => `add rule ${host} ${matchOf(r)} counter name ${c.tx} accept`),
      `add rule ${host} ${refuse}`,
      // Nothing starts a connection into a jail: customers' traffic comes through the proxy's socket.
      `add rule ${into} ct state established,related counter name ${c.rx} accept`,
      `add rule ${into} drop`,
    ];
  }

  /**
   * After the jail is built, before anything of the customer's runs in it: the table's entries for it
   * (first, so its first packet is already filtered and counted), then the veth pair with one end moved
   * into the jail's network namespace, addresses and the default route. `carry`: counters of this
   * vassal's previous jail (a rebuild), so its totals go on.
   */
  attach(spec: VassalSpec, init: { pid: number; start: number }, carry?: NetCounters): Promise<NetAttachment> {
    return this.#serial(async () => {
      const name = spec.name;
      await this.#ensureBase(name);
      const used = new Set([...this.#slots.values(), ...(this.#reserved ?? new Map()).keys()]);
      let slot = -1;
      for (let i = 0; i < this.capacity; i++) if (!used.has(i)) { slot = i; break; }
      if (slot < 0) throw netError(name, `expected a free address in net-pool ${showNet(this.settings.pool)} (${this.settings.from.pool}), got all ${this.capacity} in use`, 'give net-pool a larger network (one /30 per jail)');
      const { gateway, address } = this.addressesOf(slot);
      const link = `${LINK_PREFIX}${slot}`;
      const k = carry ?? zero();
      // The pid names the jail's init only while its start time is the same (no reuse under us).
      const initAlive = () => {
        if (procStart(init.pid) !== init.start) throw netError(name, `expected the jail's init (pid ${init.pid}) to run, got it gone`, 'the jail died while its network was set up; it is built again');
      };
      this.#slots.set(name, slot);
      this.#cache = undefined;
      try {
        // Counters made afresh (from `carry`): what a jail killed with its emperor left in this slot
        // (chains, counters: the kernel removed only its link) is not the new jail's.
        await run(name, ['nft', '-f', '-'], `${this.#slotScript(spec, slot, k).join('\n')}\n`);
        initAlive();
        await run(name, ['ip', '-batch', '-'], [`link add ${link} type veth peer name eth0 netns ${init.pid}`, `link set ${link} alias ${ALIAS_PREFIX}${name}`, `link set ${link} addrgenmode none`, `addr add ${gateway}/30 dev ${link}`, `link set ${link} up`].join('\n'));
        initAlive(); // so the pid named the jail's init when the link was moved into its namespace
        writeSysctl(`/proc/sys/net/ipv6/conf/${link}/disable_ipv6`, '1');
        await run(name, ['nsenter', `--net=/proc/${init.pid}/ns/net`, '--', 'ip', '-batch', '-'], ['link set eth0 addrgenmode none', `addr add ${address}/30 dev eth0`, 'link set eth0 up', `route add default via ${gateway} dev eth0`].join('\n'));
        initAlive();
        this.#cache = undefined;
      } catch (e) {
        await this.#remove(name, slot).catch(() => undefined);
        this.#slots.delete(name);
        throw e;
      }
      return { name, slot, gateway, address, link };
    });
  }

  /**
   * One transaction that makes slot N's counters (made afresh with `fresh`'s values, or kept as the kernel
   * has them), its chains (flushed, then filled for `spec`) and its map entries.
   */
  #slotScript(spec: VassalSpec, slot: number, fresh?: NetCounters): string[] {
    const T = `inet ${NFT_TABLE}`;
    const c = counterNames(slot);
    const link = `${LINK_PREFIX}${slot}`;
    const counter = (n: string, f?: Flow) => (f === undefined ? [`add counter ${T} ${n}`] : [`add counter ${T} ${n}`, `delete counter ${T} ${n}`, `add counter ${T} ${n} { packets ${f.packets} bytes ${f.bytes} }`]);
    return [
      // Chains first (flushed: a stale chain's rules no longer hold the counters being made again).
      ...['out', 'host', 'in'].flatMap((x) => [`add chain ${T} v${slot}_${x}`, `flush chain ${T} v${slot}_${x}`]),
      ...counter(c.tx, fresh?.tx),
      ...counter(c.rx, fresh?.rx),
      ...counter(c.refused, fresh?.refused),
      ...this.#jailRules(spec, slot),
      `add element ${T} from_jail { "${link}" : jump v${slot}_out }`,
      `add element ${T} to_host { "${link}" : jump v${slot}_host }`,
      `add element ${T} to_jail { "${link}" : jump v${slot}_in }`,
    ];
  }

  /** Applies changed net-allow, net-deny, net-rate or net-connections to a running jail, in one transaction. */
  update(spec: VassalSpec): Promise<void> {
    return this.#serial(async () => {
      const slot = this.#slots.get(spec.name);
      if (slot === undefined) return;
      const T = `inet ${NFT_TABLE}`;
      const script = [...['out', 'host', 'in'].map((s) => `flush chain ${T} v${slot}_${s}`), ...this.#jailRules(spec, slot)];
      await run(spec.name, ['nft', '-f', '-'], `${script.join('\n')}\n`);
    });
  }

  /**
   * Takes back the slot of an adopted jail from the kernel (its link's alias), rewriting its rules for
   * `spec` (this emperor's settings may differ). False when the jail has no link of ours.
   */
  adopt(spec: VassalSpec): Promise<boolean> {
    return this.#serial(async () => {
      await this.#ensureBase(spec.name);
      const reserved = this.#reserved ?? new Map<number, string>();
      const slot = [...reserved].find(([, owner]) => owner === spec.name)?.[0];
      if (slot === undefined) return false;
      reserved.delete(slot);
      this.#slots.set(spec.name, slot);
      // Map elements are added again as they are (add is a no-op for an equal element); counters kept.
      await run(spec.name, ['nft', '-f', '-'], `${this.#slotScript(spec, slot).join('\n')}\n`);
      this.#cache = undefined;
      return true;
    });
  }

  /**
   * After the jail stopped: its link (gone with the jail's namespace already, unless the jail outlived
   * its stop), map entries, chains and counters. Returns its final counters, for a rebuild to carry on.
   */
  detach(name: string): Promise<NetCounters | undefined> {
    return this.#serial(async () => {
      const slot = this.#slots.get(name);
      if (slot === undefined) return undefined;
      const all = await this.#readCounters(name);
      const final = all.get(name);
      await this.#remove(name, slot);
      this.#slots.delete(name);
      this.#cache = undefined;
      try {
        rmSync(this.resolvConfOf(name), { force: true });
      } catch {
        // a leftover is rewritten by the next prepare
      }
      return final;
    });
  }

  /** Deletes whatever of slot N exists (link, map entries, chains, counters), in one transaction. */
  async #remove(vassal: string, slot: number, withLink = true): Promise<void> {
    const link = `${LINK_PREFIX}${slot}`;
    if (withLink) await spawnTool(['ip', 'link', 'del', link]);
    const present = await this.#tableObjects();
    const T = `inet ${NFT_TABLE}`;
    const script = [
      ...['from_jail', 'to_host', 'to_jail'].filter((m) => present.elements.get(m)?.has(link)).map((m) => `delete element ${T} ${m} { "${link}" }`),
      ...['out', 'host', 'in'].map((s) => `v${slot}_${s}`).filter((ch) => present.chains.has(ch)).flatMap((ch) => [`flush chain ${T} ${ch}`, `delete chain ${T} ${ch}`]),
      ...Object.values(counterNames(slot)).filter((n) => present.counters.has(n)).map((n) => `delete counter ${T} ${n}`),
    ];
    if (script.length > 0) await run(vassal, ['nft', '-f', '-'], `${script.join('\n')}\n`);
  }

  /**
   * At start, once every running jail has been adopted: removes links, chains, counters and map entries
   * of slots no attached vassal holds (left by a crash or SIGKILL of anything), and drops the table when
   * nothing is attached at all.
   */
  sweep(): Promise<void> {
    return this.#serial(async () => {
      const exists = await spawnTool(['nft', 'list', 'table', 'inet', NFT_TABLE]);
      const links = await this.#links('sweep').catch(() => new Map<number, string>());
      const held = new Set(this.#slots.values());
      this.#reserved = new Map(); // not adopted by now: nobody's
      for (const slot of links.keys()) if (!held.has(slot)) await spawnTool(['ip', 'link', 'del', `${LINK_PREFIX}${slot}`]);
      if (exists.code !== 0) return;
      if (held.size === 0) {
        await run('sweep', ['nft', 'delete', 'table', 'inet', NFT_TABLE]);
        this.#base = undefined;
        return;
      }
      const present = await this.#tableObjects();
      const slots = new Set<number>();
      for (const ch of present.chains) { const m = /^v(\d+)_/.exec(ch); if (m) slots.add(Number(m[1])); }
      for (const n of present.counters) { const m = /^v(\d+)_/.exec(n); if (m) slots.add(Number(m[1])); }
      for (const slot of slots) if (!held.has(slot)) await this.#remove('sweep', slot);
    });
  }

  /** At the emperor's shutdown, with every jail stopped: the table goes too. */
  close(): Promise<void> {
    return this.sweep();
  }

  /** Our links in this namespace: slot to the vassal named by its alias. */
  async #links(vassal: string): Promise<Map<number, string>> {
    const out = new Map<number, string>();
    const links = JSON.parse(await run(vassal, ['ip', '-j', 'link', 'show'])) as Array<{ ifname: string; ifalias?: string }>;
    for (const l of links) {
      const m = new RegExp(`^${LINK_PREFIX}(\\d+)$`).exec(l.ifname);
      if (m === null) continue;
      out.set(Number(m[1]), l.ifalias?.startsWith(ALIAS_PREFIX) ? l.ifalias.slice(ALIAS_PREFIX.length) : '');
    }
    return out;
  }

  /** Names of the chains, counters and map keys in our table. */
  async #tableObjects(): Promise<{ chains: Set<string>; counters: Set<string>; elements: Map<string, Set<string>> }> {
    const r = await spawnTool(['nft', '-j', 'list', 'table', 'inet', NFT_TABLE]);
    const out = { chains: new Set<string>(), counters: new Set<string>(), elements: new Map<string, Set<string>>() };
    if (r.code !== 0) return out;
    const items = (JSON.parse(r.stdout) as { nftables: Array<Record<string, { name?: string; elem?: unknown[] }>> }).nftables;
    for (const it of items) {
      if (it.chain?.name !== undefined) out.chains.add(it.chain.name);
      if (it.counter?.name !== undefined) out.counters.add(it.counter.name);
      if (it.map?.name !== undefined) {
        const keys = new Set<string>();
        for (const e of it.map.elem ?? []) if (Array.isArray(e) && typeof e[0] === 'string') keys.add(e[0]);
        out.elements.set(it.map.name, keys);
      }
    }
    return out;
  }

  /** Every attached vassal's counters, read from the kernel in one call. */
  async #readCounters(vassal: string): Promise<Map<string, NetCounters>> {
    const out = new Map<string, NetCounters>();
    if (this.#slots.size === 0) return out;
    const text = await run(vassal, ['nft', '-j', 'list', 'counters', 'table', 'inet', NFT_TABLE]);
    const bySlot = new Map<number, NetCounters>();
    for (const it of (JSON.parse(text) as { nftables: Array<{ counter?: { name: string; bytes: number; packets: number } }> }).nftables) {
      const m = it.counter === undefined ? null : /^v(\d+)_(tx|rx|refused)$/.exec(it.counter.name);
      if (m === null || it.counter === undefined) continue;
      const slot = Number(m[1]);
      const c = bySlot.get(slot) ?? zero();
      c[m[2] as keyof NetCounters] = { bytes: it.counter.bytes, packets: it.counter.packets };
      bySlot.set(slot, c);
    }
    for (const [name, slot] of this.#slots) out.set(name, bySlot.get(slot) ?? zero());
    return out;
  }

  /** Counters of every attached vassal, at most `maxAgeMs` old (reads are shared). */
  async counters(maxAgeMs = 500): Promise<Map<string, NetCounters>> {
    if (this.#cache !== undefined && Date.now() - this.#cache.at <= maxAgeMs) return this.#cache.counters;
    // In line with attach and detach: never a read of a slot half made or half removed.
    this.#reading ??= this.#serial(() => this.#readCounters('counters')).then((counters) => {
      this.#cache = { at: Date.now(), counters };
      return counters;
    }).finally(() => (this.#reading = undefined));
    return this.#reading;
  }

  /** The last counters read, without a new read (views that must not wait). */
  cached(name: string): NetCounters | undefined {
    return this.#cache?.counters.get(name);
  }

  /** Vassals attached now. */
  get attached(): string[] {
    return [...this.#slots.keys()];
  }
}

/** Start time (clock ticks since boot) of a process, or undefined when it is gone. */
const procStart = (pid: number): number | undefined => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
  } catch {
    return undefined;
  }
};

const writeSysctl = (path: string, value: string): void => {
  try {
    writeFileSync(path, value);
  } catch {
    // an interface gone already: the next step says so
  }
};

export type { Ipv4Net };
