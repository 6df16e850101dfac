import t from 'tap';
import { requireJails, startEmperor } from './fixtures/emperor.js';
import { asCustomer } from './fixtures/hostile.js';

if (requireJails(t)) {
  t.test('touch-reload: a path touched inside the jail reloads the app; the watcher is the customer\'s own process', async (t) => {
    const e = await startEmperor(t);
    e.write('tr.ini', '[uwsgi]', 'uid = demo-alice', 'command = sleep 300', 'touch-reload = /run/reload.txt', 'touch-reload = /tmp/other.txt');
    const first = await e.waitFor((x) => x.vassal === 'tr' && x.event === 'spawned');
    const jail = e.emperor.vassals.get('tr')?.jail;
    // The watcher runs in the jail as the vassal user: root never resolves a path the customer controls.
    const ps = await asCustomer(jail, `
import os
for p in os.listdir('/proc'):
    if p.isdigit():
        try:
            cmd = open('/proc/%s/cmdline' % p, 'rb').read().split(b'\\0')
            st = os.stat('/proc/%s' % p)
        except OSError:
            continue
        if b'emperor-touch-reload' in cmd:
            print(st.st_uid, cmd[-3].decode(), cmd[-2].decode())
`);
    t.match(ps.stdout, new RegExp(`^${jail?.spec.uid} /run/reload.txt /tmp/other.txt$`, 'm'), `the watcher, as uid ${jail?.spec.uid}: ${ps.stdout}${ps.stderr}`);
    const n = e.events.length;
    // Created (it did not exist): a change, as uWSGI treats it.
    await asCustomer(jail, 'open("/run/reload.txt", "w").close()');
    const reloaded = await e.waitFor((x) => x.vassal === 'tr' && x.event === 'reloaded', n);
    t.not(reloaded.pid, first.pid, 'a new app process');
    const m = e.events.length;
    await asCustomer(jail, 'import os; os.utime("/tmp/other.txt", (1000, 1000)) if os.path.exists("/tmp/other.txt") else (open("/tmp/other.txt", "w").close())');
    await e.waitFor((x) => x.vassal === 'tr' && x.event === 'reloaded', m);
    t.pass('the second path reloads too');
    t.equal(e.emperor.vassals.get('tr')?.state, 'running');
  });

  t.test('a daemon\'s touch= restarts that daemon only', async (t) => {
    const e = await startEmperor(t);
    e.write('dt.ini', '[uwsgi]', 'uid = demo-alice', 'command = sleep 300', 'attach-daemon2 = cmd=sleep 301,touch=/run/daemon.txt', 'attach-daemon2 = cmd=sleep 302');
    const app = await e.waitFor((x) => x.vassal === 'dt' && x.event === 'spawned');
    const daemonPid = (i: number) => e.emperor.vassals.get('dt')?.daemons[i]?.pid;
    const before = [daemonPid(0), daemonPid(1)];
    const n = e.events.length;
    await asCustomer(e.emperor.vassals.get('dt')?.jail, 'open("/run/daemon.txt", "w").close()');
    const again = await e.waitFor((x) => x.vassal === 'dt' && x.event === 'daemon-spawned' && x.daemon === 0, n);
    t.not(again.pid, before[0], 'daemon 0 was restarted');
    t.equal(daemonPid(1), before[1], 'daemon 1 was not');
    t.equal(e.emperor.vassals.get('dt')?.pid, app.pid, 'nor the app');
    t.notOk(e.events.slice(n).some((x) => x.vassal === 'dt' && x.event === 'reloaded'));
  });

  t.test('a customer cannot write into the touch watcher\'s output (what the emperor reads from it): its pipes are the shim\'s, root\'s; killing the watcher only restarts it', async (t) => {
    const e = await startEmperor(t);
    e.write('flood.ini', '[uwsgi]', 'uid = demo-alice', 'command = sleep 300', 'touch-reload = /run/reload.txt');
    const first = await e.waitFor((x) => x.vassal === 'flood' && x.event === 'spawned');
    const jail = e.emperor.vassals.get('flood')?.jail;
    // The watcher runs as the customer, so /proc/PID/fd is theirs to list; the pipe behind fd 1 is root's.
    const r = await asCustomer(jail, `
import os, signal
def watcher(p):
    try:
        cmd = open('/proc/%s/cmdline' % p, 'rb').read().split(b'\\0')
        ppid = [l for l in open('/proc/%s/status' % p) if l.startswith('PPid:')][0].split()[1]
    except OSError:
        return False
    # The watcher itself (its parent, the shim, is outside the jail's pid namespace), not a subshell of it.
    return cmd[:2] == [b'/bin/sh', b'-c'] and cmd[3:4] == [b'emperor-touch-reload'] and ppid == '0'
pid = next(p for p in os.listdir('/proc') if p.isdigit() and watcher(p))
print('fds', sorted(os.listdir('/proc/%s/fd' % pid)))
for fd in ('1', '2'):
    try:
        os.open('/proc/%s/fd/%s' % (pid, fd), os.O_WRONLY)
        print('opened', fd)
    except OSError as e:
        print('fd', fd, e.strerror)
os.kill(int(pid), signal.SIGKILL)
`);
    t.match(r.stdout, /^fds \['0', '1', '2'\]$/m, r.stderr);
    t.match(r.stdout, /^fd 1 Permission denied$/m, 'fd 1 (the emperor\'s line) cannot be opened');
    t.match(r.stdout, /^fd 2 Permission denied$/m, 'nor fd 2');
    t.notMatch(r.stdout, /opened/);
    // Killed, the watcher is started again (after 10 s) and compares with what it saw last: a touch made while
    // it was away still reloads the app, in the same jail.
    const n = e.events.length;
    await asCustomer(jail, 'open("/run/reload.txt", "w").close()');
    const reloaded = await e.waitFor((x) => x.vassal === 'flood' && x.event === 'reloaded', n);
    t.not(reloaded.pid, first.pid, 'a touch still reloads the app');
    t.equal(e.emperor.vassals.get('flood')?.jail, jail, 'the same jail');
  });
}
