import { createReadStream, existsSync, lchownSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { detectHierarchies, removeSocketFile } from '@emperor/jail';
import type { Emperor } from './emperor.js';
import type { EmperorEvent } from './events.js';
import { followLog } from './log-follow.js';
import { customerViewOf, metricsOf, uwsgiStatsOf, viewOf } from './vassal-view.js';

/** At most one "connection refused" log line per socket per interval (with the count of the others). */
const REFUSAL_LOG_INTERVAL_MS = 10_000;

/** The bounds of a control socket (docs/security.md states them; test/bounded-streams.ts holds them). */
export const CONTROL_LIMITS = {
  /** Connections at once on the root socket, and on one customer's socket. */
  rootConnections: 64,
  customerConnections: 8,
  /** A request's headers must arrive within this, and the whole request within requestTimeoutMs. */
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  /** A connection with no traffic either way for this long is closed (not the streams: see stallMs). */
  idleTimeoutMs: 60_000,
  /** A stream (logs?follow, /events) whose client has not read for this long is closed. */
  stallMs: 60_000,
  /** Event-stream bytes buffered for one slow client at most; past it the stream is closed. */
  maxStreamBuffer: 256 * 1024,
};

/** How old the network counters a view shows may be (one kernel read serves every request meanwhile). */
export const NET_FRESH_MS = 100;

const ACTIONS = ['reload', 'restart', 'stop', 'start'] as const;
/** What a customer may do to their own vassal from inside its jail. */
const CUSTOMER_ACTIONS = ['reload', 'restart'] as const;

/** A control socket for one vassal's customer: only that vassal, only status, logs, reload and restart. */
export interface ControlScope {
  vassal: string;
  uid: number;
  gid: number;
}

/** The cgroup mount points and the emperor's own cgroup directories: host paths an error may hold. */
const cgroupRoots = (): string[] => {
  try {
    return detectHierarchies().flatMap((h) => [h.mount, h.own]);
  } catch {
    return ['/sys/fs/cgroup'];
  }
};

/**
 * The root control API: HTTP over a unix socket of mode 0600 (only root can connect).
 *   GET  /vassals, /vassals/NAME          state, pids, restarts, last error, cgroup usage
 *   POST /vassals/NAME/{reload,restart,stop,start}
 *   GET  /events                          chunked NDJSON, one event per line, until the client goes
 *   GET  /metrics                         Prometheus text
 *   GET  /stats                           uWSGI-shaped emperor stats
 *   GET  /vassals/NAME/logs[?follow=1]    the app's log
 */
export class ControlServer {
  readonly #emperor: Emperor;
  readonly #path: string;
  readonly #scope: ControlScope | undefined;
  readonly #server: Server;
  readonly #streams = new Set<ServerResponse>();
  /** Refusals not logged yet: a flood of connections makes one log line per interval, not one each. */
  #refusedQuiet = 0;
  #refusedLoggedAt = 0;

  constructor(emperor: Emperor, path: string, scope?: ControlScope) {
    this.#emperor = emperor;
    this.#path = path;
    this.#scope = scope;
    const L = CONTROL_LIMITS;
    this.#server = createServer({ headersTimeout: L.headersTimeoutMs, requestTimeout: L.requestTimeoutMs, keepAliveTimeout: 5_000 }, (req, res) => {
      this.#route(req, res).catch((e: unknown) => {
        if (res.headersSent) res.destroy();
        else send(res, 500, { error: String(e) });
      });
    });
    this.#server.maxConnections = scope === undefined ? L.rootConnections : L.customerConnections;
    this.#server.setTimeout(L.idleTimeoutMs, (sock) => sock.destroy());
    this.#server.on('drop', () => this.#refused('too many connections on this socket'));
    if (scope !== undefined) {
      // One budget across every socket of the customer (their other vassals, their pty sockets).
      this.#server.on('connection', (sock) => {
        const release = emperor.customers.admit(scope.uid);
        if (release === undefined) {
          this.#refused('too many connections from this customer');
          return void sock.destroy();
        }
        sock.once('close', release);
      });
    }
  }

  #refused(reason: string): void {
    const now = Date.now();
    if (now - this.#refusedLoggedAt < REFUSAL_LOG_INTERVAL_MS) return void this.#refusedQuiet++;
    this.#emperor.options.log.warn({ vassal: this.#scope?.vassal, socket: this.#path, alsoRefused: this.#refusedQuiet }, `control socket: connection refused: ${reason}`);
    this.#refusedLoggedAt = now;
    this.#refusedQuiet = 0;
  }

  async listen(): Promise<void> {
    removeSocketFile(this.#path);
    // Created 0600 from the start (umask), not chmodded after: no window where others could connect.
    const old = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        this.#server.once('error', reject);
        this.#server.listen(this.#path, () => resolve());
      });
    } finally {
      process.umask(old);
    }
    // A customer's socket belongs to the customer (lchown: a swapped-in symlink would only change itself).
    if (this.#scope !== undefined) lchownSync(this.#path, this.#scope.uid, this.#scope.gid);
  }

  async close(): Promise<void> {
    for (const s of this.#streams) s.destroy();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://emperor');
    const parts = url.pathname.split('/').filter((p) => p !== '').map(decodeURIComponent);
    const e = this.#emperor;
    const scope = this.#scope;
    // Views show network counters at most NET_FRESH_MS old: one read of the kernel's serves every request
    // meanwhile, so a client polling in a loop costs at most ten nft runs a second.
    if (req.method === 'GET' && e.network.attached.length > 0 && url.pathname !== '/events' && parts[2] !== 'logs') await e.network.counters(NET_FRESH_MS).catch(() => undefined);
    if (scope !== undefined) return this.#customer(scope, req, res, url, parts);
    if (req.method === 'GET' && url.pathname === '/vassals') return send(res, 200, [...e.vassals.values()].map(viewOf));
    if (req.method === 'GET' && url.pathname === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
      return void res.end(metricsOf(e.vassals.values(), e.startedAt, e.builds()));
    }
    if (req.method === 'GET' && url.pathname === '/stats') return send(res, 200, uwsgiStatsOf(e.vassals.values(), e.options.dir, e.options.tyrant));
    if (req.method === 'GET' && url.pathname === '/events') return this.#events(res);
    if (req.method === 'GET' && url.pathname === '/subscriptions') return send(res, 200, e.announcer.list().map((s) => ({ server: s.server, ...s.announcement })));
    if (parts[0] === 'vassals' && parts[1] !== undefined) {
      const v = e.vassals.get(parts[1]);
      if (v === undefined) return send(res, 404, { error: `no vassal named ${parts[1]}` });
      if (req.method === 'GET' && parts.length === 2) return send(res, 200, viewOf(v));
      if (req.method === 'GET' && parts[2] === 'logs') return this.#logs(v.name, url.searchParams.get('follow') === '1', res);
      const action = ACTIONS.find((a) => a === parts[2]);
      if (req.method === 'POST' && action !== undefined && parts.length === 3) {
        await v[action]();
        return send(res, 200, viewOf(v));
      }
    }
    send(res, 404, { error: `no such endpoint: ${req.method} ${url.pathname}` });
  }

  /** The customer's API: their own vassal only; every other path is 404, as if nothing else existed. */
  async #customer(scope: ControlScope, req: IncomingMessage, res: ServerResponse, url: URL, parts: string[]): Promise<void> {
    const v = this.#emperor.vassals.get(scope.vassal);
    if (v === undefined) return send(res, 404, { error: 'your vassal is not running' });
    const o = this.#emperor.options;
    const view = () => customerViewOf(v, { runDir: join(o.runDir, 'vassals', v.name), file: v.spec?.file, others: [o.runDir, o.logDir, o.dir, ...cgroupRoots()] });
    if (req.method === 'GET' && url.pathname === '/vassals') return send(res, 200, [view()]);
    if (parts[0] === 'vassals' && parts[1] === scope.vassal) {
      if (req.method === 'GET' && parts.length === 2) return send(res, 200, view());
      if (req.method === 'GET' && parts[2] === 'logs') return this.#logs(v.name, url.searchParams.get('follow') === '1', res);
      const action = CUSTOMER_ACTIONS.find((a) => a === parts[2]);
      if (req.method === 'POST' && action !== undefined && parts.length === 3) {
        // Answered before it runs: a restart replaces the jail this request came from. At most one is
        // pending, and a customer cannot queue restarts faster than the rate limit (docs/security.md).
        const r = v.customerRequest(action);
        if (r.outcome === 'rate-limited') {
          res.setHeader('retry-after', String(Math.ceil(r.retryAfterMs / 1000)));
          return send(res, 429, { error: `${action}: too many requests; try again in ${Math.ceil(r.retryAfterMs / 1000)} s` });
        }
        return send(res, 202, { ...view(), accepted: action, ...(r.outcome === 'coalesced' ? { coalesced: true } : {}) });
      }
      if (req.method === 'POST') return send(res, 403, { error: `${parts[2] ?? ''}: only reload and restart are allowed from inside a vassal` });
    }
    if (parts[0] === 'vassals' && parts[1] !== undefined) return send(res, 404, { error: `no vassal named ${parts[1]}` });
    send(res, 404, { error: `no such endpoint: ${req.method} ${url.pathname}` });
  }

  #events(res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    res.flushHeaders();
    res.socket?.setTimeout(0); // a quiet stream is not idle; a stalled one is closed below
    const on = (ev: EmperorEvent) => {
      // A client that does not read gets a bounded buffer, then the stream is closed: events are never
      // held back for it (the bus does not wait) and never pile up in the emperor.
      if (res.writableLength > CONTROL_LIMITS.maxStreamBuffer) {
        this.#emperor.options.log.warn({ socket: this.#path, buffered: res.writableLength }, 'control socket: /events client is not reading; closing its stream');
        return void res.destroy();
      }
      res.write(`${JSON.stringify(ev)}\n`);
    };
    this.#emperor.bus.on('event', on);
    this.#streams.add(res);
    res.on('close', () => {
      this.#emperor.bus.off('event', on);
      this.#streams.delete(res);
    });
  }

  #logs(name: string, follow: boolean, res: ServerResponse): void {
    const file = join(this.#emperor.options.logDir, name, 'app.log');
    if (!existsSync(file)) return send(res, 404, { error: `no log for ${name} yet` });
    res.writeHead(200, { 'content-type': 'text/plain' });
    // pipeline: the file is read only as fast as the client reads, and closed when either side ends.
    if (!follow) return void pipeline(createReadStream(file), res).catch(() => undefined);
    res.socket?.setTimeout(0);
    this.#streams.add(res);
    void followLog(file, res, {
      stallMs: this.#emperor.options.timeouts?.stallMs ?? CONTROL_LIMITS.stallMs,
      onStall: () => {
        this.#emperor.options.log.warn({ vassal: name, socket: this.#path }, 'control socket: logs?follow client stopped reading; closing its stream');
        res.destroy();
      },
    }).finally(() => {
      this.#streams.delete(res);
      if (!res.destroyed) res.end();
    });
  }
}

const send = (res: ServerResponse, status: number, body: unknown): void => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(`${JSON.stringify(body)}\n`);
};
