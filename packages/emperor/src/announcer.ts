import { createSocket, type Socket } from 'node:dgram';
import { closeSync, constants, existsSync, fstatSync, openSync, readFileSync } from 'node:fs';
import type { SubscriptionServer, SubscriptionSpec } from '@emperor/config';
import { sendUnixDatagram } from '@emperor/jail';
import { loadSigner, subscriptionPacket, type NodeAnnouncement, type Signer } from '@emperor/router';
import type { Logger } from 'pino';

/** How often a running vassal's subscriptions are sent again (uWSGI: every 10 master cycles, ~10 s). */
export const SUBSCRIBE_FREQ_MS = 5_000;

/** What the announcer needs of a vassal. */
export interface Announced {
  name: string;
  uid: number;
  subscriptions: SubscriptionSpec[];
  /** The host path of the vassal's socket (what the router connects to), if it has one. */
  socketPath: string | undefined;
}

/** One subscription of a vassal, resolved: where it goes and what it says. */
export interface ActiveSubscription {
  vassal: string;
  server: string;
  target: SubscriptionServer;
  announcement: NodeAnnouncement;
  spec: SubscriptionSpec;
}

const serverText = (s: SubscriptionServer): string => (s.kind === 'unix' ? s.path : `${s.host}:${s.port}`);

/**
 * Sends the subscribe packets of every running vassal with `subscribe-to`/`subscribe2` (uWSGI's packets,
 * so a real uWSGI router takes them too), every {@link SUBSCRIBE_FREQ_MS}, and unsubscribes a vassal the
 * moment it stops running (stop, reload drain, failure). The app does nothing.
 */
export class Announcer {
  readonly #log: Logger;
  readonly #freqMs: number;
  readonly #tyrant: boolean;
  readonly #active = new Map<string, ActiveSubscription[]>();
  /** server \0 key \0 address -> the last `unix` sent (signed packets: it must grow). */
  readonly #unix = new Map<string, number>();
  readonly #signers = new Map<string, Signer>();
  readonly #warned = new Set<string>();
  #udp4: Socket | undefined;
  #udp6: Socket | undefined;
  #timer: NodeJS.Timeout | undefined;
  #pending = 0;
  /** Packets sent and failed (for the tests and the emperor's log). */
  readonly counters = { sent: 0, failed: 0 };

  constructor(log: Logger, options: { freqMs?: number; tyrant: boolean }) {
    this.#log = log;
    this.#freqMs = options.freqMs ?? SUBSCRIBE_FREQ_MS;
    this.#tyrant = options.tyrant;
  }

  /** Every subscription being announced now (GET /subscriptions: a router starting up reads it). */
  list(): ActiveSubscription[] {
    return [...this.#active.values()].flat();
  }

  /** The vassal runs (and is ready): announce it now and from now on; a changed list replaces the old one. */
  running(v: Announced): void {
    const subs = this.#resolve(v);
    const before = this.#active.get(v.name) ?? [];
    const same = (a: ActiveSubscription, b: ActiveSubscription): boolean => a.server === b.server && JSON.stringify(a.announcement) === JSON.stringify(b.announcement);
    for (const old of before) if (!subs.some((s) => same(s, old))) this.#send(old, 1);
    if (subs.length === 0) {
      this.#active.delete(v.name);
      return;
    }
    this.#active.set(v.name, subs);
    for (const s of subs) if (!before.some((old) => same(s, old))) this.#send(s, 0);
    this.#arm();
  }

  /** The vassal stopped serving (stop, reload drain, failure, removal): unsubscribe it now. */
  notRunning(name: string): void {
    const subs = this.#active.get(name);
    if (subs === undefined) return;
    this.#active.delete(name);
    for (const s of subs) this.#send(s, 1);
    // Read again when it next runs: a replaced key file is taken then, and a removed vassal holds nothing.
    for (const id of [...this.#signers.keys()]) if (id.startsWith(`${name}\0`)) this.#signers.delete(id);
  }

  /** An emperor stopping: every vassal unsubscribed (the packets out before the sockets close, within 1 s). */
  async close(): Promise<void> {
    for (const name of [...this.#active.keys()]) this.notRunning(name);
    const until = Date.now() + 1_000;
    while (this.#pending > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    this.detach();
  }

  /** An emperor handing over (upgrade, detach): the vassals run on, the next emperor announces them. */
  detach(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#active.clear();
    this.#udp4?.close();
    this.#udp6?.close();
    this.#udp4 = undefined;
    this.#udp6 = undefined;
  }

  #arm(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => {
      if (this.#active.size === 0) {
        clearInterval(this.#timer);
        this.#timer = undefined;
        return;
      }
      for (const subs of this.#active.values()) for (const s of subs) this.#send(s, 0);
    }, this.#freqMs);
    this.#timer.unref();
  }

  #warnOnce(id: string, msg: string, detail: Record<string, unknown>): void {
    if (this.#warned.has(id)) return;
    if (this.#warned.size > 10_000) this.#warned.clear();
    this.#warned.add(id);
    this.#log.warn(detail, msg);
  }

  #resolve(v: Announced): ActiveSubscription[] {
    const out: ActiveSubscription[] = [];
    for (const spec of v.subscriptions) {
      const address = spec.address ?? v.socketPath;
      if (address === undefined) continue; // the config refuses this; nothing to announce
      out.push({
        vassal: v.name, server: serverText(spec.server), target: spec.server, spec,
        announcement: {
          key: spec.key, address, modifier1: spec.modifier1 ?? 0, modifier2: spec.modifier2 ?? 0, cores: 1, load: 0, weight: spec.weight ?? 1,
          backup: spec.backup ?? 0, proto: spec.proto ?? 'http', algo: spec.algo, vassal: spec.vassal ?? v.name,
        },
      });
      if (spec.sign !== undefined) this.#signer(v, spec.sign);
    }
    return out;
  }

  /**
   * The vassal's private key, read once: never through a symlink, never a fifo or device, at most 16 KiB, and
   * (tyrant mode) only a file the vassal's own uid owns: root does not read what the customer cannot.
   */
  #signer(v: Announced, sign: { digest: string; keyFile: string }): Signer | undefined {
    const id = `${v.name}\0${sign.keyFile}`;
    const known = this.#signers.get(id);
    if (known !== undefined) return known;
    let fd: number | undefined;
    try {
      fd = openSync(sign.keyFile, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
      const st = fstatSync(fd);
      if (!st.isFile()) throw new Error('not a regular file');
      if (st.size > 16_384) throw new Error(`${st.size} bytes, more than a private key`);
      if (this.#tyrant ? st.uid !== v.uid : st.uid !== 0 && st.uid !== v.uid) throw new Error(`owned by uid ${st.uid}; expected the vassal's uid ${v.uid}${this.#tyrant ? '' : ' or root'}`);
      const signer = loadSigner(sign.keyFile, sign.digest, readFileSync(fd));
      this.#signers.set(id, signer);
      return signer;
    } catch (e) {
      this.#warnOnce(`sign\0${id}`, `${v.name}: the subscription key ${sign.keyFile} cannot be used (${(e as Error).message}); its subscriptions are sent unsigned, and a router that wants them signed refuses them`, { vassal: v.name, keyFile: sign.keyFile });
      return undefined;
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }

  #send(s: ActiveSubscription, cmd: 0 | 1): void {
    if (cmd === 0 && s.spec.check !== undefined && existsSync(s.spec.check)) return; // uWSGI's check=: paused while the file exists
    let packet: Buffer;
    try {
      const signer = s.spec.sign === undefined ? undefined : this.#signers.get(`${s.vassal}\0${s.spec.sign.keyFile}`);
      if (signer === undefined) {
        packet = subscriptionPacket(cmd, s.announcement);
      } else {
        const id = `${s.server}\0${s.announcement.key}\0${s.announcement.address}`;
        const unix = Math.max(Math.floor(Date.now() / 1000), (this.#unix.get(id) ?? 0) + 1);
        this.#unix.set(id, unix);
        packet = subscriptionPacket(cmd, s.announcement, { signer, unix });
      }
    } catch (e) {
      this.counters.failed++;
      this.#warnOnce(`pkt\0${s.vassal}\0${s.server}\0${s.announcement.key}`, `${s.vassal}: its subscription to ${s.server} for ${s.announcement.key} cannot be made (${(e as Error).message})`, { vassal: s.vassal });
      return;
    }
    const failed = (err: Error): void => {
      this.counters.failed++;
      this.#warnOnce(`send\0${s.vassal}\0${s.server}`, `${s.vassal}: subscription packets to ${s.server} are not delivered (${err.message}); still trying every ${this.#freqMs / 1000} s`, { vassal: s.vassal, server: s.server });
    };
    const t = s.target;
    if (t.kind === 'unix') {
      try {
        sendUnixDatagram(t.path, packet);
        this.counters.sent++;
        this.#warned.delete(`send\0${s.vassal}\0${s.server}`);
      } catch (e) {
        failed(e as Error);
      }
      return;
    }
    const sock = this.#udp(t.host.includes(':') ? 6 : 4);
    this.#pending++;
    sock.send(packet, t.port, t.host, (err) => {
      this.#pending--;
      if (err) return failed(err);
      this.counters.sent++;
      this.#warned.delete(`send\0${s.vassal}\0${s.server}`);
    });
  }

  #udp(family: 4 | 6): Socket {
    const known = family === 4 ? this.#udp4 : this.#udp6;
    if (known !== undefined) return known;
    const sock = createSocket(family === 4 ? 'udp4' : 'udp6');
    // ICMP port unreachable comes back as an error on the socket: a router that is down, nothing more.
    sock.on('error', (err) => this.#warnOnce(`udp\0${err.message}`, `subscription socket: ${err.message}`, {}));
    sock.unref();
    if (family === 4) this.#udp4 = sock;
    else this.#udp6 = sock;
    return sock;
  }
}

export const announcedServer = serverText;
