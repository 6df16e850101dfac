import { createReadStream, existsSync, lchownSync, statSync, watch } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import type { Emperor } from './emperor.js';
import type { EmperorEvent } from './events.js';
import { metricsOf, uwsgiStatsOf, viewOf } from './vassal-view.js';

const ACTIONS = ['reload', 'restart', 'stop', 'start'] as const;
/** What a customer may do to their own vassal from inside its jail. */
const CUSTOMER_ACTIONS = ['reload', 'restart'] as const;

/** A control socket for one vassal's customer: only that vassal, only status, logs, reload and restart. */
export interface ControlScope {
  vassal: string;
  uid: number;
  gid: number;
}

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

  constructor(emperor: Emperor, path: string, scope?: ControlScope) {
    this.#emperor = emperor;
    this.#path = path;
    this.#scope = scope;
    this.#server = createServer((req, res) => {
      this.#route(req, res).catch((e: unknown) => send(res, 500, { error: String(e) }));
    });
  }

  async listen(): Promise<void> {
    if (existsSync(this.#path) && statSync(this.#path).isSocket()) {
      const { rmSync } = await import('node:fs');
      rmSync(this.#path);
    }
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
    for (const s of this.#streams) s.end();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://emperor');
    const parts = url.pathname.split('/').filter((p) => p !== '').map(decodeURIComponent);
    const e = this.#emperor;
    const scope = this.#scope;
    if (scope !== undefined) return this.#customer(scope, req, res, url, parts);
    if (req.method === 'GET' && url.pathname === '/vassals') return send(res, 200, [...e.vassals.values()].map(viewOf));
    if (req.method === 'GET' && url.pathname === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
      return void res.end(metricsOf(e.vassals.values(), e.startedAt));
    }
    if (req.method === 'GET' && url.pathname === '/stats') return send(res, 200, uwsgiStatsOf(e.vassals.values(), e.options.dir, e.options.tyrant));
    if (req.method === 'GET' && url.pathname === '/events') return this.#events(res);
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
    if (req.method === 'GET' && url.pathname === '/vassals') return send(res, 200, [viewOf(v)]);
    if (parts[0] === 'vassals' && parts[1] === scope.vassal) {
      if (req.method === 'GET' && parts.length === 2) return send(res, 200, viewOf(v));
      if (req.method === 'GET' && parts[2] === 'logs') return this.#logs(v.name, url.searchParams.get('follow') === '1', res);
      const action = CUSTOMER_ACTIONS.find((a) => a === parts[2]);
      if (req.method === 'POST' && action !== undefined && parts.length === 3) {
        // Answer first: a restart replaces the jail this request came from.
        send(res, 202, { ...viewOf(v), accepted: action });
        void v[action]();
        return;
      }
      if (req.method === 'POST') return send(res, 403, { error: `${parts[2] ?? ''}: only reload and restart are allowed from inside a vassal` });
    }
    if (parts[0] === 'vassals' && parts[1] !== undefined) return send(res, 404, { error: `no vassal named ${parts[1]}` });
    send(res, 404, { error: `no such endpoint: ${req.method} ${url.pathname}` });
  }

  #events(res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    res.flushHeaders();
    const on = (ev: EmperorEvent) => res.write(`${JSON.stringify(ev)}\n`);
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
    if (!follow) return void createReadStream(file).pipe(res);
    let pos = 0;
    const pump = () => {
      const size = statSync(file).size;
      if (size < pos) pos = 0; // rotated
      if (size === pos) return;
      const s = createReadStream(file, { start: pos, end: size - 1 });
      pos = size;
      s.pipe(res, { end: false });
    };
    pump();
    const w = watch(file, () => pump());
    this.#streams.add(res);
    res.on('close', () => {
      w.close();
      this.#streams.delete(res);
    });
  }
}

const send = (res: ServerResponse, status: number, body: unknown): void => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(`${JSON.stringify(body)}\n`);
};
