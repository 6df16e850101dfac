import t from 'tap';
import { HOST_SYSTEM_DIRS, mountArgs, parseStatusLine } from '../src/index.js';
import { specOf } from './fixtures/jail.js';

t.test('a host jail binds the host\'s system dirs read-only and copies merged-/usr symlinks', async (t) => {
  const args = mountArgs(specOf('lay-host'), { runDir: '/run/emperor/vassals/lay-host' });
  t.ok(HOST_SYSTEM_DIRS.includes('/etc'));
  t.match(args.join(' '), /--ro-bind \/usr \/usr/);
  t.match(args.join(' '), /--symlink usr\/bin \/bin/, 'Debian 12 has /bin -> usr/bin');
  t.match(args.join(' '), /--ro-bind \/etc \/etc/);
});

t.test('then /proc, /dev, mqueue, /tmp with its size, the run dir at /run and /var/run, the home, the binds', async (t) => {
  const spec = specOf('lay-order', 'tmp-size = 16M', 'bind = /srv/a:/data', 'bind-ro = /srv/b:/ro');
  const args = mountArgs(spec, { runDir: '/r', home: '/nonexistent-home' }).join(' ');
  t.match(args, /--proc \/proc --dev \/dev --mqueue \/dev\/mqueue --tmpfs 16777216 \/tmp --bind \/r \/run --symlink \/run \/var\/run --bind-nofollow \/srv\/a \/data --ro-bind-nofollow \/srv\/b \/ro$/, 'the vassal\'s binds follow no symlink in any component');
  t.notMatch(args, /nonexistent-home/, 'a home that does not exist is not bound');
  const noIpc = mountArgs(specOf('lay-noipc', 'unshare = fs,pid,net'), { runDir: '/r' }).join(' ');
  t.notMatch(noIpc, /mqueue/, 'without an ipc namespace the host\'s mqueues would show: no mqueue mount');
});

t.test('status lines: events are parsed, anything else is ignored', async (t) => {
  t.same(parseStatusLine('{"event":"spawn","pid":5,"jail_pid":2}'), { event: 'spawn', pid: 5, jail_pid: 2 });
  t.same(parseStatusLine('{"event":"exit","code":null,"signal":9}'), { event: 'exit', code: null, signal: 9 });
  t.equal(parseStatusLine('{"event":"bogus"}'), undefined);
  t.equal(parseStatusLine('not json'), undefined);
  t.equal(parseStatusLine('[1]'), undefined);
});
