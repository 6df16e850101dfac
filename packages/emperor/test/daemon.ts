import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { alive, get, requireJails } from './fixtures/emperor.js';
import { emperorBin, startDaemon } from './fixtures/daemon-bin.js';
import { bound } from './fixtures/time.js';

/** The real `emperor` binary over a scratch dir, as systemd runs it; the test talks to it like a panel. */
const daemon = async (t: Test, files: Record<string, string>) => {
  const { proc, exited, root, dir, runDir, cgroupParent, output } = startDaemon(t, files);
  const cli = (...args: string[]) => spawnSync(emperorBin, [...args, '--run-dir', runDir], { encoding: 'utf8', timeout: bound(30_000) });
  const until = async (pred: () => boolean, what: string) => {
    for (let i = 0; i < bound(400); i++) {
      if (pred()) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`timed out waiting for ${what}; daemon output:\n${output()}`);
  };
  const api = (method: string, path: string): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      const req = request({ socketPath: join(runDir, 'control.sock'), method, path }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });
  await until(() => existsSync(join(runDir, 'control.sock')), 'the control socket');
  return { proc, exited, root, dir, runDir, cli, until, api, output, cgroupParent };
};

const APP = 'command = node -e "require(\'http\').createServer((q, s) => s.end(\'up\\\\n\')).listen({ fd: 3 })"';

if (requireJails(t)) {
  t.test('SIGTERM stops every vassal, SIGKILLs one that ignores its stop signal after stop-timeout, exits 0', async (t) => {
    const d = await daemon(t, {
      'stubborn.ini': "[uwsgi]\nuid = demo-alice\nstop-timeout = 500ms\ncommand = trap '' TERM; while :; do sleep 1; done\n",
      'web.ini': `[uwsgi]\nuid = demo-bob\nsocket = app.sock\n${APP}\n`,
    });
    await d.until(() => d.cli('status', '--json').stdout.includes('"running"') && (JSON.parse(d.cli('status', '--json').stdout) as Array<{ state: string }>).every((v) => v.state === 'running'), 'both vassals running');
    const views = JSON.parse(d.cli('status', '--json').stdout) as Array<{ name: string; pid: number; jail: { shim: number; init: number } }>;
    t.equal(await get(join(d.runDir, 'vassals', 'web', 'app.sock')), 'up\n');
    d.proc.kill('SIGTERM');
    t.equal(await d.exited, 0, 'exit 0');
    for (const v of views) {
      t.notOk(alive(v.pid), `${v.name}: app gone`);
      t.notOk(alive(v.jail.shim) || alive(v.jail.init), `${v.name}: jail gone`);
    }
    t.notOk(existsSync(join(d.runDir, 'control.sock')), 'control socket removed');
    t.same(readdirSync(join(d.runDir, 'vassals')), [], 'run dirs removed');
    t.match(d.output(), /"msg":"stubborn: stopped"/);
  });

  t.test('the control API: list, inspect, reload, restart, stop, start, events, metrics, stats', async (t) => {
    const d = await daemon(t, { 'web.ini': `[uwsgi]\nuid = demo-alice\nsocket = app.sock\n${APP}\n` });
    await d.until(() => d.cli('status', 'web', '--json').stdout.includes('"running"'), 'web running');
    const events: string[] = [];
    const stream = request({ socketPath: join(d.runDir, 'control.sock'), path: '/events' }, (res) => res.on('data', (c: Buffer) => events.push(...c.toString().trim().split('\n'))));
    stream.end();
    await new Promise((r) => setTimeout(r, 100));
    const list = await d.api('GET', '/vassals');
    t.equal(list.status, 200);
    t.match(JSON.parse(list.body), [{ name: 'web', state: 'running', restarts: 0, usage: { pids: Number } }]);
    const before = JSON.parse((await d.api('GET', '/vassals/web')).body) as { pid: number; jail: { init: number } };
    t.match(JSON.parse((await d.api('POST', '/vassals/web/reload')).body), { state: 'running' });
    const afterReload = JSON.parse((await d.api('GET', '/vassals/web')).body) as { pid: number; jail: { init: number } };
    t.not(afterReload.pid, before.pid, 'reload: new app');
    t.equal(afterReload.jail.init, before.jail.init, 'reload: same jail');
    await d.api('POST', '/vassals/web/restart');
    const afterRestart = JSON.parse((await d.api('GET', '/vassals/web')).body) as { jail: { init: number } };
    t.not(afterRestart.jail.init, before.jail.init, 'restart: new jail');
    t.match(JSON.parse((await d.api('POST', '/vassals/web/stop')).body), { state: 'stopped', pid: null });
    t.match(JSON.parse((await d.api('POST', '/vassals/web/start')).body), { state: 'running' });
    t.equal(await get(join(d.runDir, 'vassals', 'web', 'app.sock')), 'up\n');
    t.equal((await d.api('GET', '/vassals/nobody')).status, 404);
    const metrics = await d.api('GET', '/metrics');
    t.match(metrics.body, /^emperor_vassal_up\{vassal="web"\} 1$/m);
    t.match(metrics.body, /^emperor_vassals\{state="running"\} 1$/m);
    const stats = JSON.parse((await d.api('GET', '/stats')).body) as { vassals: Array<{ id: string; cursed: number }> };
    t.match(stats, { emperor: [d.dir], vassals: [{ id: 'web.ini', cursed: 0, loyal: 1 }] });
    stream.destroy();
    const names = events.map((l) => (JSON.parse(l) as { event: string }).event);
    t.same(names, ['reloaded', 'restarted', 'stopped', 'spawned'], 'the event stream saw every step');
  });

  t.test('the CLI: status table, reload, logs, and clear errors when the daemon is not there', async (t) => {
    const d = await daemon(t, { 'talk.ini': "[uwsgi]\nuid = demo-alice\ncommand = echo started; sleep 300\n" });
    await d.until(() => d.cli('status').stdout.includes('running'), 'talk running');
    const st = d.cli('status');
    t.match(st.stdout, /^NAME\s+STATE\s+PID\s+RESTARTS\s+MEMORY\s+PIDS\s+LAST ERROR\ntalk\s+running\s+\d+\s+0\s+[\d.]+M\s+\d+\n$/);
    t.equal(d.cli('reload', 'talk').stdout, 'talk: running\n');
    await d.until(() => d.cli('logs', 'talk').stdout === 'started\nstarted\n', 'two starts in the log');
    const missing = d.cli('reload', 'ghost');
    t.equal(missing.status, 1);
    t.equal(missing.stderr, 'emperor: no vassal named ghost\n');
    const away = spawnSync(emperorBin, ['status', '--run-dir', '/nonexistent'], { encoding: 'utf8' });
    t.equal(away.status, 1);
    t.match(away.stderr, /^emperor: expected the emperor's control socket at \/nonexistent\/control\.sock, got ENOENT \(is the emperor running\? pass --run-dir/);
  });

  t.test('SIGTERM always exits within the largest stop-timeout plus a few seconds: a spawn waiting for readiness and a vassal ignoring TERM', async (t) => {
    const d = await daemon(t, {
      'waiting.ini': '[uwsgi]\nuid = demo-alice\nready = notify\nready-timeout = 30m\ncommand = sleep 600\n',
      'stubborn.ini': "[uwsgi]\nuid = demo-bob\nstop-timeout = 2s\ncommand = trap '' TERM; while :; do sleep 1; done\n",
    });
    await d.until(() => (JSON.parse(d.cli('status', '--json').stdout) as Array<{ name: string; state: string }>).some((v) => v.name === 'stubborn' && v.state === 'running'), 'stubborn running');
    await d.until(() => (JSON.parse(d.cli('status', '--json').stdout) as Array<{ name: string; state: string }>).some((v) => v.name === 'waiting' && v.state === 'spawning'), 'waiting spawning');
    await new Promise((r) => setTimeout(r, 500));
    d.proc.kill('SIGTERM');
    // Bounded by the largest stop-timeout (2 s) plus the shutdown grace (3 s): only a hang can miss 20 s.
    const code = await Promise.race([d.exited, new Promise<string>((r) => setTimeout(() => r(`still running after ${bound(20_000) / 1000} s`), bound(20_000)))]);
    t.equal(code, 0, 'exited 0');
    t.same(readdirSync(join(d.runDir, 'vassals')), [], 'run dirs removed');
  });

  t.test('emperor.ini ceilings: a vassal asking for more is invalid with the ceiling and where it is set; a bad emperor.ini stops the daemon with every line', async (t) => {
    const root = mkdtempSync(join(tmpdir(), 'emperor-test-ini-'));
    t.teardown(() => rmSync(root, { recursive: true, force: true }));
    writeFileSync(join(root, 'emperor.ini'), '[emperor]\nmemory-limit = lots\ncolour = blue\n');
    const bad = spawnSync(emperorBin, ['--config', join(root, 'emperor.ini'), root], { encoding: 'utf8' });
    t.equal(bad.status, 64);
    t.equal(bad.stderr, `emperor: ${root}/emperor.ini:2: memory-limit: expected a size like 64M or 1G, from 4M to 1T, got "lots"\nemperor: ${root}/emperor.ini:3: colour: expected one of dir, run-dir, log-dir, tyrant, cgroup-parent, log-format, jail-builds, tyrant-vassals-per-uid, tyrant-min-uid, tyrant-socket-owners, rlimit, max-rlimit, net-pool, net-uplink, net-dns, net-allow, subscription-servers, memory-limit, max-memory-limit, cpu-limit, max-cpu-limit, pids-limit, max-pids-limit, tmp-size, max-tmp-size, run-dir-size, max-run-dir-size, pty-sessions, max-pty-sessions, stop-timeout, max-stop-timeout, net-rate, max-net-rate, net-connections, max-net-connections, got "colour"\n`);
    writeFileSync(join(root, 'emperor.ini'), '[emperor]\nmax-memory-limit = 256M\nmemory-limit = 128M\n');
    writeFileSync(join(root, 'big.ini'), '[uwsgi]\nuid = demo-alice\nmemory-limit = 1G\ncommand = sleep 60\n');
    const check = spawnSync(emperorBin, ['check', '--config', join(root, 'emperor.ini'), join(root, 'big.ini')], { encoding: 'utf8' });
    t.equal(check.status, 1);
    t.equal(check.stderr, `${root}/big.ini:3: memory-limit: expected at most 256M (max-memory-limit, set in ${root}/emperor.ini:2), got 1G (ask for 256M or less, or have the operator raise max-memory-limit in emperor.ini)\n`);
  });

  t.test('the daemon refuses bad command lines clearly', async (t) => {
    const nodir = spawnSync(emperorBin, ['/nonexistent/vassals', '--run-dir', '/tmp/x'], { encoding: 'utf8' });
    t.equal(nodir.status, 64);
    t.equal(nodir.stderr, 'emperor: /nonexistent/vassals: expected a directory of vassal files, got nothing (mkdir it, or name the right directory)\n');
    const two = spawnSync(emperorBin, ['run', '/a', '/b'], { encoding: 'utf8' });
    t.equal(two.status, 64);
    t.match(two.stderr, /expected one vassal directory, got \/a \/b/);
  });
}
