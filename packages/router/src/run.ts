import { chmodSync, existsSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import { EmperorError } from '@emperor/errors';
import { removeSocketFile } from '@emperor/jail';
import { HttpRouter } from './http-router.js';
import { SubscriptionServer, type SignCheck } from './server.js';
import { routerMetrics, routerStats } from './stats.js';
import { SubscriptionTable, type Algo, type Announcement } from './table.js';

type Log = (level: 'info' | 'warn', msg: string, detail: Record<string, unknown>) => void;

/** What `emperor router` runs (its command line, docs/router.md). */
export interface RouterConfig {
  /** HTTP listeners: host:port or a unix path. */
  http: string[];
  /** Subscription servers: host:port (UDP) or a unix datagram socket path (mode 0600). */
  subscriptionServers: string[];
  /** A unix socket answering GET /stats (uWSGI's shape) and GET /metrics (Prometheus), mode 0600. */
  stats?: string;
  /** The emperor's control socket: the table starts from its vassals' subscriptions (a restarted router serves at once). */
  emperorSocket?: string;
  toleranceMs: number;
  algo: Algo;
  mountpoints: number;
  fallbackKey?: string;
  sign?: SignCheck;
  maxKeys: number;
  maxNodesPerKey: number;
  trustForwarded: boolean;
  /** A node's response head must come within this (default 60 s). */
  headTimeoutMs?: number;
  log: Log;
}

export interface RunningRouter {
  table: SubscriptionTable;
  server: SubscriptionServer;
  router: HttpRouter;
  /** The bound HTTP and UDP ports, in the order of the config (0 for unix paths). */
  httpPorts: number[];
  udpPorts: number[];
  /** Nodes taken from the emperor at start. */
  bootstrapped: number;
  close(): Promise<void>;
}

const hostPort = (s: string, what: string): { host: string; port: number } => {
  const i = s.lastIndexOf(':');
  const port = Number(s.slice(i + 1));
  if (i < 0 || !Number.isInteger(port) || port < 0 || port > 65535) throw new EmperorError('EMPEROR_ERR_USAGE', `${what}: expected HOST:PORT, got ${JSON.stringify(s)}`);
  const host = s.slice(0, i).replace(/^\[(.*)\]$/, '$1');
  return { host: host === '' ? '0.0.0.0' : host, port };
};

/** The emperor's subscriptions for this router's servers (GET /subscriptions on its control socket). */
const fetchBootstrap = (socketPath: string): Promise<Array<Announcement & { server: string }>> =>
  new Promise((resolve, reject) => {
    const req = request({ socketPath, path: '/subscriptions', method: 'GET', agent: false, timeout: 5_000 }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (d: Buffer) => {
        size += d.length;
        if (size > 64 * 1024 * 1024) req.destroy(new Error('answer larger than 64 MiB'));
        else chunks.push(d);
      });
      res.on('end', () => {
        try {
          if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`);
          resolve(JSON.parse(Buffer.concat(chunks).toString()) as Array<Announcement & { server: string }>);
        } catch (e) {
          reject(e);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 5 s')));
    req.on('error', reject);
    req.end();
  });

/** Starts the subscription server, the HTTP router and the stats socket. */
export const runRouter = async (config: RouterConfig): Promise<RunningRouter> => {
  let router: HttpRouter | undefined;
  const table = new SubscriptionTable({ toleranceMs: config.toleranceMs, maxKeys: config.maxKeys, maxNodesPerKey: config.maxNodesPerKey }, config.algo, {
    removed: (key, node, why) => {
      router?.forget(node);
      config.log('info', `node ${node.address} of ${key} ${why === 'expired' ? `expired (no announcement for ${config.toleranceMs / 1000} s)` : 'unsubscribed'}`, { key, address: node.address, why });
    },
  });
  const own = new Set(config.http.map((h) => {
    if (h.startsWith('/')) return h;
    const { host, port } = hostPort(h, '--http');
    return `${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`;
  }));
  const server = new SubscriptionServer({ table, ...(config.sign ? { sign: config.sign } : {}), forbiddenAddresses: own, log: config.log });
  router = new HttpRouter({ table, mountpoints: config.mountpoints, ...(config.headTimeoutMs ? { headTimeoutMs: config.headTimeoutMs } : {}), trustForwarded: config.trustForwarded, log: config.log, ...(config.fallbackKey ? { fallbackKey: config.fallbackKey } : {}) });
  const closers: Array<() => Promise<void>> = [];
  const close = async (): Promise<void> => {
    for (const c of closers.splice(0).reverse()) await c().catch(() => {});
  };
  try {
    const udpPorts: number[] = [];
    closers.push(async () => server.close());
    for (const s of config.subscriptionServers) {
      if (s.startsWith('/')) {
        server.listenUnix(s);
        udpPorts.push(0);
        continue;
      }
      const { host, port } = hostPort(s, '--subscription-server');
      udpPorts.push(await server.listenUdp(host, port));
    }
    closers.push(async () => table.close());
    let bootstrapped = 0;
    if (config.emperorSocket !== undefined && existsSync(config.emperorSocket)) {
      try {
        const list = await fetchBootstrap(config.emperorSocket);
        // The emperor's subscriptions to this router: a unix path it listens on, or a UDP port it is bound to
        // (the emperor may write the host as 127.0.0.1, localhost or the machine's name).
        const paths = new Set(config.subscriptionServers.filter((s) => s.startsWith('/')));
        const ports = new Set(udpPorts.filter((p) => p !== 0).map(String));
        const mine = (server: string): boolean => (server.startsWith('/') ? paths.has(server) : ports.has(server.slice(server.lastIndexOf(':') + 1)));
        for (const a of list) {
          if (!mine(a.server)) continue;
          if (table.subscribe({ ...a, key: a.key.toLowerCase() }) === 'new') bootstrapped++;
        }
        config.log('info', `${bootstrapped} nodes taken from the emperor at ${config.emperorSocket}`, { bootstrapped });
      } catch (e) {
        config.log('warn', `the emperor at ${config.emperorSocket} could not be asked for its subscriptions (${(e as Error).message}); the table fills as nodes announce`, {});
      }
    }
    const r = router;
    closers.push(() => r.close());
    const httpPorts: number[] = [];
    for (const h of config.http) httpPorts.push(await router.listen(h.startsWith('/') ? h : `${hostPort(h, '--http').host}:${hostPort(h, '--http').port}`));
    if (config.stats !== undefined) {
      const path = config.stats;
      const stats: Server = createServer((req, res) => {
        if (req.url === '/metrics') {
          res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
          return void res.end(routerMetrics(table, r, server));
        }
        if (req.url === '/stats' || req.url === '/') {
          res.writeHead(200, { 'content-type': 'application/json' });
          return void res.end(`${JSON.stringify(routerStats(table, r, server, config.http))}\n`);
        }
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end('{"error":"GET /stats or /metrics"}\n');
      });
      // A socket left by a router that died is replaced; anything else at the path is the operator's, and kept.
      if (removeSocketFile(path) === 'not-a-socket') throw new EmperorError('EMPEROR_ERR_USAGE', `--stats ${path}: expected a free path or a socket, got something else there`, { hint: 'remove it or choose another path' });
      await new Promise<void>((resolve, reject) => {
        stats.once('error', reject);
        stats.listen(path, () => resolve());
      });
      chmodSync(path, 0o600);
      closers.push(() => new Promise((res) => stats.close(() => res())));
    }
    return { table, server, router, httpPorts, udpPorts, bootstrapped, close };
  } catch (e) {
    await close();
    throw e;
  }
};
