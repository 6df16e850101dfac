import { existsSync, readFileSync } from 'node:fs';
import t from 'tap';
import { alive, get, nodeApp, requireJails, startEmperor } from './fixtures/emperor.js';

if (requireJails(t)) {
  t.test('a new file spawns its vassal; the app answers on the socket the emperor owns', async (t) => {
    const e = await startEmperor(t);
    e.write('alice.ini', '[uwsgi]', 'uid = demo-alice', 'socket = app.sock', nodeApp('hi'));
    const ev = await e.waitFor((x) => x.vassal === 'alice' && x.event === 'spawned');
    t.match(await get(e.socketOf('alice')), /^hi:\d+\n$/);
    t.equal(e.emperor.vassals.get('alice')?.state, 'running');
    t.ok(alive(ev.pid as number));
  });

  t.test('a changed app setting reloads gracefully: new app first, then the old one stops', async (t) => {
    const e = await startEmperor(t);
    e.write('bob.ini', '[uwsgi]', 'uid = demo-bob', 'socket = app.sock', nodeApp('v1'));
    const first = await e.waitFor((x) => x.vassal === 'bob' && x.event === 'spawned');
    const jailBefore = e.emperor.vassals.get('bob')?.jail?.initPid;
    const n = e.events.length;
    e.write('bob.ini', '[uwsgi]', 'uid = demo-bob', 'socket = app.sock', nodeApp('v2'));
    const reloaded = await e.waitFor((x) => x.vassal === 'bob' && x.event === 'reloaded', n);
    t.not(reloaded.pid, first.pid, 'a new app process');
    t.match(await get(e.socketOf('bob')), /^v2:/, JSON.stringify(e.events.filter((x) => x.vassal === 'bob').map((x) => [x.event, x.pid])));
    t.notOk(alive(first.pid as number), 'the old app is gone');
    t.equal(e.emperor.vassals.get('bob')?.jail?.initPid, jailBefore, 'the jail was kept');
  });

  t.test('a changed jail setting rebuilds the jail; a changed limit is applied live', async (t) => {
    const e = await startEmperor(t);
    e.write('carol.ini', '[uwsgi]', 'uid = demo-carol', 'socket = app.sock', 'pids-limit = 50', nodeApp());
    const first = await e.waitFor((x) => x.vassal === 'carol' && x.event === 'spawned');
    const v = e.emperor.vassals.get('carol');
    const init = v?.jail?.initPid;
    let n = e.events.length;
    e.write('carol.ini', '[uwsgi]', 'uid = demo-carol', 'socket = app.sock', 'pids-limit = 40', nodeApp());
    await e.waitFor((x) => x.vassal === 'carol' && x.event === 'limits', n);
    await v?.settled();
    // The pids controller's directory: its own hierarchy on v1, the one directory on v2.
    const pidsDir = v?.jail?.cgroups.dirs.find((d) => existsSync(`${d}/pids.max`));
    t.equal(readFileSync(`${pidsDir}/pids.max`, 'utf8').trim(), '40', 'the new limit is in the cgroup');
    t.equal(v?.jail?.initPid, init, 'same jail');
    n = e.events.length;
    e.write('carol.ini', '[uwsgi]', 'uid = demo-carol', 'socket = app.sock', 'pids-limit = 40', 'hostname = carol-new', nodeApp());
    await e.waitFor((x) => x.vassal === 'carol' && x.event === 'restarted', n);
    t.not(v?.jail?.initPid, init, 'a new jail');
    t.notOk(alive(first.pid as number));
    t.match(await get(e.socketOf('carol')), /^hello:/);
  });

  t.test('a removed file stops the vassal and leaves nothing behind', async (t) => {
    const e = await startEmperor(t);
    e.write('dave.ini', '[uwsgi]', 'uid = demo-dave', 'socket = app.sock', nodeApp());
    const ev = await e.waitFor((x) => x.vassal === 'dave' && x.event === 'spawned');
    const v = e.emperor.vassals.get('dave');
    const jail = v?.jail;
    const dirs = jail?.cgroups.dirs ?? [];
    e.remove('dave.ini');
    await e.waitFor((x) => x.vassal === 'dave' && x.event === 'removed');
    t.notOk(alive(ev.pid as number), 'app gone');
    t.notOk(alive(jail?.shimPid), 'shim gone');
    t.notOk(alive(jail?.initPid), 'init gone');
    t.same(dirs.filter(existsSync), [], 'cgroups gone');
    t.notOk(existsSync(e.socketOf('dave')), 'socket and run dir gone');
    t.notOk(e.emperor.vassals.has('dave'));
  });

  t.test('a shim killed ends its jail; the respawn policy builds a new one, and the app answers again', async (t) => {
    const e = await startEmperor(t);
    e.write('sam.ini', '[uwsgi]', 'uid = demo-alice', 'socket = app.sock', nodeApp('sam'));
    const first = await e.waitFor((x) => x.vassal === 'sam' && x.event === 'spawned');
    const jail = e.emperor.vassals.get('sam')?.jail;
    const n = e.events.length;
    process.kill(jail?.shimPid ?? 0, 'SIGKILL');
    const again = await e.waitFor((x) => x.vassal === 'sam' && x.event === 'spawned', n);
    const now = e.emperor.vassals.get('sam');
    t.not(now?.jail, jail, 'a new jail');
    t.not(now?.jail?.shimPid, jail?.shimPid, 'with a new shim');
    // Gone, or a zombie left for PID 1 to reap (the shim, their parent, is dead).
    const gone = (pid: number | undefined) => {
      try {
        return !alive(pid) || /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
      } catch {
        return true; // reaped between the two looks
      }
    };
    for (let i = 0; i < 200 && !(gone(first.pid as number) && gone(jail?.initPid)); i++) await new Promise((r) => setTimeout(r, 25));
    t.ok(gone(first.pid as number), 'the old app went with the old jail');
    t.ok(gone(jail?.initPid), 'and its init');
    t.equal(now?.restarts, 1, 'counted as a restart');
    t.match(await get(e.socketOf('sam')), /^sam:/, 'the new app answers on the same socket path');
    void again;
  });

  t.test('a bad new file makes the vassal invalid and touches no other vassal', async (t) => {
    const e = await startEmperor(t);
    e.write('good.ini', '[uwsgi]', 'uid = demo-alice', 'socket = app.sock', nodeApp('good'));
    await e.waitFor((x) => x.vassal === 'good' && x.event === 'spawned');
    e.write('bad.ini', '[uwsgi]', 'uid = demo-bob', 'command = x', 'pids-limit = lots');
    const inv = await e.waitFor((x) => x.vassal === 'bad' && x.event === 'invalid');
    t.match(inv.problems, [/bad\.ini:4: pids-limit: expected a number of processes from 1 to 4194304, got "lots"/]);
    t.equal(e.emperor.vassals.get('bad')?.state, 'invalid');
    t.match(e.emperor.vassals.get('bad')?.lastError, /pids-limit/);
    t.match(await get(e.socketOf('good')), /^good:/, 'the other vassal still answers');
  });

  t.test('a changed file that is bad leaves the vassal on its last good config and reports the error', async (t) => {
    const e = await startEmperor(t);
    e.write('eve.ini', '[uwsgi]', 'uid = demo-alice', 'socket = app.sock', nodeApp('good'));
    const first = await e.waitFor((x) => x.vassal === 'eve' && x.event === 'spawned');
    const n = e.events.length;
    e.write('eve.ini', '[uwsgi]', 'uid = demo-alice', 'socket = app.sock', nodeApp('good'), 'cpu-weight = 0');
    const inv = await e.waitFor((x) => x.vassal === 'eve' && x.event === 'invalid', n);
    t.equal(inv.running, true, 'reported as still running');
    t.equal(e.emperor.vassals.get('eve')?.state, 'running');
    t.equal(e.emperor.vassals.get('eve')?.pid, first.pid, 'same app process');
    t.match(await get(e.socketOf('eve')), /^good:/);
  });

  t.test('an app that exits is respawned at once, then with backoff, then cursed; a file change lifts the curse', async (t) => {
    const e = await startEmperor(t);
    e.write('crash.ini', '[uwsgi]', 'uid = demo-alice', 'command = exit 3');
    const cursed = await e.waitFor((x) => x.vassal === 'crash' && x.event === 'cursed');
    const names = e.events.filter((x) => x.vassal === 'crash').map((x) => x.event);
    t.same(names.slice(0, 4), ['spawned', 'exited', 'spawned', 'exited'], 'the first respawn is immediate');
    t.ok(names.includes('backoff'), 'later ones wait');
    t.equal(e.emperor.vassals.get('crash')?.state, 'cursed');
    t.equal(cursed.failures, 4);
    const exits = e.events.filter((x) => x.vassal === 'crash' && x.event === 'exited');
    t.ok(exits.every((x) => x.code === 3), 'exit codes are reported');
    const n = e.events.length;
    e.write('crash.ini', '[uwsgi]', 'uid = demo-alice', 'command = sleep 300');
    await e.waitFor((x) => x.vassal === 'crash' && x.event === 'spawned', n);
    t.equal(e.emperor.vassals.get('crash')?.state, 'running', 'the changed file lifted the curse');
  });

  t.test('an app that ran long enough before dying is respawned at once again', async (t) => {
    const e = await startEmperor(t, { minUptimeMs: 50 });
    e.write('flaky.ini', '[uwsgi]', 'uid = demo-alice', 'command = sleep 0.3; exit 1');
    await e.waitFor((x) => x.vassal === 'flaky' && x.event === 'exited');
    const n = e.events.length;
    await e.waitFor((x) => x.vassal === 'flaky' && x.event === 'exited', n);
    await e.waitFor((x) => x.vassal === 'flaky' && x.event === 'exited', e.events.length);
    t.notOk(e.events.some((x) => x.vassal === 'flaky' && (x.event === 'backoff' || x.event === 'cursed')), 'healthy runs reset the failure count');
  });

  t.test('ready = notify: the app counts as up only after READY=1', async (t) => {
    const e = await startEmperor(t);
    const app = "python3 -c \"import os,socket,time; time.sleep(0.3); socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'READY=1', os.environ['NOTIFY_SOCKET']); time.sleep(300)\"";
    e.write('ntf.ini', '[uwsgi]', 'uid = demo-alice', 'ready = notify', `command = ${app}`);
    const ready = await e.waitFor((x) => x.vassal === 'ntf' && x.event === 'ready');
    const spawned = await e.waitFor((x) => x.vassal === 'ntf' && x.event === 'spawned');
    t.ok(e.events.indexOf(ready) < e.events.indexOf(spawned), 'ready comes before the vassal is reported spawned');
    e.write('bad-ntf.ini', '[uwsgi]', 'uid = demo-alice', 'ready = notify', 'command = sleep 0.2; exit 0');
    await e.waitFor((x) => x.vassal === 'bad-ntf' && (x.event === 'backoff' || x.event === 'cursed'));
    t.notOk(e.events.some((x) => x.vassal === 'bad-ntf' && x.event === 'ready'), 'an app that never says READY=1 is never ready');
  });

  t.test('editor temp files are ignored; write-then-rename is one vassal', async (t) => {
    const e = await startEmperor(t);
    e.write('.alice.ini.swp', 'garbage');
    e.write('alice.ini~', 'garbage');
    e.write('notes.txt', 'garbage');
    e.write('real.ini', '[uwsgi]', 'uid = demo-alice', 'command = sleep 300');
    await e.waitFor((x) => x.vassal === 'real' && x.event === 'spawned');
    t.same([...e.emperor.vassals.keys()], ['real']);
  });
}

if (process.getuid?.() === 0) {
  t.test('a jail that cannot be built is reported, cleaned up, retried with backoff, then cursed', async (t) => {
    const e = await startEmperor(t);
    e.write('nobind.ini', '[uwsgi]', 'uid = demo-alice', 'command = sleep 300', 'bind = /nonexistent/data:/data');
    const err = await e.waitFor((x) => x.vassal === 'nobind' && x.event === 'error');
    t.match(err.error, /^jail nobind: bind: bind source \/nonexistent\/data/, "names the step and the path");
    await e.waitFor((x) => x.vassal === 'nobind' && x.event === 'cursed');
    t.notOk(existsSync(`${e.root}/run/vassals/nobind`), 'its run dir is gone');
    t.equal(e.emperor.vassals.get('nobind')?.jail, undefined, 'no jail is left running');
  });
}
