import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { encodePacket } from './packet.js';

/** What a request to a uwsgi-protocol node needs of the client's request. */
export interface UwsgiRequest {
  method: string;
  url: string;
  httpVersion: string;
  headers: IncomingHttpHeaders;
  remoteAddr: string;
  remotePort: number;
  serverName: string;
  serverPort: string;
  scheme: 'http' | 'https';
  /** The body's length when known (uwsgi carries no chunked bodies: CONTENT_LENGTH is the length). */
  contentLength: number | undefined;
}

const SKIP = new Set(['content-length', 'content-type']);

/** The request's CGI variables as uWSGI's http router sends them (PEP 333 names). */
export const uwsgiVars = (r: UwsgiRequest): Array<[string, string]> => {
  const q = r.url.indexOf('?');
  const path = q < 0 ? r.url : r.url.slice(0, q);
  let pathInfo = path;
  try {
    pathInfo = decodeURIComponent(path);
  } catch {
    // a malformed escape: the raw path, as uWSGI passes it
  }
  const vars: Array<[string, string]> = [
    ['REQUEST_METHOD', r.method], ['REQUEST_URI', r.url], ['PATH_INFO', pathInfo], ['QUERY_STRING', q < 0 ? '' : r.url.slice(q + 1)],
    ['SERVER_PROTOCOL', `HTTP/${r.httpVersion}`], ['REMOTE_ADDR', r.remoteAddr], ['REMOTE_PORT', String(r.remotePort)],
    ['SERVER_NAME', r.serverName], ['SERVER_PORT', r.serverPort], ['UWSGI_SCHEME', r.scheme], ['SCRIPT_NAME', ''],
  ];
  if (r.scheme === 'https') vars.push(['HTTPS', 'on']);
  if (r.contentLength !== undefined) vars.push(['CONTENT_LENGTH', String(r.contentLength)]);
  const ct = r.headers['content-type'];
  if (ct !== undefined) vars.push(['CONTENT_TYPE', ct]);
  for (const [k, v] of Object.entries(r.headers)) {
    if (v === undefined || SKIP.has(k)) continue;
    const name = `HTTP_${k.toUpperCase().replace(/-/g, '_')}`;
    vars.push([name, Array.isArray(v) ? v.join(k === 'cookie' ? '; ' : ', ') : v]);
  }
  return vars;
};

/** The uwsgi packet (modifier1, 16-bit size, modifier2) that opens a request. */
export const uwsgiRequestPacket = (modifier1: number, modifier2: number, vars: Array<[string, string]>): Buffer => encodePacket(modifier1, modifier2, vars);

/**
 * Reads a node's raw HTTP response off `socket` with Node's own parser: a duplex whose read side is the
 * socket and whose write side (where http.request writes a request nobody needs) goes nowhere.
 */
export const readResponse = (socket: Socket, method: string, initial?: Buffer): Promise<IncomingMessage> =>
  new Promise((resolve, reject) => {
    const wrapper = new Duplex({
      read() {
        socket.resume();
      },
      write(_chunk, _enc, cb) {
        cb();
      },
      final(cb) {
        cb();
      },
      destroy(err, cb) {
        socket.destroy();
        cb(err);
      },
    });
    if (initial !== undefined && initial.length > 0) wrapper.push(initial);
    socket.on('data', (d: Buffer) => {
      if (!wrapper.push(d)) socket.pause();
    });
    socket.on('end', () => wrapper.push(null));
    socket.on('error', (e) => wrapper.destroy(e));
    socket.on('close', () => {
      if (!wrapper.readableEnded) wrapper.push(null);
    });
    const req = httpRequest({ method, path: '/', createConnection: () => wrapper as unknown as Socket, headers: { connection: 'close' } });
    req.on('response', resolve);
    req.on('error', reject);
    req.end();
  });

/** A node's response head, read off its socket by hand (the common case: no chunking, no 1xx). */
export interface ResponseHead {
  status: number;
  /** Flat [name, value, name, value, ...] as the node sent them (for writeHead). */
  raw: string[];
  contentLength: number | undefined;
  /** Transfer-Encoding or a 1xx: left to Node's own parser ({@link readResponse}). */
  complex: boolean;
  /** The bytes read past the head (the start of the body). */
  rest: Buffer;
  /** Everything read (head and rest), for a fallback to Node's parser. */
  all: Buffer;
}

/** The largest head a node may send. */
export const MAX_HEAD = 64 * 1024;

const parseHead = (all: Buffer, end: number): ResponseHead | undefined => {
  const lines = all.subarray(0, end).toString('latin1').split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(lines[0] ?? '');
  if (m?.[1] === undefined) return undefined;
  const status = Number(m[1]);
  const raw: string[] = [];
  let contentLength: number | undefined;
  let complex = status < 200;
  for (let i = 1; i < lines.length; i++) {
    const l = lines[i] ?? '';
    const c = l.indexOf(':');
    if (c <= 0) return undefined;
    const name = l.slice(0, c).trim();
    const value = l.slice(c + 1).trim();
    const lower = name.toLowerCase();
    if (lower === 'content-length') {
      if (!/^\d{1,15}$/.test(value) || (contentLength !== undefined && contentLength !== Number(value))) return undefined;
      contentLength = Number(value);
    } else if (lower === 'transfer-encoding') complex = true;
    raw.push(name, value);
  }
  return { status, raw, contentLength, complex, rest: all.subarray(end + 4), all };
};

/**
 * Reads the head of a node's response; rejects with the socket's error (or ECONNRESET when it closed
 * before a whole head came, EPROTO for a head that is not HTTP or larger than {@link MAX_HEAD},
 * HEAD_TIMEOUT when none came within `timeoutMs`).
 */
export const readHead = (socket: Socket, timeoutMs: number): Promise<ResponseHead> =>
  new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => fail('HEAD_TIMEOUT'), timeoutMs);
    const cleanup = (): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onError);
      socket.off('close', onEnd);
    };
    const fail = (code: string): void => {
      cleanup();
      reject(Object.assign(new Error(`node response: ${code}`), { code }));
    };
    const onData = (d: Buffer): void => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) {
        if (buf.length > MAX_HEAD) fail('EPROTO');
        return;
      }
      const head = parseHead(buf, end);
      if (head === undefined) return fail('EPROTO');
      cleanup();
      socket.pause();
      resolve(head);
    };
    const onEnd = (): void => fail('ECONNRESET');
    const onError = (e: NodeJS.ErrnoException): void => fail(e.code ?? 'ECONNRESET');
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    socket.once('error', onError);
  });
