import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request, type IncomingHttpHeaders } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { runRouter, subscriptionPacket, type NodeAnnouncement } from '../src/index.js';

// Real parts: uWSGI's own binary as nodes (Debian's uwsgi-core), Node HTTP nodes, the router over loopback.
const dir = mkdtempSync(join(tmpdir(), 'emperor-router-'));
const children = new Set<ChildProcess>();
t.teardown(() => {
  // Each child leads its own process group: uWSGI's workers go with their master.
  for (const c of children) {
    try {
      if (c.pid !== undefined) process.kill(-c.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

execFileSync('openssl', ['genrsa', '-out', join(dir, 'signer.key'), '2048'], { stdio: 'ignore' });
execFileSync('mkdir', ['-p', join(dir, 'keys')]);
execFileSync('openssl', ['rsa', '-in', join(dir, 'signer.key'), '-pubout', '-out', join(dir, 'keys', 'signed.test.pem')], { stdio: 'ignore' });

const logs: string[] = [];
const r = await runRouter({
  http: ['127.0.0.1:0'], subscriptionServers: ['127.0.0.1:0', join(dir, 'subscribe.sock')], stats: join(dir, 'stats.sock'), toleranceMs: 3_000, algo: 'wrr', mountpoints: 1,
  sign: { dir: join(dir, 'keys'), digest: 'SHA1', required: false, toleranceS: 300 }, maxKeys: 10_000, maxNodesPerKey: 16, trustForwarded: false,
  log: (l, m) => logs.push(`${l} ${m}`),
});
t.teardown(() => r.close());
const [httpPort] = r.httpPorts;
const [udpPort] = r.udpPorts;
const udp = createSocket('udp4');
t.teardown(() => udp.close());
const announce = (cmd: 0 | 1, a: Partial<NodeAnnouncement> & { key: string; address: string }) =>
  new Promise<void>((res) => udp.send(subscriptionPacket(cmd, { modifier1: 0, modifier2: 0, cores: 1, load: 0, weight: 1, backup: 0, proto: 'http', algo: undefined, vassal: undefined, ...a }), udpPort, '127.0.0.1', () => res()));

interface Reply { status: number; headers: IncomingHttpHeaders; body: string }
const get = (host: string, path = '/', opts: { method?: string; body?: Buffer; headers?: Record<string, string> } = {}): Promise<Reply> =>
  new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: httpPort, path, method: opts.method ?? 'GET', agent: false, headers: { host, ...opts.headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });

const until = async (what: string, cond: () => boolean, ms = 15_000): Promise<void> => {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((res) => setTimeout(res, 20));
  }
};

const uwsgiNode = (name: string, subscribe: string, extra: string[] = []): ChildProcess => {
  const sock = join(dir, `${name}.sock`);
  const c = spawn('uwsgi', ['--master', '--die-on-term', '--socket', sock, '--subscribe-to', subscribe, '--subscribe-freq', '1', '--route-run', `addheader:X-Node: ${name}`, '--route-run', 'return:200', '--disable-logging', ...extra], { stdio: 'ignore', detached: true });
  children.add(c);
  return c;
};

const httpNode = async (name: string): Promise<{ proc: ChildProcess; path: string }> => {
  const path = join(dir, `${name}.http.sock`);
  const proc = spawn(process.execPath, [join(import.meta.dirname, 'fixtures', 'node.mjs'), path, name], { stdio: ['ignore', 'pipe', 'inherit'], detached: true });
  children.add(proc);
  await new Promise<void>((res) => proc.stdout?.once('data', () => res()));
  return { proc, path };
};

t.test('uwsgi --subscribe-to nodes (the real binary) register with our server and serve through our router', async (t) => {
  for (const n of ['u1', 'u2', 'u3']) uwsgiNode(n, `127.0.0.1:${udpPort}:example.test`);
  await until('three uWSGI nodes', () => r.table.get('example.test')?.nodes.length === 3);
  const seen = new Map<string, number>();
  for (let i = 0; i < 30; i++) {
    const res = await get('example.test');
    t.equal(res.status, 200);
    seen.set(String(res.headers['x-node']), (seen.get(String(res.headers['x-node'])) ?? 0) + 1);
  }
  t.same([...seen.keys()].sort(), ['u1', 'u2', 'u3'], 'over the uwsgi protocol to every node');
  t.same([...seen.values()], [10, 10, 10], 'wrr, equal weights: 10 each');
  const res = await get('Example.TEST'); // Host is case-insensitive
  t.equal(res.status, 200);
});

t.test('a unix datagram subscription server: uWSGI nodes reach it; a flood is dropped and counted, memory bounded', async (t) => {
  const path = join(dir, 'subscribe.sock');
  t.equal((await import('node:fs')).statSync(path).mode & 0o777, 0o600, 'mode 0600: who may write may announce');
  uwsgiNode('x1', `${path}:unix.test`);
  await until('the node over the unix socket', () => r.table.get('unix.test')?.nodes.length === 1);
  t.equal((await get('unix.test')).headers['x-node'], 'x1');
  const { sendUnixDatagram } = await import('@emperor/jail');
  const rss0 = process.memoryUsage().rss;
  const received0 = r.server.counters.received;
  let refusedBySender = 0;
  for (let i = 0; i < 50_000; i++) {
    try {
      sendUnixDatagram(path, Buffer.alloc(3000 + (i % 2000), i & 255));
    } catch {
      refusedBySender++; // EAGAIN: the socket's buffer is full, the kernel says so at once
    }
  }
  await until('the flood taken or dropped', () => r.server.counters.received - received0 + r.server.unixDropped + refusedBySender >= 50_000 || false, 20_000).catch(() => {});
  const grown = (process.memoryUsage().rss - rss0) / 1024 / 1024;
  t.ok(grown < 128, `rss grew ${grown.toFixed(1)} MiB for 50,000 datagrams of 3-5 KB`);
  t.ok(r.server.counters.refused.malformed > 0, 'garbage counted as malformed');
  t.equal((await get('unix.test')).status, 200, 'still routing');
});

t.test('signed the way uWSGI signs (subscribe-to ...,SHA1:key.pem): accepted; an unsigned node for that key refused', async (t) => {
  uwsgiNode('s1', `127.0.0.1:${udpPort}:signed.test,0,SHA1:${join(dir, 'signer.key')}`);
  uwsgiNode('s2', `127.0.0.1:${udpPort}:signed.test`); // no signature: refused, counted
  await until('the signed node', () => r.table.get('signed.test')?.nodes.length === 1);
  await until('the unsigned one refused', () => r.server.counters.refused.unsigned > 0);
  t.same(r.table.get('signed.test')?.nodes.map((n) => n.address), [join(dir, 's1.sock')]);
  const res = await get('signed.test');
  t.equal(res.headers['x-node'], 's1');
  // Two seconds later it is still there (its later announcements pass the growing-unix check).
  await new Promise((res2) => setTimeout(res2, 2_500));
  t.equal(r.table.get('signed.test')?.nodes.length, 1);
  t.equal(r.server.counters.refused.replayed, 0, 'no announcement of a live uWSGI node taken for a replay');
});

t.test('unknown key: a 502 page (uWSGI closes the connection); X-Forwarded-For/-Proto set, a forged one replaced', async (t) => {
  const res = await get('nobody.test');
  t.equal(res.status, 502);
  t.match(res.body, /No application serves nobody\.test/);
  const n = await httpNode('h1');
  await announce(0, { key: 'http.test', address: n.path });
  await until('h1', () => r.table.get('http.test')?.nodes.length === 1);
  const ok = await get('http.test', '/', { headers: { 'x-forwarded-for': '6.6.6.6' } });
  t.equal(ok.body, 'node h1');
  t.equal(ok.headers['x-seen-for'], '127.0.0.1', 'the client\'s own address, not what it claimed');
  t.equal(ok.headers['x-seen-proto'], 'http');
  const big = Buffer.alloc(8 * 1024 * 1024, 7);
  const posted = await get('http.test', '/count', { method: 'POST', body: big });
  t.equal(posted.body, String(big.length), 'an 8 MiB body streamed through');
});

t.test('the uwsgi protocol: CGI variables as uWSGI sends them; chunked, close-delimited and cut responses', async (t) => {
  const path = join(dir, 'un.sock');
  const proc = spawn(process.execPath, [join(import.meta.dirname, 'fixtures', 'uwsgi-node.mjs'), path], { stdio: ['ignore', 'pipe', 'inherit'], detached: true });
  children.add(proc);
  await new Promise<void>((res) => proc.stdout?.once('data', () => res()));
  await announce(0, { key: 'proto.test', address: path, proto: 'uwsgi' });
  await until('proto.test', () => r.table.get('proto.test') !== undefined);
  const v = await get('proto.test', '/vars?x=1&y=%20', { headers: { 'x-custom': 'yes', cookie: 'c=3' } });
  t.equal(v.status, 200);
  t.same(v.headers['set-cookie'], ['a=1', 'b=2'], 'repeated headers kept');
  const vars = JSON.parse(v.body) as Record<string, string>;
  t.match(vars, { REQUEST_METHOD: 'GET', REQUEST_URI: '/vars?x=1&y=%20', PATH_INFO: '/vars', QUERY_STRING: 'x=1&y=%20', SERVER_PROTOCOL: 'HTTP/1.1', REMOTE_ADDR: '127.0.0.1', HTTP_HOST: 'proto.test', SERVER_NAME: 'proto.test', HTTP_X_CUSTOM: 'yes', HTTP_COOKIE: 'c=3', HTTP_X_FORWARDED_FOR: '127.0.0.1', UWSGI_SCHEME: 'http' });
  t.equal((await get('proto.test:8080', '/vars')).status, 502, 'the port is part of the key (uWSGI): proto.test:8080 is not proto.test');
  const posted = await get('proto.test', '/vars', { method: 'POST', body: Buffer.alloc(100_000, 1), headers: { 'content-type': 'application/octet-stream' } });
  t.match(JSON.parse(posted.body), { CONTENT_LENGTH: '100000', CONTENT_TYPE: 'application/octet-stream', BODY_BYTES: '100000' }, 'the body follows the variables');
  const chunked = await get('proto.test', '/chunked');
  t.equal(chunked.body, 'hello world', 'a chunked response read by Node\'s parser');
  t.equal(chunked.headers['x-kind'], 'chunked');
  const closed = await get('proto.test', '/close');
  t.equal(closed.body, 'until the end', 'close-delimited');
  const cut = await get('proto.test', '/short').then((x) => `complete:${x.body}`, (e: Error) => `error:${e.message}`);
  t.match(cut, /^error:/, `a response shorter than its Content-Length reaches the client as cut, never as whole (${cut})`);
});

t.test('websocket-style upgrade passes through both ways', async (t) => {
  const s = connect(httpPort, '127.0.0.1');
  await new Promise((res) => s.once('connect', res));
  s.write('GET /ws HTTP/1.1\r\nHost: http.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n');
  let got = '';
  s.on('data', (d: Buffer) => (got += d.toString()));
  await until('101', () => got.includes('\r\n\r\n'));
  t.match(got, /^HTTP\/1\.1 101/);
  t.match(got, /x-node: h1/);
  got = '';
  s.write('ping through the router');
  await until('echo', () => got.includes('ping through the router'));
  s.destroy();
  await until('the session closes', () => r.router.counters.activeSessions === 0);
  t.pass('session closed');
});

t.test('a node killed mid-request: that request fails, the next ones go to another node; a refused node is skipped', async (t) => {
  const a = await httpNode('ka');
  const b = await httpNode('kb');
  await announce(0, { key: 'kill.test', address: a.path });
  await announce(0, { key: 'kill.test', address: b.path });
  await until('two nodes', () => r.table.get('kill.test')?.nodes.length === 2);
  // The request in flight on one of them; which one wrr chose, its X-Node says.
  const first = await new Promise<{ node: string; ended: Promise<string> }>((resolve) => {
    const req = request({ host: '127.0.0.1', port: httpPort, path: '/slow', agent: false, headers: { host: 'kill.test' } }, (res) => {
      let body = '';
      const ended = new Promise<string>((done) => {
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => done(`end:${body}`));
        res.on('error', () => done(`error:${body}`));
        res.on('aborted', () => done(`aborted:${body}`));
      });
      resolve({ node: String(res.headers['x-node']), ended });
    });
    req.on('error', () => {});
    req.end();
  });
  const victim = first.node === 'ka' ? a : b;
  victim.proc.kill('SIGKILL');
  const outcome = await first.ended;
  t.notMatch(outcome, /^end:start end/, `the cut request did not complete (${outcome})`);
  let errors = 0;
  const served = new Set<string>();
  for (let i = 0; i < 20; i++) {
    const res = await get('kill.test');
    if (res.status !== 200) errors++;
    served.add(String(res.headers['x-node']));
  }
  t.equal(errors, 0, 'no client saw the dead node');
  t.same([...served], [first.node === 'ka' ? 'kb' : 'ka']);
  const dead = r.table.node('kill.test', victim.path);
  t.ok(dead === undefined || dead.dead, 'the dead node is marked (or gone)');
  t.ok((dead?.failures ?? 1) >= 1);
});

t.test('a node that stops announcing expires on time; unsubscribe removes at once', async (t) => {
  const n = uwsgiNode('e1', `127.0.0.1:${udpPort}:expire.test`);
  await until('e1', () => r.table.get('expire.test')?.nodes.length === 1);
  n.kill('SIGSTOP'); // alive, socket open, silent
  const stoppedAt = Date.now();
  await until('expiry', () => r.table.get('expire.test') === undefined, 10_000);
  const took = Date.now() - stoppedAt;
  t.ok(took >= 1_500 && took < 5_500, `expired ${took} ms after its last announcement (tolerance 3 s, announcing every 1 s)`);
  t.equal((await get('expire.test')).status, 502);
  n.kill('SIGKILL');
  const h = await httpNode('un');
  await announce(0, { key: 'unsub.test', address: h.path });
  await until('un', () => r.table.get('unsub.test') !== undefined);
  await announce(1, { key: 'unsub.test', address: h.path });
  await until('unsubscribed', () => r.table.get('unsub.test') === undefined, 2_000);
  t.pass('gone on unsubscribe');
});

t.test('1,000 keys x 3 nodes churning while requests run: no request fails', async (t) => {
  const nodes = await Promise.all(['c1', 'c2', 'c3', 'c4'].map((n) => httpNode(n)));
  const keys = Array.from({ length: 1000 }, (_, i) => `k${i}.churn.test`);
  for (const k of keys) for (const n of nodes.slice(0, 3)) await announce(0, { key: k, address: n.path });
  await until('3,000 nodes', () => keys.every((k) => r.table.get(k)?.nodes.length === 3), 20_000);
  let stop = false;
  let requests = 0;
  let failures = 0;
  const load = (async () => {
    while (!stop) {
      const k = keys[requests % keys.length] ?? 'x';
      const res = await get(k);
      requests++;
      if (res.status !== 200) failures++;
    }
  })();
  // Churn: each key swaps one node for another (unsubscribe c1, subscribe c4), then back, three rounds.
  for (let round = 0; round < 3; round++) {
    const [out, into] = round % 2 === 0 ? [nodes[0], nodes[3]] : [nodes[3], nodes[0]];
    for (const k of keys) {
      await announce(0, { key: k, address: into?.path ?? '' });
      await announce(1, { key: k, address: out?.path ?? '' });
    }
    await new Promise((res) => setTimeout(res, 200));
  }
  stop = true;
  await load;
  t.ok(requests > 100, `${requests} requests during the churn`);
  t.equal(failures, 0, 'none failed');
  t.ok(keys.every((k) => r.table.get(k)?.nodes.length === 3), 'every key ends with three nodes');
  for (const k of keys) for (const n of nodes) await announce(1, { key: k, address: n.path });
});

t.test('stats: uWSGI\'s shape on the stats socket, and Prometheus', async (t) => {
  const fetchStats = (path: string) => new Promise<string>((resolve, reject) => {
    const req = request({ socketPath: join(dir, 'stats.sock'), path, agent: false }, (res) => {
      let b = '';
      res.on('data', (d: Buffer) => (b += d.toString()));
      res.on('end', () => resolve(b));
    });
    req.on('error', reject);
    req.end();
  });
  const s = JSON.parse(await fetchStats('/stats')) as { subscriptions: Array<{ key: string; hits: number; algo: string; nodes: Array<Record<string, unknown>> }> };
  const ex = s.subscriptions.find((x) => x.key === 'example.test');
  t.ok(ex, 'example.test listed');
  t.ok((ex?.hits ?? 0) >= 31, 'its hits');
  t.same(Object.keys(ex?.nodes[0] ?? {}).filter((k) => ['name', 'modifier1', 'last_check', 'requests', 'cores', 'load', 'weight', 'backup', 'ref', 'failcnt', 'death_mark'].includes(k)).length, 11, 'uWSGI\'s node fields');
  const total = ex?.nodes.reduce((a, n) => a + Number(n.requests), 0) ?? 0;
  t.ok(total >= 31, `requests per node add up (${total})`);
  const m = await fetchStats('/metrics');
  t.match(m, /emperor_router_node_requests_total\{key="example\.test",node="[^"]+u1\.sock"\} \d+/);
  t.match(m, /emperor_subscription_refused_total\{reason="unsigned"\} [1-9]/);
});

t.test('a router that was SIGKILLed left its unix sockets: the next one replaces them; a file at a listener\'s path is refused and kept', async (t) => {
  const http = join(dir, 'dead-router.http.sock');
  const stats = join(dir, 'dead-router.stats.sock');
  const sub = join(dir, 'dead-router.sub.sock');
  // What a router killed with SIGKILL leaves: sockets nobody listens on.
  const dead = spawn(process.execPath, ['-e', `const net = require('node:net'); let n = 0; for (const p of ${JSON.stringify([http, stats, sub])}) net.createServer().listen(p, () => { if (++n === 3) console.log('up'); });`], { stdio: ['ignore', 'pipe', 'inherit'], detached: true });
  children.add(dead);
  await new Promise<void>((res) => dead.stdout?.once('data', () => res()));
  process.kill(-(dead.pid ?? 0), 'SIGKILL');
  await new Promise((res) => dead.once('exit', res));
  const config = { http: [http], subscriptionServers: [sub], stats, toleranceMs: 3_000, algo: 'wrr' as const, mountpoints: 0, maxKeys: 10, maxNodesPerKey: 4, trustForwarded: false, log: () => {} };
  const next = await runRouter(config);
  const ask = (socketPath: string, path: string) => new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request({ socketPath, path, agent: false, headers: { host: 'nobody.test' } }, (res) => {
      let b = '';
      res.on('data', (d: Buffer) => (b += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
    });
    req.on('error', reject);
    req.end();
  });
  t.equal((await ask(http, '/')).status, 502, 'the next router serves on the dead one\'s http socket');
  t.match((await ask(stats, '/stats')).body, /"subscriptions"/, 'and its stats socket');
  await next.close();
  // A regular file where a listener should be: an error naming the path; the file is not removed.
  writeFileSync(http, 'not a socket');
  await t.rejects(runRouter(config), { code: 'EMPEROR_ERR_USAGE', message: /^--http \S+dead-router\.http\.sock: expected a free path or a socket, got something else there$/ }, 'refused, naming the path');
  t.equal(readFileSync(http, 'utf8'), 'not a socket', 'the file is kept');
  rmSync(http);
  mkdirSync(stats);
  await t.rejects(runRouter(config), { code: 'EMPEROR_ERR_USAGE', message: /^--stats \S+dead-router\.stats\.sock: expected a free path or a socket, got something else there$/ }, 'a directory at the stats path: refused');
  t.ok(statSync(stats).isDirectory(), 'and kept');
  t.notOk(existsSync(http), 'the http socket of that failed start is removed with it');
});
