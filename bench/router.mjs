#!/usr/bin/env node
// The router (issue 13), side by side in one run, on loopback, the same backends for every router:
//   throughput: wrk (1 thread, 50 connections, keep-alive from the client) against our router, uWSGI's http
//               router (--http, one process, --http-keepalive) and nginx (one worker, uwsgi_pass), each passing every request
//               over the uwsgi protocol to the same two uWSGI nodes (--socket unix, internal routing returns
//               200). A second case: http backends (Node servers) behind our router (undici keep-alive pools)
//               and nginx (proxy_pass with an upstream keepalive); uWSGI 2.0's router cannot proxy to http.
//   announce:   a subscribe datagram for a new key sent, then requests for that key until one is routed:
//               the time from the datagram to the first 200, ours against uWSGI's http router.
// Rounds alternate between the routers so that machine noise hits all alike.
// Usage: node bench/router.mjs [ROUNDS] [SECONDS] [ANNOUNCES]
import { spawn, spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { subscriptionPacket } from '@emperor/router';
import { readFileSync } from 'node:fs';
const require_cat = (f) => { try { return readFileSync(f, 'utf8'); } catch { return ''; } };

const [ROUNDS, SECONDS, ANNOUNCES] = [3, 8, 200].map((d, i) => Number(process.argv[2 + i] ?? d));
const dir = mkdtempSync(join(tmpdir(), 'emperor-bench-router-'));
const kids = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const start = (cmd, args, opts = {}) => {
  const c = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'ignore'], detached: true, ...opts });
  kids.push(c);
  return c;
};
const cleanup = () => {
  for (const k of kids) try { process.kill(-k.pid, 'SIGKILL'); } catch { /* gone */ }
  rmSync(dir, { recursive: true, force: true });
};
process.on('exit', () => { if (process.env.KEEP) console.error(require_cat(join(dir, 'nginx.err'))); cleanup(); });
process.on('SIGINT', () => process.exit(130));

const P = { ours: 18180, oursUdp: 18181, uwsgi: 18182, uwsgiUdp: 18183, nginx: 18184, oursStats: join(dir, 'stats.sock') };
const nodes = ['n1', 'n2'].map((n) => join(dir, `${n}.sock`));
const httpNodes = ['h1', 'h2'].map((n) => join(dir, `${n}.http.sock`));
for (const [i, s] of nodes.entries()) start('uwsgi', ['--master', '--die-on-term', '--socket', s, '--processes', '1', '--route-run', `addheader:X-Node: n${i + 1}`, '--route-run', 'return:200', '--disable-logging', '--listen', '1024']);
const nodeApp = join(dir, 'node-app.cjs');
writeFileSync(nodeApp, `require('http').createServer((q, s) => { s.writeHead(200, { 'content-type': 'text/plain', 'content-length': 2 }); s.end('OK'); }).listen(process.argv[2]);`);
for (const s of httpNodes) start(process.execPath, [nodeApp, s]);

const emperorBin = new URL('../node_modules/.bin/emperor', import.meta.url).pathname;
start(emperorBin, ['router', '--http', `127.0.0.1:${P.ours}`, '--subscription-server', `127.0.0.1:${P.oursUdp}`, '--no-bootstrap', '--subscription-tolerance', '3600']);
start('uwsgi', ['--plugin', 'http', '--master', '--die-on-term', '--http', `127.0.0.1:${P.uwsgi}`, '--http-processes', '1', '--http-keepalive', '--http-subscription-server', `127.0.0.1:${P.uwsgiUdp}`, '--subscription-tolerance', '3600', '--disable-logging', '--listen', '1024']);
writeFileSync(join(dir, 'nginx.conf'), `
user root; daemon off; worker_processes 1; pid ${dir}/nginx.pid; error_log ${dir}/nginx.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  upstream uw { ${nodes.map((s) => `server unix:${s};`).join(' ')} }
  upstream hb { ${httpNodes.map((s) => `server unix:${s};`).join(' ')} keepalive 64; }
  server {
    listen 127.0.0.1:${P.nginx};
    location / { include /etc/nginx/uwsgi_params; uwsgi_pass uw; }
    location /http/ { proxy_pass http://hb; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $host; proxy_set_header X-Forwarded-For $remote_addr; }
  }
}`);
start('nginx', ['-c', join(dir, 'nginx.conf'), '-p', dir]);

const udp = createSocket('udp4');
const send = (port, a, cmd = 0) => new Promise((r) => udp.send(subscriptionPacket(cmd, { modifier1: 0, modifier2: 0, cores: 1, load: 0, weight: 1, backup: 0, proto: undefined, algo: undefined, vassal: undefined, ...a }), port, '127.0.0.1', r));
const get = (port, host, path = '/') => new Promise((resolve) => {
  const req = request({ host: '127.0.0.1', port, path, agent: false, headers: { host } }, (res) => {
    res.resume();
    res.on('end', () => resolve(res.statusCode));
  });
  req.on('error', () => resolve(0));
  req.end();
});

await sleep(1500);
for (const s of nodes) {
  await send(P.oursUdp, { key: 'bench.test', address: s });
  await send(P.uwsgiUdp, { key: 'bench.test', address: s });
}
for (const s of httpNodes) await send(P.oursUdp, { key: 'http.bench.test', address: s, proto: 'http' });
// Announced again every second, as live nodes are (a node marked dead comes back on its next announcement).
const reannounce = setInterval(async () => {
  for (const s of nodes) {
    await send(P.oursUdp, { key: 'bench.test', address: s });
    await send(P.uwsgiUdp, { key: 'bench.test', address: s });
  }
  for (const s of httpNodes) await send(P.oursUdp, { key: 'http.bench.test', address: s, proto: 'http' });
}, 1000);
await sleep(300);
for (const [name, port, host, path] of [['ours', P.ours, 'bench.test', '/'], ['uwsgi', P.uwsgi, 'bench.test', '/'], ['nginx', P.nginx, 'bench.test', '/'], ['ours-http', P.ours, 'http.bench.test', '/'], ['nginx-http', P.nginx, 'x', '/http/']]) {
  const s = await get(port, host, path);
  if (s !== 200) throw new Error(`${name}: expected 200 before the benchmark, got ${s}`);
}

const wrk = (port, host, path) => {
  const r = spawnSync('wrk', ['-t1', '-c50', `-d${SECONDS}s`, '--latency', '-H', `Host: ${host}`, `http://127.0.0.1:${port}${path}`], { encoding: 'utf8' });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1] ?? NaN);
  const p99m = /99%\s+([\d.]+)(us|ms|s)/.exec(r.stdout);
  const p99 = p99m ? Number(p99m[1]) * (p99m[2] === 'us' ? 0.001 : p99m[2] === 's' ? 1000 : 1) : NaN;
  const errs = /Non-2xx or 3xx responses: (\d+)/.exec(r.stdout)?.[1] ?? '0';
  const sockErr = /Socket errors: (.*)/.exec(r.stdout)?.[1] ?? '';
  return { rps, p99, errors: Number(errs), sockErr };
};

const cases = [['ours', P.ours, 'bench.test', '/'], ['uwsgi', P.uwsgi, 'bench.test', '/'], ['nginx', P.nginx, 'bench.test', '/'], ['ours-http', P.ours, 'http.bench.test', '/'], ['nginx-http', P.nginx, 'x', '/http/']];
const results = Object.fromEntries(cases.map(([n]) => [n, []]));
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, port, host, path] of cases) {
    const r = wrk(port, host, path);
    results[name].push(r);
    console.error(`round ${round + 1} ${name}: ${r.rps.toFixed(0)} req/s, p99 ${r.p99.toFixed(2)} ms, non-2xx ${r.errors}${r.sockErr ? `, socket errors ${r.sockErr}` : ''}`);
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const summary = Object.fromEntries(Object.entries(results).map(([n, rs]) => [n, { rps: median(rs.map((r) => r.rps)), p99: median(rs.map((r) => r.p99)), errors: rs.reduce((a, r) => a + r.errors, 0) }]));

// Announcement -> first routed request.
const announceLatency = async (port, udpPort, i) => {
  const key = `a${i}-${port}.test`;
  const t0 = process.hrtime.bigint();
  await send(udpPort, { key, address: nodes[i % 2] });
  for (;;) {
    if ((await get(port, key)) === 200) return Number(process.hrtime.bigint() - t0) / 1e6;
  }
};
const lat = { ours: [], uwsgi: [] };
for (let i = 0; i < ANNOUNCES; i++) {
  lat.ours.push(await announceLatency(P.ours, P.oursUdp, i));
  lat.uwsgi.push(await announceLatency(P.uwsgi, P.uwsgiUdp, i));
}
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))];
clearInterval(reannounce);
udp.close();

const f = (x, d = 0) => x.toFixed(d);
console.log(`| case | ours | peer | ratio |`);
console.log(`|---|---|---|---|`);
console.log(`| req/s, uwsgi-protocol nodes, vs uWSGI's http router | ${f(summary.ours.rps)} | ${f(summary.uwsgi.rps)} | ${f(summary.ours.rps / summary.uwsgi.rps, 2)} |`);
console.log(`| req/s, uwsgi-protocol nodes, vs nginx uwsgi_pass | ${f(summary.ours.rps)} | ${f(summary.nginx.rps)} | ${f(summary.ours.rps / summary.nginx.rps, 2)} |`);
console.log(`| req/s, http nodes (keep-alive), vs nginx proxy_pass | ${f(summary['ours-http'].rps)} | ${f(summary['nginx-http'].rps)} | ${f(summary['ours-http'].rps / summary['nginx-http'].rps, 2)} |`);
console.log(`| p99 ms, uwsgi nodes: ours / uWSGI / nginx | ${f(summary.ours.p99, 2)} | ${f(summary.uwsgi.p99, 2)} / ${f(summary.nginx.p99, 2)} | |`);
console.log(`| p99 ms, http nodes: ours / nginx | ${f(summary['ours-http'].p99, 2)} | ${f(summary['nginx-http'].p99, 2)} | |`);
console.log(`| announce -> first routed request, p50 / p99 ms (${ANNOUNCES}) | ${f(pct(lat.ours, 0.5), 2)} / ${f(pct(lat.ours, 0.99), 2)} | ${f(pct(lat.uwsgi, 0.5), 2)} / ${f(pct(lat.uwsgi, 0.99), 2)} | |`);
console.log(`non-2xx responses in all runs: ${JSON.stringify(Object.fromEntries(Object.entries(summary).map(([n, s]) => [n, s.errors])))}`);
process.exit(0);
