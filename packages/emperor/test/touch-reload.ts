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
}
