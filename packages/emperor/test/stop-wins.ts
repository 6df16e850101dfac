import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { builtinLimits } from '@emperor/config';
import { alive, requireJails, startEmperor } from './fixtures/emperor.js';
import { asCustomer } from './fixtures/hostile.js';

// Whatever the customer does to their run dir, and whatever their app never does (become ready, exit),
// a stop, a restart, a removal and a shutdown finish, and leave nothing running.

if (requireJails(t)) {
  t.test('a customer who replaces pty.sock with a directory and control.sock with a symlink cannot wedge a stop or a removal', async (t) => {
    const e = await startEmperor(t);
    const victim = join(e.root, 'victim');
    writeFileSync(victim, 'root-owned\n', { mode: 0o600 });
    e.write('wedge.ini', '[uwsgi]', 'uid = demo-alice', 'command = sleep 600');
    const spawned = await e.waitFor((x) => x.vassal === 'wedge' && x.event === 'spawned');
    const v = e.emperor.vassals.get('wedge');
    const r = await asCustomer(v?.jail, `
import os
os.unlink('/run/pty.sock'); os.mkdir('/run/pty.sock')
os.unlink('/run/control.sock'); os.symlink('${victim}', '/run/control.sock')
print('done')
`);
    t.equal(r.stdout.trim(), 'done', r.stderr);
    await v?.stop();
    t.equal(v?.state, 'stopped', 'the stop finished');
    t.notOk(alive(spawned.pid as number), 'the app is gone');
    t.notOk(existsSync(e.socketOf('wedge', '')), 'the run dir is gone');
    t.equal(readFileSync(victim, 'utf8'), 'root-owned\n', 'nothing outside the run dir was touched');
    await v?.start();
    await e.waitFor((x) => x.vassal === 'wedge' && x.event === 'spawned' && x.pid !== spawned.pid);
    e.remove('wedge.ini');
    await e.waitFor((x) => x.vassal === 'wedge' && x.event === 'removed');
  });

  t.test('ready = notify with an app that never sends READY=1: killed at ready-timeout, then the respawn policy', async (t) => {
    const e = await startEmperor(t);
    e.write('mute.ini', '[uwsgi]', 'uid = demo-alice', 'ready = notify', 'ready-timeout = 1s', 'command = sleep 600');
    const err = await e.waitFor((x) => x.vassal === 'mute' && x.event === 'error' && /ready-timeout/.test(String(x.error)));
    t.match(err.error, /expected READY=1 within ready-timeout \(1 s\), got nothing; the app was killed/);
    await e.waitFor((x) => x.vassal === 'mute' && (x.event === 'backoff' || x.event === 'cursed'));
  });

  t.test('stop, restart and removal cut short a spawn that waits for readiness; nothing is left running', async (t) => {
    const e = await startEmperor(t);
    // ready-timeout far beyond the test's bounds: only the cancellation can end these waits.
    e.write('slow.ini', '[uwsgi]', 'uid = demo-alice', 'ready = notify', 'ready-timeout = 30m', 'command = sleep 600');
    for (let i = 0; i < 200 && !e.emperor.vassals.has('slow'); i++) await new Promise((r) => setTimeout(r, 50));
    const v = e.emperor.vassals.get('slow');
    /** The jail's init once the app runs in it (waiting for readiness): two processes in its cgroup. */
    const waiting = async (notInit?: number) => {
      for (let i = 0; i < 400; i++) {
        const jail = v?.jail;
        const procs = jail === undefined ? [] : readFileSync(join(jail.cgroups.dirs[0] as string, 'cgroup.procs'), 'utf8').trim().split('\n').filter((l) => l !== '');
        if (jail !== undefined && jail.initPid !== notInit && procs.length >= 2 && v?.state === 'spawning') return jail.initPid;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`the app never started waiting (state ${v?.state})`);
    };
    await waiting();
    await v?.stop();
    t.equal(v?.state, 'stopped', 'stop won over the spawn');
    // start and restart resolve only once their spawn is done: here only a later stop or removal ends it.
    void v?.start();
    const first = await waiting();
    void v?.restart();
    const second = await waiting(first);
    t.not(second, first, 'restart cut the first wait short and built a new jail');
    t.notOk(alive(first), 'the first jail is gone');
    e.remove('slow.ini');
    await e.waitFor((x) => x.vassal === 'slow' && x.event === 'removed');
    t.equal(v?.jail, undefined, 'its jail is gone');
  });

  t.test('a smart-attach-daemon whose first process never exits is killed at ready-timeout', async (t) => {
    const e = await startEmperor(t);
    e.write('smart.ini', '[uwsgi]', 'uid = demo-alice', 'ready-timeout = 1s', 'smart-attach-daemon = /run/never.pid sleep 600');
    const ev = await e.waitFor((x) => x.vassal === 'smart' && x.event === 'daemon-exited' && /ready-timeout/.test(String(x.error)));
    t.match(ev.error, /expected its first process to exit within ready-timeout \(1 s\), got one still running; killed/);
    const v = e.emperor.vassals.get('smart');
    await v?.stop();
    t.equal(v?.state, 'stopped');
  });

  t.test('tyrant mode: one uid gets at most tyrant-vassals-per-uid vassals; one more file is invalid and changes nothing', async (t) => {
    const limits = builtinLimits();
    limits.vassalsPerUid = { value: 2, from: 'the test' };
    limits.tyrantMinUid = { value: 100, from: 'the test' }; // the demo users are system users
    const e = await startEmperor(t, { tyrant: true, limits });
    const [uid, gid] = ['-u', '-g'].map((f) => Number(execFileSync('id', [f, 'demo-alice'], { encoding: 'utf8' })));
    /** Written and chowned aside, then renamed in: the customer's own file from the first event on. */
    const owned = (name: string) => {
      const tmp = join(e.root, name);
      writeFileSync(tmp, '[uwsgi]\ncommand = sleep 600\n');
      chownSync(tmp, uid as number, gid as number);
      renameSync(tmp, join(e.dir, name));
    };
    owned('t1.ini');
    await e.waitFor((x) => x.vassal === 't1' && x.event === 'spawned');
    owned('t2.ini');
    await e.waitFor((x) => x.vassal === 't2' && x.event === 'spawned');
    owned('t3.ini');
    const inv = await e.waitFor((x) => x.vassal === 't3' && x.event === 'invalid');
    t.match((inv.problems as string[])[0], /expected at most 2 vassals for uid \d+ \(tyrant-vassals-per-uid, set in the test\), got one more/);
    t.equal(e.emperor.vassals.get('t1')?.state, 'running');
    t.equal(e.emperor.vassals.get('t2')?.state, 'running');
  });
}
