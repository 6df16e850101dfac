import { existsSync } from 'node:fs';
import t from 'tap';
import { alive, get, nodeApp, requireJails, startEmperor } from './fixtures/emperor.js';

if (requireJails(t)) {
  t.test('daemons start before the app, in the order written; stop takes every process group', async (t) => {
    const e = await startEmperor(t);
    e.write('d.ini', '[uwsgi]', 'uid = demo-alice', 'socket = app.sock',
      'attach-daemon = echo first > /run/order; exec sleep 300',
      // a daemon that forks a grandchild: the whole group must go on stop
      'attach-daemon2 = cmd=sh -c "sleep 300 & echo $! > /run/grandchild; exec sleep 301",stopsignal=TERM',
      // a daemon that ignores its stop signal: SIGKILL after stop-timeout
      "attach-daemon = trap '' TERM; while :; do sleep 1; done",
      'stop-timeout = 400ms',
      nodeApp('app'));
    const spawned = await e.waitFor((x) => x.vassal === 'd' && x.event === 'spawned');
    const order = e.events.filter((x) => x.vassal === 'd').map((x) => `${x.event}${x.daemon ?? ''}`);
    t.same(order.slice(0, 4), ['daemon-spawned0', 'daemon-spawned1', 'daemon-spawned2', 'spawned'], 'daemons, in order, then the app');
    t.match(await get(e.socketOf('d')), /^app:/);
    const v = e.emperor.vassals.get('d');
    const pids = v?.daemons.map((d) => d.pid) ?? [];
    t.equal(pids.filter(alive).length, 3);
    e.remove('d.ini');
    await e.waitFor((x) => x.vassal === 'd' && x.event === 'removed');
    t.same(pids.filter(alive), [], 'no daemon survives');
    t.notOk(alive(spawned.pid as number));
  });

  t.test('a daemon that dies is restarted with backoff without disturbing the app or the others', async (t) => {
    const e = await startEmperor(t);
    e.write('r.ini', '[uwsgi]', 'uid = demo-alice', 'socket = app.sock', 'attach-daemon = exec sleep 300', 'attach-daemon = sleep 0.1; exit 2', nodeApp('app'));
    const app = await e.waitFor((x) => x.vassal === 'r' && x.event === 'spawned');
    const steady = e.emperor.vassals.get('r')?.daemons[0]?.pid;
    await e.waitFor((x) => x.vassal === 'r' && x.event === 'daemon-backoff');
    const exits = e.events.filter((x) => x.vassal === 'r' && x.event === 'daemon-exited');
    t.ok(exits.length >= 2 && exits.every((x) => x.daemon === 1 && x.code === 2), 'the crashing daemon exits with its code and comes back');
    t.equal(e.emperor.vassals.get('r')?.daemons[0]?.pid, steady, 'the other daemon was not touched');
    t.equal(e.emperor.vassals.get('r')?.pid, app.pid, 'the app was not touched');
    t.equal(e.emperor.vassals.get('r')?.state, 'running');
    const { viewOf } = await import('../src/vassal-view.js');
    const view = viewOf(e.emperor.vassals.get('r') as never);
    t.match(view.daemons, [{ index: 0, kind: 'plain', restarts: 0 }, { index: 1, kind: 'plain' }], 'daemons and their restarts are in the status');
    t.ok((view.daemons[1]?.restarts ?? 0) >= 1);
  });

  t.test('a vassal reload sends each daemon its reload signal', async (t) => {
    const e = await startEmperor(t);
    e.write('hup.ini', '[uwsgi]', 'uid = demo-alice', "attach-daemon2 = cmd=trap 'echo got-hup >> /run/hups' HUP; touch /run/trapped; while :; do sleep 0.1; done,reloadsignal=HUP", 'command = sleep 300');
    await e.waitFor((x) => x.vassal === 'hup' && x.event === 'spawned');
    // A HUP before the shell has set its trap would end it (the default action): wait for the trap.
    for (let i = 0; i < 400 && !existsSync(e.socketOf('hup', 'trapped')); i++) await new Promise((r) => setTimeout(r, 10));
    const v = e.emperor.vassals.get('hup');
    const pid = v?.daemons[0]?.pid;
    await v?.reload();
    const p = v?.jail?.exec({ argv: ['/bin/sh', '-c', 'sleep 0.5; cat /run/hups'] });
    let out = '';
    p?.subprocess.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    await p?.exited;
    t.equal(out, 'got-hup\n', 'the daemon got HUP');
    t.equal(v?.daemons[0]?.pid, pid, 'and kept running (no restart)');
  });

  t.test('a smart daemon that double-forks is followed through its pidfile; when it dies it is started again', async (t) => {
    const e = await startEmperor(t);
    e.write('s.ini', '[uwsgi]', 'uid = demo-alice', 'smart-attach-daemon = /run/bg.pid,1 sh -c \'(setsid sleep 300 & echo $! > /run/bg.pid) &\'');
    await e.waitFor((x) => x.vassal === 's' && x.event === 'daemon-spawned' && x.running === true);
    const v = e.emperor.vassals.get('s');
    const jail = v?.jail;
    t.ok(jail);
    // Kill the daemon from inside the jail, as its user would: the pidfile check notices and restarts it.
    const n = e.events.length;
    const k = jail?.exec({ argv: ['/bin/sh', '-c', 'kill -9 "$(cat /run/bg.pid)"'] });
    await k?.exited;
    await e.waitFor((x) => x.vassal === 's' && x.event === 'daemon-exited', n);
    await e.waitFor((x) => x.vassal === 's' && x.event === 'daemon-spawned' && x.running === true, n);
    t.pass('restarted after its pidfile pointed at a dead process');
  });

  t.test('a cron job runs inside the jail as the vassal user, its exit status in the event stream', async (t) => {
    // An injected clock: "now" is 59.9 s past a minute, so the next minute starts in 100 ms.
    const e = await startEmperor(t, { clock: { now: () => Math.floor(Date.now() / 60_000) * 60_000 + 59_900, setTimeout: (fn, ms) => setTimeout(fn, ms), clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout) } });
    e.write('c.ini', '[uwsgi]', 'uid = demo-alice', 'cron = * * * * * id -un > /run/who; hostname >> /run/who; exit 5', 'hostname = cronbox');
    const ev = await e.waitFor((x) => x.vassal === 'c' && x.event === 'cron');
    t.equal(ev.code, 5);
    const jail = e.emperor.vassals.get('c')?.jail;
    const p = jail?.exec({ argv: ['cat', '/run/who'] });
    let out = '';
    p?.subprocess.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    await p?.exited;
    t.equal(out, 'demo-alice\ncronbox\n', 'ran as the vassal user, inside the jail');
  });
}

if (process.getuid?.() === 0) {
  t.test('stopping a vassal while daemon checks and restarts are pending leaves the emperor running', async (t) => {
    const e = await startEmperor(t);
    e.write('keep.ini', '[uwsgi]', 'uid = demo-bob', 'socket = app.sock', nodeApp('kept'));
    e.write('busy.ini', '[uwsgi]', 'uid = demo-alice',
      'smart-attach-daemon = /run/bg.pid,1 sh -c \'sleep 300 & echo $! > /run/bg.pid\'',
      'attach-daemon = sleep 0.05; exit 1',
      'cron = * * * * * true');
    await e.waitFor((x) => x.vassal === 'busy' && x.event === 'daemon-backoff');
    e.remove('busy.ini');
    await e.waitFor((x) => x.vassal === 'busy' && x.event === 'removed');
    // Past every timer the stopped daemons had (smart check every 1 s, backoff delays): nothing may fire.
    await new Promise((r) => setTimeout(r, 2500));
    t.notOk(e.events.some((x) => x.vassal === 'busy' && x.event === 'daemon-spawned' && e.events.indexOf(x) > e.events.findIndex((y) => y.vassal === 'busy' && y.event === 'removed')), 'no daemon came back after the stop');
    t.match(await get(e.socketOf('keep')), /^kept:/, 'the emperor and the other vassal are fine');
  });
}
