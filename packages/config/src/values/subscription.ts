import { parseBool, parseInteger } from './basic.js';
import { Invalid, nonEmptyText } from './invalid.js';
import { parseKvList } from './kvlist.js';

/** Where subscription packets go: a UDP `host:port` or a unix datagram socket. */
export type SubscriptionServer = { kind: 'udp'; host: string; port: number } | { kind: 'unix'; path: string };

/** One subscription to a router (validated now; used by the router issue). */
export interface SubscriptionSpec {
  source: 'subscribe-to' | 'subscribe2';
  server: SubscriptionServer;
  key: string;
  /** Which of the vassal's sockets to announce: a name, or an index. Default: the vassal's socket. */
  socket: string | number | undefined;
  address: string | undefined;
  modifier1: number | undefined;
  modifier2: number | undefined;
  weight: number | undefined;
  backup: number | undefined;
  algo: 'wrr' | 'lrc' | 'wlrc' | 'iphash' | 'chash' | undefined;
  proto: 'uwsgi' | 'http' | 'fastcgi' | 'scgi' | undefined;
  sign: { digest: string; keyFile: string } | undefined;
  check: string | undefined;
  sni: { key: string; crt: string; ca: string | undefined } | undefined;
  vassal: string | undefined;
  inactive: boolean;
}

const empty = (source: SubscriptionSpec['source'], server: SubscriptionServer, key: string): SubscriptionSpec => ({
  source, server, key, socket: undefined, address: undefined, modifier1: undefined, modifier2: undefined,
  weight: undefined, backup: undefined, algo: undefined, proto: undefined, sign: undefined, check: undefined,
  sni: undefined, vassal: undefined, inactive: false,
});

const SERVER_EXPECTED = 'a router address HOST:PORT or an absolute unix socket path';

export const parseSubscriptionServer = (s: string): SubscriptionServer => {
  if (s.startsWith('/')) return { kind: 'unix', path: s };
  const m = /^([A-Za-z0-9.-]*):(\d{1,5})$/.exec(s);
  if (m === null || m[1] === undefined || m[2] === undefined) throw new Invalid(SERVER_EXPECTED, { found: JSON.stringify(s) });
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw new Invalid(SERVER_EXPECTED, { found: JSON.stringify(s) });
  return { kind: 'udp', host: m[1] === '' ? '127.0.0.1' : m[1], port };
};

/** A server as written: HOST:PORT or the path. */
export const showSubscriptionServer = (s: SubscriptionServer): string => (s.kind === 'unix' ? s.path : `${s.host}:${s.port}`);

/** Whether the operator's `written` server (emperor.ini subscription-servers) is `s`. */
export const sameSubscriptionServer = (written: string, s: SubscriptionServer): boolean => {
  try {
    const w = parseSubscriptionServer(written);
    return w.kind === 'unix' ? s.kind === 'unix' && s.path === w.path : s.kind === 'udp' && s.port === w.port && s.host.toLowerCase() === w.host.toLowerCase();
  } catch {
    return false;
  }
};

const checkKey = (key: string): string => {
  // The router reads at most 255 bytes of key, and keys are Host headers: no spaces or controls.
  if (key === '' || Buffer.byteLength(key) > 255 || /[\s\0]/.test(key)) {
    throw new Invalid('a subscription key (a Host such as example.com or example.com:8080), at most 255 bytes', { found: JSON.stringify(key) });
  }
  return key;
};

const parseSign = (s: string): { digest: string; keyFile: string } => {
  const m = /^([A-Za-z0-9-]+):(\/.+)$/.exec(s);
  if (m === null || m[1] === undefined || m[2] === undefined) throw new Invalid('a signature DIGEST:/path/to/private.pem, like SHA256:/etc/keys/app.pem', { found: JSON.stringify(s) });
  return { digest: m[1].toUpperCase(), keyFile: m[2] };
};

/** `subscribe-to = [SOCKNAME=|=N=]SERVER:KEY[,MODIFIER1[,DIGEST:PRIVKEY]]`, as uWSGI writes it. */
export const parseSubscribeTo = (raw: unknown): SubscriptionSpec => {
  const expected = 'SERVER:KEY[,MODIFIER1[,DIGEST:KEYFILE]], like 127.0.0.1:2626:example.com';
  let s = nonEmptyText(raw, expected);
  let socket: string | number | undefined;
  const idx = /^=(\d+)=(.*)$/.exec(s);
  if (idx !== null && idx[1] !== undefined && idx[2] !== undefined) {
    socket = Number(idx[1]);
    s = idx[2];
  } else {
    const eq = s.indexOf('=');
    if (eq > 0) {
      socket = s.slice(0, eq);
      s = s.slice(eq + 1);
    }
  }
  // SERVER is /unix/path or HOST:PORT; the key starts after the next colon.
  const colon = s.startsWith('/') ? s.indexOf(':') : s.indexOf(':', s.indexOf(':') + 1);
  if (colon <= 0) throw new Invalid(expected);
  const server = parseSubscriptionServer(s.slice(0, colon));
  const [key = '', mod1, ...signParts] = s.slice(colon + 1).split(',');
  const spec = empty('subscribe-to', server, checkKey(key));
  spec.socket = socket;
  if (mod1 !== undefined && mod1 !== '') spec.modifier1 = parseInteger(mod1, 0, 255, 'a modifier1');
  if (signParts.length > 0) spec.sign = parseSign(signParts.join(','));
  return spec;
};

const KEYS2 = [
  'server', 'key', 'socket', 'addr', 'address', 'weight', 'modifier1', 'modifier2', 'sign', 'check', 'sni_key',
  'sni_crt', 'sni_ca', 'proto', 'algo', 'backup', 'vassal', 'inactive',
] as const;
const ALGOS = ['wrr', 'lrc', 'wlrc', 'iphash', 'chash'] as const;
const PROTOS = ['uwsgi', 'http', 'fastcgi', 'scgi'] as const;

/** `subscribe2 = server=...,key=...,...` (uWSGI's key=value form; a mapping in json/yaml). */
export const parseSubscribe2 = (raw: unknown): SubscriptionSpec => {
  const kv = parseKvList(raw, KEYS2, 'a key=value list like server=127.0.0.1:2626,key=example.com');
  const server = kv.get('server');
  const key = kv.get('key');
  if (server === undefined || key === undefined) throw new Invalid('a key=value list with server= and key=', { found: `no ${server === undefined ? 'server' : 'key'}=` });
  const spec = empty('subscribe2', parseSubscriptionServer(server), checkKey(key));
  const sock = kv.get('socket');
  if (sock !== undefined) spec.socket = /^\d+$/.test(sock) ? Number(sock) : sock;
  spec.address = kv.get('addr') ?? kv.get('address');
  const int = (k: string, max: number): number | undefined => {
    const v = kv.get(k);
    return v === undefined ? undefined : parseInteger(v, 0, max, `${k}=`);
  };
  spec.weight = int('weight', 65535);
  spec.modifier1 = int('modifier1', 255);
  spec.modifier2 = int('modifier2', 255);
  spec.backup = int('backup', 65535);
  const algo = kv.get('algo');
  if (algo !== undefined) {
    spec.algo = ALGOS.find((a) => a === algo.toLowerCase());
    if (spec.algo === undefined) throw new Invalid(`algo= one of ${ALGOS.join(', ')}`, { found: JSON.stringify(algo) });
  }
  const proto = kv.get('proto');
  if (proto !== undefined) {
    spec.proto = PROTOS.find((p) => p === proto.toLowerCase());
    if (spec.proto === undefined) throw new Invalid(`proto= one of ${PROTOS.join(', ')}`, { found: JSON.stringify(proto) });
  }
  const sign = kv.get('sign');
  if (sign !== undefined) spec.sign = parseSign(sign);
  spec.check = kv.get('check');
  const sniKey = kv.get('sni_key');
  const sniCrt = kv.get('sni_crt');
  if ((sniKey === undefined) !== (sniCrt === undefined)) throw new Invalid('sni_key= and sni_crt= together', { found: `only ${sniKey === undefined ? 'sni_crt' : 'sni_key'}=` });
  if (sniKey !== undefined && sniCrt !== undefined) spec.sni = { key: sniKey, crt: sniCrt, ca: kv.get('sni_ca') };
  spec.vassal = kv.get('vassal');
  const inactive = kv.get('inactive');
  if (inactive !== undefined) spec.inactive = parseBool(inactive === '' ? '1' : inactive);
  return spec;
};
