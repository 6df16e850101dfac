import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { runRouter, type RouterConfig } from '@emperor/router';
import { fileURLToPath } from 'node:url';
import { emperorBin } from './fixtures/daemon-bin.js';
import { nodeApp, requireJails, startEmperor } from './fixtures/emperor.js';

// The emperor announces its vassals (subscribe2 / subscribe-to) to our router and to the real uWSGI's.
const jails = requireJails(t);

const routerConfig = (extra: Partial<RouterConfig> = {}): RouterConfig => ({
  http: ['127.0.0.1:0'], subscriptionServers: ['127.0.0.1:0'], toleranceMs: 30_000, algo: 'wrr', mountpoints: 0, maxKeys: 1000, maxNodesPerKey: 16,
  trustForwarded: false, log: () => {}, ...extra,
});

const get = (port: number, host: string): Promise<{ status: number; body: string }> =>
  new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/', agent: false, headers: { host } }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });

const until = async (what: string, cond: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> => {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
};

if (jails) {
  t.test('a running vassal is announced and routable; reload drains and re-announces; removal unsubscribes at once', async (t) => {
    const r = await runRouter(routerConfig());
    t.teardown(() => r.close());
    const e = await startEmperor(t, { subscribeFreqMs: 500 });
    const [udp] = r.udpPorts;
    const [http] = r.httpPorts;
    e.write('sub.ini', '[uwsgi]', 'uid = demo-alice', 'socket = app.sock', `subscribe2 = server=127.0.0.1:${udp},key=app.test`, nodeApp('v1'));
    await e.waitFor((x) => x.vassal === 'sub' && x.event === 'spawned');
    await until('the node', () => r.table.get('app.test')?.nodes.length === 1);
    const node = r.table.get('app.test')?.nodes[0];
    t.equal(node?.address, e.socketOf('sub'), 'the vassal\'s socket, as the host sees it');
    t.equal(node?.proto, 'http', 'announced as http (the app speaks HTTP on its socket)');
    t.equal(node?.vassal, 'sub');
    t.match((await get(http ?? 0, 'app.test')).body, /^v1:\d+/, 'traffic reaches the app in its jail');
    const seen = node?.lastCheck ?? 0;
    await until('a re-announcement', () => (r.table.get('app.test')?.nodes[0]?.lastCheck ?? 0) > seen, 5_000);
    t.pass('announced again every subscribe period');
    const n = e.events.length;
    const removedBefore = r.server.counters.unsubscribed;
    e.write('sub.ini', '[uwsgi]', 'uid = demo-alice', 'socket = app.sock', `subscribe2 = server=127.0.0.1:${udp},key=app.test`, nodeApp('v2'));
    await e.waitFor((x) => x.vassal === 'sub' && x.event === 'reloaded', n);
    t.ok(r.server.counters.unsubscribed > removedBefore, 'unsubscribed while the reload drained');
    await until('back', () => r.table.get('app.test')?.nodes.length === 1);
    t.match((await get(http ?? 0, 'app.test')).body, /^v2:/);
    e.remove('sub.ini');
    await e.waitFor((x) => x.vassal === 'sub' && x.event === 'removed');
    await until('unsubscribed', () => r.table.get('app.test') === undefined, 2_000);
    t.equal((await get(http ?? 0, 'app.test')).status, 502, 'gone long before the 30 s tolerance');
  });

  t.test('`emperor router` restarted serves at once: its table starts from the emperor\'s list', async (t) => {
    const e = await startEmperor(t, { subscribeFreqMs: 600_000 }); // no re-announcement during the test
    const udpPort = 20000 + Math.floor(Math.random() * 20000);
    e.write('boot.ini', '[uwsgi]', 'uid = demo-bob', 'socket = app.sock', `subscribe-to = 127.0.0.1:${udpPort}:boot.test`, nodeApp('boot'));
    await e.waitFor((x) => x.vassal === 'boot' && x.event === 'spawned');
    const httpPort = udpPort + 1;
    const proc: ChildProcess = spawn(emperorBin, ['router', '--http', `127.0.0.1:${httpPort}`, '--subscription-server', `127.0.0.1:${udpPort}`, '--emperor-socket', join(e.root, 'run', 'control.sock')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise((res) => proc.on('exit', res));
    t.teardown(async () => {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      await exited;
    });
    await until('router ready', () => out.includes('router ready'), 20_000);
    t.match(out, /"bootstrapped":1/, 'one node from the emperor');
    const res = await get(httpPort, 'boot.test');
    t.equal(res.status, 200, out);
    t.match(res.body, /^boot:/, 'the first request is served (no wait for an announcement)');
    proc.kill('SIGTERM');
    t.equal(await exited, 0, 'SIGTERM: a clean exit');
  });

  t.test('our vassal registers with the real uWSGI: its http router lists it, its rawrouter carries traffic to it', async (t) => {
    const base = 40000 + Math.floor(Math.random() * 20000);
    const [raw, rawSub, rawStats, httpSub, httpStats] = [base, base + 1, base + 2, base + 3, base + 4];
    // A unix datagram subscription server too (Node cannot listen on one; uWSGI can, the emperor sends to it).
    const unixSub = join('/tmp', `emperor-uwsub-${process.pid}.sock`);
    const kids: ChildProcess[] = [
      spawn('uwsgi', ['--plugin', 'rawrouter', '--master', '--die-on-term', '--rawrouter', `127.0.0.1:${raw}`, '--rawrouter-subscription-server', `127.0.0.1:${rawSub}`, '--rawrouter-stats', `127.0.0.1:${rawStats}`], { stdio: 'ignore', detached: true }),
      spawn('uwsgi', ['--plugin', 'http', '--master', '--die-on-term', '--http', `127.0.0.1:${base + 5}`, '--http-subscription-server', `127.0.0.1:${httpSub}`, '--http-subscription-server', unixSub, '--http-stats', `127.0.0.1:${httpStats}`], { stdio: 'ignore', detached: true }),
    ];
    t.teardown(() => {
      for (const k of kids) if (k.pid !== undefined) try { process.kill(-k.pid, 'SIGKILL'); } catch { /* gone */ }
      rmSync(unixSub, { force: true });
    });
    const e = await startEmperor(t, { subscribeFreqMs: 500 });
    e.write('uw.ini', '[uwsgi]', 'uid = demo-carol', 'socket = app.sock', `subscribe-to = 127.0.0.1:${httpSub}:uw.test`, `subscribe2 = server=127.0.0.1:${rawSub},key=127.0.0.1:${raw}`, `subscribe-to = ${unixSub}:unix.test`, nodeApp('uw'));
    await e.waitFor((x) => x.vassal === 'uw' && x.event === 'spawned');
    const stats = (port: number) => new Promise<{ subscriptions: Array<{ key: string; nodes: Array<{ name: string }> }> }>((resolve) => {
      const c = connect(port, '127.0.0.1');
      let b = '';
      c.on('data', (d: Buffer) => (b += d.toString()));
      c.on('end', () => resolve(JSON.parse(b) as never));
      c.on('error', () => resolve({ subscriptions: [] }));
    });
    await until('uWSGI\'s http router has it', async () => (await stats(httpStats)).subscriptions.some((s) => s.key === 'uw.test' && s.nodes.some((n) => n.name === e.socketOf('uw'))));
    t.pass('uWSGI\'s http subscription server took our packet');
    await until('and over its unix datagram socket', async () => (await stats(httpStats)).subscriptions.some((s) => s.key === 'unix.test' && s.nodes.length === 1));
    t.pass('unix datagram subscriptions reach uWSGI');
    await until('uWSGI\'s rawrouter has it', async () => (await stats(rawStats)).subscriptions.some((s) => s.key === `127.0.0.1:${raw}`));
    const res = await get(raw, 'anything');
    t.match(res.body, /^uw:\d+/, 'through uWSGI\'s rawrouter into the jail');
    e.remove('uw.ini');
    await e.waitFor((x) => x.vassal === 'uw' && x.event === 'removed');
    await until('uWSGI dropped it on our unsubscribe', async () => !(await stats(httpStats)).subscriptions.some((s) => s.key === 'uw.test' && s.nodes.length > 0), 5_000);
    t.pass('unsubscribed');
  });

  t.test('signed by the emperor: accepted with the key; a key file the vassal does not own is not used (root reads no one else\'s key)', async (t) => {
    const dir = join('/tmp', `emperor-sign-${process.pid}`);
    mkdirSync(join(dir, 'keys'), { recursive: true });
    t.teardown(() => execFileSync('rm', ['-rf', dir]));
    execFileSync('openssl', ['genpkey', '-algorithm', 'ed25519', '-out', join(dir, 'app.key')], { stdio: 'ignore' });
    execFileSync('openssl', ['pkey', '-in', join(dir, 'app.key'), '-pubout', '-out', join(dir, 'keys', 'signed.test.pem')], { stdio: 'ignore' });
    execFileSync('cp', [join(dir, 'app.key'), join(dir, 'stolen.key')]);
    const alice = Number(execFileSync('id', ['-u', 'demo-alice']).toString());
    chownSync(join(dir, 'app.key'), alice, 0);
    chownSync(join(dir, 'stolen.key'), 4321, 4321); // someone else's
    writeFileSync(join(dir, 'keys', 'other.test.pem'), execFileSync('cat', [join(dir, 'keys', 'signed.test.pem')]));
    const r = await runRouter(routerConfig({ sign: { dir: join(dir, 'keys'), digest: 'SHA256', required: true, toleranceS: 300 } }));
    t.teardown(() => r.close());
    const [udp] = r.udpPorts;
    const e = await startEmperor(t, { subscribeFreqMs: 300 });
    e.write('sg.ini', '[uwsgi]', 'uid = demo-alice', 'socket = app.sock', `subscribe2 = server=127.0.0.1:${udp},key=signed.test,sign=SHA256:${join(dir, 'app.key')}`, `subscribe2 = server=127.0.0.1:${udp},key=other.test,sign=SHA256:${join(dir, 'stolen.key')}`, `subscribe2 = server=127.0.0.1:${udp},key=plain.test`, nodeApp('sg'));
    await e.waitFor((x) => x.vassal === 'sg' && x.event === 'spawned');
    await until('signed.test', () => r.table.get('signed.test') !== undefined);
    await until('refusals', () => r.server.counters.refused.unsigned >= 2);
    await new Promise((res) => setTimeout(res, 1_000)); // several announcements: each a larger unix
    t.ok(r.table.get('signed.test'), 'the signed subscription holds');
    t.equal(r.server.counters.refused.replayed, 0, 'no announcement of ours taken for a replay');
    t.equal(r.table.get('other.test'), undefined, 'the key file owned by uid 4321 was not used');
    t.equal(r.table.get('plain.test'), undefined, 'sign required: an unsigned key refused');
    t.ok(e.logs.some((l) => /stolen\.key cannot be used \(owned by uid 4321/.test(l.msg)), 'the operator is told why');
  });
}

if (jails) {
  t.test('a hostile app in its jail (as its uid) cannot hold, flood or bloat the router; the neighbour is served throughout', async (t) => {
    const evil = fileURLToPath(new URL('./fixtures/evil-node.cjs', import.meta.url));
    const r = await runRouter(routerConfig({ headTimeoutMs: 1_500 }));
    t.teardown(() => r.close());
    const e = await startEmperor(t, { subscribeFreqMs: 500 });
    const [udp] = r.udpPorts;
    const [http] = r.httpPorts;
    e.write('evil.ini', '[uwsgi]', 'uid = demo-alice', 'socket = app.sock', `bind-ro = ${evil}:/evil.cjs`, 'command = node /evil.cjs', `subscribe2 = server=127.0.0.1:${udp},key=evil.test`);
    e.write('good.ini', '[uwsgi]', 'uid = demo-bob', 'socket = app.sock', `subscribe2 = server=127.0.0.1:${udp},key=good.test`, nodeApp('good'));
    await e.waitFor((x) => x.vassal === 'evil' && x.event === 'spawned');
    await e.waitFor((x) => x.vassal === 'good' && x.event === 'spawned');
    await until('both routed', () => r.table.get('evil.test') !== undefined && r.table.get('good.test') !== undefined);
    t.equal((await get(http ?? 0, 'evil.test')).body, 'evil', 'the hostile app is a working node');
    const heap0 = process.memoryUsage().rss;
    const path = (p: string) => new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: http, path: p, agent: false, headers: { host: 'evil.test' } }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });
    // Held: 20 requests the app never answers, each bounded by the head timeout (504), none forever.
    const held = await Promise.all(Array.from({ length: 20 }, () => path('/hang')));
    t.same([...new Set(held.map((h) => h.status))], [504], 'every held request ends as 504');
    // A head that never ends: cut at 64 KiB, not buffered.
    t.equal((await path('/bighead')).status, 502, 'an endless head is refused');
    // A flood to a client that does not read: backpressure, not buffering.
    const slow = connect(http ?? 0, '127.0.0.1');
    slow.write('GET /flood HTTP/1.1\r\nHost: evil.test\r\n\r\n');
    slow.pause();
    await new Promise((res) => setTimeout(res, 3_000));
    const grown = (process.memoryUsage().rss - heap0) / 1024 / 1024;
    t.ok(grown < 96, `the router (and the emperor in this process) grew ${grown.toFixed(1)} MiB while the flood waited on a client that does not read`);
    t.match((await get(http ?? 0, 'good.test')).body, /^good:/, 'the neighbour is served meanwhile');
    slow.destroy();
    const inflight = () => r.table.get('evil.test')?.nodes[0]?.inflight ?? 0;
    await until('nothing held', () => inflight() === 0, 10_000);
    t.pass('every request of the hostile app released');
  });
}
