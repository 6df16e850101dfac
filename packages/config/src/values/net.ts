import { Invalid, scalarText } from './invalid.js';

/** An IPv4 network: a 32-bit address (network part only) and its prefix length. */
export interface Ipv4Net {
  /** The address as an unsigned 32-bit number. */
  addr: number;
  bits: number;
}

/** One firewall rule of `net-allow` / `net-deny`: a protocol, a destination network and a port range. */
export interface NetRule {
  proto: 'tcp' | 'udp' | 'icmp' | 'any';
  dest: Ipv4Net;
  /** Inclusive; undefined: every port (always undefined for icmp and any). */
  ports: [number, number] | undefined;
  /** The rule as written, normalized (`tcp 10.0.0.5:5432`), for messages and status. */
  text: string;
}

const PROTOS = ['tcp', 'udp', 'icmp', 'any'] as const;

/** Dotted quad to a 32-bit number, or undefined. */
export const ipv4ToNumber = (s: string): number | undefined => {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255 || (p.length > 1 && p.startsWith('0'))) return undefined;
    n = n * 256 + Number(p);
  }
  return n;
};

/** A 32-bit number to a dotted quad. */
export const numberToIpv4 = (n: number): string => [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');

const maskOf = (bits: number): number => (bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0);

/** Whether an address lies in a network. */
export const inNet = (addr: number, net: Ipv4Net): boolean => ((addr & maskOf(net.bits)) >>> 0) === net.addr;

/** `10.0.0.0/8` or a bare address (a /32); host bits must be zero, as in a routing table. */
export const parseIpv4Net = (s: string, expected: string): Ipv4Net => {
  const [a, b, ...rest] = s.split('/');
  if (a === undefined || rest.length > 0) throw new Invalid(expected);
  if (a.includes(':')) throw new Invalid(expected, { found: JSON.stringify(s), hint: 'jails have IPv4 only for now (docs/decisions.md, issue 12)' });
  const addr = ipv4ToNumber(a);
  const bits = b === undefined ? 32 : /^\d{1,2}$/.test(b) ? Number(b) : NaN;
  if (addr === undefined || !(bits >= 0 && bits <= 32)) throw new Invalid(expected, { found: JSON.stringify(s) });
  if (((addr & maskOf(bits)) >>> 0) !== addr) {
    throw new Invalid(expected, { found: JSON.stringify(s), hint: `the network is ${numberToIpv4((addr & maskOf(bits)) >>> 0)}/${bits}` });
  }
  return { addr, bits };
};

export const showNet = (n: Ipv4Net): string => (n.bits === 32 ? numberToIpv4(n.addr) : `${numberToIpv4(n.addr)}/${n.bits}`);

/**
 * `PROTO DEST[:PORT[-PORT]]`: `tcp 10.0.0.5:5432`, `udp 10.0.0.53:53`, `tcp 10.1.0.0/16:8000-8999`,
 * `icmp 10.0.0.1`, `any 192.168.1.0/24`. IPv4 only.
 */
export const parseNetRule = (raw: unknown): NetRule => {
  const expected = 'PROTO ADDRESS[/BITS][:PORT[-PORT]] with PROTO one of tcp, udp, icmp, any, like "tcp 10.0.0.5:5432"';
  const s = scalarText(raw, expected).toLowerCase();
  const m = /^(\S+)\s+([0-9a-f.:/]+?)(?::(\d+)(?:-(\d+))?)?$/.exec(s);
  if (m === null || m[1] === undefined || m[2] === undefined) throw new Invalid(expected);
  const proto = PROTOS.find((p) => p === m[1]);
  if (proto === undefined) throw new Invalid(expected, { found: JSON.stringify(m[1]) });
  const dest = parseIpv4Net(m[2], expected);
  let ports: [number, number] | undefined;
  if (m[3] !== undefined) {
    if (proto !== 'tcp' && proto !== 'udp') throw new Invalid(expected, { found: `a port with ${proto}`, hint: 'ports go with tcp or udp' });
    const lo = Number(m[3]);
    const hi = m[4] === undefined ? lo : Number(m[4]);
    if (lo < 1 || hi > 65535 || lo > hi) throw new Invalid(expected, { found: JSON.stringify(s), hint: 'ports are 1 to 65535, low-high' });
    ports = [lo, hi];
  }
  const portText = ports === undefined ? '' : ports[0] === ports[1] ? `:${ports[0]}` : `:${ports[0]}-${ports[1]}`;
  return { proto, dest, ports, text: `${proto} ${showNet(dest)}${portText}` };
};

const RATE_UNIT: Record<string, number> = { bit: 1, kbit: 1e3, mbit: 1e6, gbit: 1e9 };

/** An egress rate in bits per second: `500kbit`, `20mbit`, `1gbit` (powers of 1000, as tc writes them). */
export const parseRate = (raw: unknown): number => {
  const expected = 'a rate like 500kbit, 20mbit or 1gbit (bits per second), from 64kbit to 100gbit';
  const s = scalarText(raw, expected).toLowerCase().replace(/\s+/g, '');
  const m = /^(\d+(?:\.\d+)?)(bit|kbit|mbit|gbit)$/.exec(s);
  if (m === null) throw new Invalid(expected, /^\d+[kmg]?$/.test(s) ? { hint: 'say the unit: 20mbit' } : {});
  const bits = Math.round(Number(m[1]) * (RATE_UNIT[m[2] ?? 'bit'] ?? 1));
  if (bits < 64_000 || bits > 100e9) throw new Invalid(expected);
  return bits;
};

export const showRate = (bits: number): string => {
  if (bits === 0) return 'unlimited';
  for (const [u, n] of [['gbit', 1e9], ['mbit', 1e6], ['kbit', 1e3]] as const) if (bits % n === 0) return `${bits / n}${u}`;
  return `${bits}bit`;
};

/** A network interface name (as the kernel takes it). */
export const parseIfName = (raw: unknown): string => {
  const expected = 'an interface name like eth0 (at most 15 characters, no "/" or space)';
  const s = scalarText(raw, expected);
  if (!/^[A-Za-z0-9_.:@-]{1,15}$/.test(s) || s === '.' || s === '..') throw new Invalid(expected);
  return s;
};

/** An IPv4 address (a resolver). */
export const parseIpv4 = (raw: unknown): number => {
  const expected = 'an IPv4 address like 192.0.2.53';
  const s = scalarText(raw, expected);
  const n = ipv4ToNumber(s);
  if (n === undefined) throw new Invalid(expected, s.includes(':') ? { hint: 'jails have IPv4 only for now' } : {});
  return n;
};
