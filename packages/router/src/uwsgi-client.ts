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
export const uwsgiVars = (r: UwsgiRequest, extra: Record<string, string>): Array<[string, string]> => {
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
  const all = { ...r.headers, ...Object.fromEntries(Object.entries(extra).map(([k, v]) => [k.toLowerCase(), v])) };
  for (const [k, v] of Object.entries(all)) {
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
export const readResponse = (socket: Socket, method: string): Promise<IncomingMessage> =>
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
