import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import { EmperorError } from '@emperor/errors';
import { removeSocketFile } from '@emperor/jail';
import { Pool } from 'undici';
import type { Node, Slot, SubscriptionTable } from './table.js';
import { readHead, readResponse, uwsgiRequestPacket, uwsgiVars, type ResponseHead } from './uwsgi-client.js';

export interface RouterOptions {
  table: SubscriptionTable;
  /** Key = Host + the first N path segments (uWSGI's subscription-mountpoints); 0 = the Host alone. */
  mountpoints?: number;
  /** The key used when no key matches (uWSGI's http-subscription-fallback-key). */
  fallbackKey?: string;
  /** Tries of one request (a node that refuses is skipped and the next one tried). Default 3. */
  attempts?: number;
  /** A node's connect must succeed within this. Default 3 s. */
  connectTimeoutMs?: number;
  /** A node must send its response head within this, or the client gets a 504. Default 60 s. */
  headTimeoutMs?: number;
  /** Keep-alive connections per http node. Default 128. */
  poolConnections?: number;
  /** Keep X-Forwarded-For from the client and append to it (only behind a trusted proxy). Default: replaced. */
  trustForwarded?: boolean;
  log?: (level: 'info' | 'warn', msg: string, detail: Record<string, unknown>) => void;
}

export interface RouterCounters {
  requests: number;
  /** Requests that got the router's 502 page because no key matched. */
  unknownKey: number;
  /** Requests that got a 502 because every node failed or none was alive. */
  noNode: number;
  /** A node failed and the request went to another one. */
  retried: number;
  upgrades: number;
  activeSessions: number;
}

const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host', 'x-forwarded-for', 'x-forwarded-proto']);
/** Errors of a node that say it is not there: marked dead, the request tried on another node. */
const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'ENOENT', 'EACCES', 'ENOTSOCK', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_SOCKET', 'EHOSTUNREACH', 'ENETUNREACH', 'EAGAIN', 'UND_ERR_HEADERS_TIMEOUT', 'HEAD_TIMEOUT', 'EPROTO']);
/** A node that took the request and sent no head in time: the client gets 504 (nothing retried: it may have acted). */
const HEAD_TIMEOUTS = new Set(['UND_ERR_HEADERS_TIMEOUT', 'HEAD_TIMEOUT']);
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/**
 * Whether a failed request may go to another node: its connect failed (nothing was sent), or it had no body
 * and its method is idempotent. A body already streamed to the failed node cannot be sent again.
 */
const retryable = (code: string, req: IncomingMessage, hasBody: boolean): boolean => DEAD.has(code) || (!hasBody && IDEMPOTENT.has(req.method ?? ''));

const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** Where a node's address points: a unix path, an abstract name, or host:port. */
export const connectTarget = (address: string): { path: string } | { host: string; port: number } => {
  if (address.startsWith('/')) return { path: address };
  if (address.startsWith('@')) return { path: `\0${address.slice(1)}` };
  const i = address.lastIndexOf(':');
  const host = address.slice(0, i).replace(/^\[(.*)\]$/, '$1');
  return { host: host === '' ? '127.0.0.1' : host, port: Number(address.slice(i + 1)) };
};

/**
 * Errors of the connect itself: nothing listens there (uWSGI's death_mark). A reset or close after the
 * connect (an overloaded node dropping one connection) or EAGAIN (its backlog full) is one failure, not a
 * dead node: marking it dead would take a busy node out of the pool until its next announcement.
 */
const DEAD = new Set(['ECONNREFUSED', 'ENOENT', 'EACCES', 'ENOTSOCK', 'ETIMEDOUT', 'UND_ERR_CONNECT_TIMEOUT', 'EHOSTUNREACH', 'ENETUNREACH']);

class NodeFailed extends Error {
  readonly dead: boolean;
  constructor(readonly code: string, readonly canRetry: boolean) {
    super(code);
    this.dead = DEAD.has(code);
  }
}

/**
 * The HTTP router: Host (and mountpoints) -> a key's nodes, chosen by the key's algorithm; keep-alive pools
 * to http nodes, uWSGI's protocol to uwsgi nodes; websocket upgrades piped both ways.
 */
export class HttpRouter {
  readonly counters: RouterCounters = { requests: 0, unknownKey: 0, noNode: 0, retried: 0, upgrades: 0, activeSessions: 0 };
  readonly #table: SubscriptionTable;
  readonly #opts: Required<Omit<RouterOptions, 'fallbackKey' | 'log' | 'table'>> & Pick<RouterOptions, 'fallbackKey'>;
  readonly #log: NonNullable<RouterOptions['log']>;
  readonly #pools = new Map<string, Pool>();
  readonly #servers: Server[] = [];
  readonly #sockets = new Set<Socket>();

  constructor(options: RouterOptions) {
    this.#table = options.table;
    this.#opts = {
      mountpoints: options.mountpoints ?? 0, headTimeoutMs: options.headTimeoutMs ?? 60_000, attempts: options.attempts ?? 3, connectTimeoutMs: options.connectTimeoutMs ?? 3_000,
      poolConnections: options.poolConnections ?? 128, trustForwarded: options.trustForwarded ?? false, fallbackKey: options.fallbackKey,
    };
    this.#log = options.log ?? (() => {});
  }

  /** A node left the table: its pool goes. */
  forget(node: Node): void {
    const pool = this.#pools.get(node.address);
    if (pool === undefined) return;
    this.#pools.delete(node.address);
    void pool.close().catch(() => {});
  }

  /** Listens on `host:port` or a unix path; resolves with the TCP port (0 for a path). */
  async listen(address: string): Promise<number> {
    const server = createServer({ keepAliveTimeout: 5_000, headersTimeout: 30_000, requestTimeout: 300_000 }, (req, res) => void this.#handle(req, res));
    server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => this.#upgrade(req, socket, head));
    server.on('connection', (s: Socket) => {
      this.#sockets.add(s);
      s.once('close', () => this.#sockets.delete(s));
    });
    server.on('clientError', (_err, socket: Socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      else socket.destroy();
    });
    const t = connectTarget(address);
    // A socket a router that died left is replaced; anything else there is the operator's, and kept.
    if ('path' in t && removeSocketFile(t.path) === 'not-a-socket') {
      throw new EmperorError('EMPEROR_ERR_USAGE', `--http ${address}: expected a free path or a socket, got something else there`, { hint: 'remove it or choose another path' });
    }
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      const done = (): void => {
        server.off('error', reject);
        resolve();
      };
      if ('path' in t) server.listen(t.path, done);
      else server.listen(t.port, t.host, done);
    });
    this.#servers.push(server);
    const a = server.address();
    return typeof a === 'object' && a !== null ? a.port : 0;
  }

  async close(): Promise<void> {
    for (const s of this.#servers) s.close();
    for (const s of this.#sockets) s.destroy();
    await Promise.all([...this.#pools.values()].map((p) => p.destroy().catch(() => {})));
    this.#pools.clear();
    await Promise.all(this.#servers.splice(0).map((s) => new Promise((r) => s.close(r))));
  }

  #hostOf(req: IncomingMessage): string {
    return (req.headers.host ?? '').toLowerCase();
  }

  #error(res: ServerResponse, status: number, title: string, text: string): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const body = `<!doctype html>\n<html><head><title>${status} ${title}</title></head><body><h1>${status} ${title}</h1><p>${escapeHtml(text)}</p></body></html>\n`;
    res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
    res.end(body);
  }

  #forwarded(req: IncomingMessage): { xff: string; proto: 'http' | 'https' } {
    const ip = req.socket.remoteAddress ?? '';
    const prev = req.headers['x-forwarded-for'];
    const xff = this.#opts.trustForwarded && prev !== undefined ? `${Array.isArray(prev) ? prev.join(', ') : prev}, ${ip}` : ip;
    return { xff, proto: (req.socket as { encrypted?: boolean }).encrypted === true ? 'https' : 'http' };
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.counters.requests++;
    const host = this.#hostOf(req);
    const slot = this.#table.lookup(host, req.url ?? '/', this.#opts.mountpoints, this.#opts.fallbackKey);
    if (slot === undefined) {
      this.counters.unknownKey++;
      return this.#error(res, 502, 'Bad Gateway', `No application serves ${host === '' ? 'a request without a Host header' : host} here.`);
    }
    slot.hits++;
    const hasBody = req.headers['content-length'] !== undefined ? req.headers['content-length'] !== '0' : req.headers['transfer-encoding'] !== undefined;
    const tried = new Set<Node>();
    const client = req.socket.remoteAddress ?? '';
    for (let attempt = 0; attempt < this.#opts.attempts; attempt++) {
      const node = this.#table.pick(slot, client, tried);
      if (node === undefined) break;
      tried.add(node);
      node.inflight++;
      node.requests++;
      node.lastRequests++;
      try {
        if (node.proto === 'http') await this.#toHttp(node, req, res, hasBody);
        else await this.#toUwsgi(node, req, res, hasBody);
        return;
      } catch (e) {
        if (!(e instanceof NodeFailed)) {
          if (!res.headersSent && !res.destroyed) this.#error(res, 502, 'Bad Gateway', `The application for ${host} failed.`);
          else res.destroy();
          return;
        }
        node.failures++;
        if (e.dead) {
          node.dead = true;
          this.#log('warn', `node ${node.address} of ${slot.key} failed (${e.code}): not used until it announces again`, { key: slot.key, address: node.address, code: e.code });
        }
        if (HEAD_TIMEOUTS.has(e.code)) {
          if (!res.headersSent && !res.destroyed) this.#error(res, 504, 'Gateway Timeout', `The application for ${host} did not answer within ${this.#opts.headTimeoutMs / 1000} s.`);
          return;
        }
        if (!e.canRetry || res.headersSent || res.destroyed) {
          if (!res.headersSent && !res.destroyed) this.#error(res, 502, 'Bad Gateway', `The application for ${host} failed.`);
          else res.destroy();
          return;
        }
        this.counters.retried++;
      } finally {
        node.inflight--;
      }
    }
    this.counters.noNode++;
    this.#error(res, 502, 'Bad Gateway', `No node of ${slot.key} is answering.`);
  }

  #pool(node: Node): Pool {
    let pool = this.#pools.get(node.address);
    if (pool === undefined) {
      const t = connectTarget(node.address);
      const connect = { timeout: this.#opts.connectTimeoutMs };
      pool = 'path' in t
        ? new Pool('http://localhost', { socketPath: t.path, connections: this.#opts.poolConnections, keepAliveTimeout: 4_000, connect, headersTimeout: this.#opts.headTimeoutMs, bodyTimeout: 300_000 })
        : new Pool(`http://${t.host.includes(':') ? `[${t.host}]` : t.host}:${t.port}`, { connections: this.#opts.poolConnections, keepAliveTimeout: 4_000, connect, headersTimeout: this.#opts.headTimeoutMs, bodyTimeout: 300_000 });
      this.#pools.set(node.address, pool);
    }
    return pool;
  }

  #headersFor(req: IncomingMessage): Record<string, string | string[]> {
    const out: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && !HOP.has(k)) out[k] = v;
    const f = this.#forwarded(req);
    out.host = req.headers.host ?? '';
    out['x-forwarded-for'] = f.xff;
    out['x-forwarded-proto'] = f.proto;
    return out;
  }

  /**
   * An http node through its keep-alive pool: undici's dispatch straight into the response (no body stream
   * in between), with backpressure both ways (the pool pauses while the client does not read).
   */
  #toHttp(node: Node, req: IncomingMessage, res: ServerResponse, hasBody: boolean): Promise<void> {
    const pool = this.#pool(node);
    return new Promise<void>((resolve, reject) => {
      let started = false;
      let ctl: { abort(reason: Error): void; pause(): void; resume(): void } | undefined;
      let done = false;
      const finish = (err?: Error): void => {
        if (done) return;
        done = true;
        res.off('close', onClose);
        res.off('drain', onDrain);
        if (err === undefined) resolve();
        else reject(err);
      };
      const onClose = (): void => {
        if (!res.writableFinished) ctl?.abort(new Error('client went away'));
        finish();
      };
      const onDrain = (): void => ctl?.resume();
      res.once('close', onClose);
      res.on('drain', onDrain);
      pool.dispatch({ path: req.url ?? '/', method: (req.method ?? 'GET') as 'GET', headers: this.#headersFor(req), body: hasBody ? req : null }, {
        onRequestStart: (controller) => {
          ctl = controller;
        },
        onResponseStart: (_c, statusCode, headers) => {
          started = true;
          const out: Record<string, string | string[]> = {};
          for (const k in headers) {
            const v = headers[k];
            if (v !== undefined && !HOP.has(k)) out[k] = v;
          }
          res.writeHead(statusCode, out);
        },
        onResponseData: (c, chunk) => {
          node.rx += chunk.length;
          if (!res.write(chunk)) c.pause();
        },
        onResponseEnd: () => {
          res.end();
          finish();
        },
        onResponseError: (_c, err) => {
          const code = (err as { code?: string }).code ?? 'ERROR';
          if (started || res.destroyed) {
            res.destroy();
            return finish();
          }
          finish(CONNECT_ERRORS.has(code) ? new NodeFailed(code, retryable(code, req, hasBody)) : err);
        },
      });
    });
  }

  async #toUwsgi(node: Node, req: IncomingMessage, res: ServerResponse, hasBody: boolean): Promise<void> {
    const cl = req.headers['content-length'];
    if (hasBody && cl === undefined) {
      this.#error(res, 411, 'Length Required', 'This application needs a Content-Length with a request body.');
      return;
    }
    const socket = await this.#connect(node);
    const f = this.#forwarded(req);
    const local = req.socket.localPort;
    const host = req.headers.host ?? '';
    const vars = uwsgiVars({
      method: req.method ?? 'GET', url: req.url ?? '/', httpVersion: req.httpVersion, headers: { ...req.headers, 'x-forwarded-for': f.xff, 'x-forwarded-proto': f.proto },
      remoteAddr: req.socket.remoteAddress ?? '', remotePort: req.socket.remotePort ?? 0, serverName: host.replace(/:\d+$/, ''), serverPort: String(local ?? 80),
      scheme: f.proto, contentLength: cl === undefined ? undefined : Number(cl),
    });
    let packet: Buffer;
    try {
      packet = uwsgiRequestPacket(node.modifier1, node.modifier2, vars);
    } catch {
      socket.destroy();
      return this.#error(res, 431, 'Request Header Fields Too Large', 'The request\'s headers do not fit in a uwsgi packet (64 KiB).');
    }
    socket.write(packet);
    node.tx += packet.length;
    if (hasBody) req.pipe(socket, { end: false });
    res.once('close', () => {
      if (!res.writableFinished) socket.destroy();
    });
    let head: ResponseHead;
    try {
      head = await readHead(socket, this.#opts.headTimeoutMs);
    } catch (e) {
      socket.destroy();
      const code = (e as { code?: string }).code ?? 'ECONNRESET';
      throw new NodeFailed(code, retryable(code, req, hasBody));
    }
    node.rx += head.all.length - head.rest.length;
    if (head.complex) return this.#uwsgiComplex(node, socket, req, res, head);
    const raw: string[] = [];
    for (let i = 0; i < head.raw.length; i += 2) {
      const k = head.raw[i] ?? '';
      if (!HOP.has(k.toLowerCase())) raw.push(k, head.raw[i + 1] ?? '');
    }
    res.writeHead(head.status, raw);
    const noBody = req.method === 'HEAD' || head.status === 204 || head.status === 304;
    let left = noBody ? 0 : head.contentLength ?? Infinity;
    if (left === 0) {
      res.end();
      socket.destroy();
      return;
    }
    if (head.rest.length >= left) {
      // The whole body came with the head (the common small response): head and body in one write.
      node.rx += left;
      socket.destroy();
      res.end(head.rest.subarray(0, left));
      return;
    }
    await new Promise<void>((resolve) => {
      let finished = false;
      const end = (): void => {
        if (finished) return;
        finished = true;
        socket.destroy();
        if (left === 0 || left === Infinity) res.end();
        else res.destroy(); // the node closed before its Content-Length: the client must not take it as whole
        resolve();
      };
      const take = (d: Buffer): void => {
        const part = left < d.length ? d.subarray(0, left) : d;
        left -= part.length;
        node.rx += part.length;
        if (part.length > 0 && !res.write(part)) socket.pause();
        if (left === 0) end();
      };
      res.on('drain', () => socket.resume());
      res.once('close', () => {
        if (!finished) {
          finished = true;
          socket.destroy();
          resolve();
        }
      });
      socket.on('data', take);
      socket.once('end', end);
      socket.once('close', end);
      socket.on('error', end);
      if (head.rest.length > 0) take(head.rest);
      if (!finished) socket.resume();
    });
  }

  /** A chunked (or 1xx) response of a uwsgi node: Node's own parser reads it. */
  async #uwsgiComplex(node: Node, socket: Socket, req: IncomingMessage, res: ServerResponse, head: ResponseHead): Promise<void> {
    let upstream;
    try {
      upstream = await readResponse(socket, req.method ?? 'GET', head.all);
    } catch {
      socket.destroy();
      if (!res.headersSent) this.#error(res, 502, 'Bad Gateway', 'The application sent a response that is not HTTP.');
      return;
    }
    const headers: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(upstream.headers as IncomingHttpHeaders)) if (v !== undefined && !HOP.has(k)) headers[k] = v;
    res.writeHead(upstream.statusCode ?? 502, headers);
    await new Promise<void>((resolve) => {
      upstream.on('data', (d: Buffer) => {
        node.rx += d.length;
        if (!res.write(d)) upstream.pause();
      });
      res.on('drain', () => upstream.resume());
      upstream.on('end', () => {
        res.end();
        socket.destroy();
        resolve();
      });
      upstream.on('error', () => {
        res.destroy();
        resolve();
      });
      res.once('close', () => {
        socket.destroy();
        resolve();
      });
    });
  }

  /** A connection to a node, or {@link NodeFailed} (retryable: nothing was sent). */
  #connect(node: Node): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const s = connect(connectTarget(node.address));
      const t = setTimeout(() => {
        s.destroy();
        reject(new NodeFailed('ETIMEDOUT', true));
      }, this.#opts.connectTimeoutMs);
      s.once('connect', () => {
        clearTimeout(t);
        s.removeAllListeners('error');
        resolve(s);
      });
      s.once('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(t);
        reject(new NodeFailed(e.code ?? 'ERROR', true));
      });
    });
  }

  #upgrade(req: IncomingMessage, client: Socket, head: Buffer): void {
    this.counters.upgrades++;
    client.on('error', () => client.destroy());
    const host = this.#hostOf(req);
    const slot: Slot | undefined = this.#table.lookup(host, req.url ?? '/', this.#opts.mountpoints, this.#opts.fallbackKey);
    const refuse = (status: string): void => {
      client.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    };
    if (slot === undefined) {
      this.counters.unknownKey++;
      return refuse('502 Bad Gateway');
    }
    slot.hits++;
    const tried = new Set<Node>();
    const attempt = (): void => {
      const node = this.#table.pick(slot, client.remoteAddress ?? '', tried);
      if (node === undefined || tried.size >= this.#opts.attempts) {
        this.counters.noNode++;
        return refuse('502 Bad Gateway');
      }
      tried.add(node);
      node.inflight++;
      node.requests++;
      node.lastRequests++;
      this.#connect(node).then((up) => {
        this.counters.activeSessions++;
        const f = this.#forwarded(req);
        if (node.proto === 'http') {
          const lines = [`${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/1.1`];
          for (let i = 0; i < req.rawHeaders.length; i += 2) {
            const k = req.rawHeaders[i] ?? '';
            const lk = k.toLowerCase();
            if (lk === 'x-forwarded-for' || lk === 'x-forwarded-proto') continue;
            lines.push(`${k}: ${req.rawHeaders[i + 1] ?? ''}`);
          }
          lines.push(`X-Forwarded-For: ${f.xff}`, `X-Forwarded-Proto: ${f.proto}`, '', '');
          up.write(lines.join('\r\n'));
        } else {
          const vars = uwsgiVars({
            method: req.method ?? 'GET', url: req.url ?? '/', httpVersion: req.httpVersion, headers: { ...req.headers, 'x-forwarded-for': f.xff, 'x-forwarded-proto': f.proto },
            remoteAddr: client.remoteAddress ?? '', remotePort: client.remotePort ?? 0, serverName: host.replace(/:\d+$/, ''), serverPort: String(client.localPort ?? 80),
            scheme: f.proto, contentLength: undefined,
          });
          up.write(uwsgiRequestPacket(node.modifier1, node.modifier2, vars));
        }
        if (head.length > 0) up.write(head);
        up.on('data', (d: Buffer) => {
          node.rx += d.length;
        });
        up.pipe(client);
        client.pipe(up);
        const done = (): void => {
          up.destroy();
          client.destroy();
        };
        up.on('error', done);
        up.on('close', done);
        client.on('close', () => {
          done();
        });
        let ended = false;
        client.once('close', () => {
          if (ended) return;
          ended = true;
          node.inflight--;
          this.counters.activeSessions--;
        });
      }, (e: unknown) => {
        node.inflight--;
        node.failures++;
        if (!(e instanceof NodeFailed) || e.dead) node.dead = true;
        this.#log('warn', `node ${node.address} of ${slot.key} failed (${(e as NodeFailed).code}): not used until it announces again`, { key: slot.key, address: node.address });
        if (!client.destroyed) attempt();
      });
    };
    attempt();
  }
}
