import t from 'tap';
import { builtinLimits } from '../src/index.js';
import { bad, good, ini, lines } from './fixtures/check.js';

// One table row per key: good values with what they become, and bad values with the start of the message.
type Row = { key: string; good: Array<[string, unknown]>; bad: Array<[string, RegExp]>; pick: (s: any) => unknown; extra?: string[] };

const rows: Row[] = [
  { key: 'command', pick: (s) => s.command, good: [['gunicorn app:app', ['/bin/sh', '-c', 'gunicorn app:app']]], bad: [['', /expected a command line/]] },
  { key: 'chdir', pick: (s) => s.chdir, good: [['/srv/app/', '/srv/app'], ['/a//b', '/a/b']], bad: [['srv', /expected an absolute path inside the jail/], ['/a/../etc', /without \.\./]] },
  { key: 'env', pick: (s) => s.env, good: [['A=1', { A: '1' }], ['_X=', { _X: '' }]], bad: [['1A=x', /expected KEY=VALUE/], ['NOEQUALS', /expected KEY=VALUE/]] },
  { key: 'gid', pick: (s) => s.gid, good: [['www-data', 33], ['1234', 1234]], bad: [['root', /got "root", which is gid 0/], ['0', /a gid other than 0/], ['no-such-group-x', /unknown group/]] },
  { key: 'socket', pick: (s) => s.socket, good: [['app.sock', { path: 'app.sock', owner: undefined, mode: 0o660 }], ['s/a.sock', { path: 's/a.sock', owner: undefined, mode: 0o660 }]], bad: [['/tmp/app.sock', /relative to the vassal run dir/], ['../x.sock', /relative to the vassal run dir/], ['a/../../x', /relative/], ['x'.repeat(41), /at most 40 bytes/], ['pty.sock', /other than the emperor's own pty\.sock, control\.sock and \.emperor-\*/], ['control.sock', /emperor's own/], ['.emperor-notify-1', /emperor's own/], ['pty.sock/x', /emperor's own/]] },
  { key: 'chown-socket', extra: ['socket = a.sock'], pick: (s) => s.socket.owner, good: [['www-data:www-data', { uid: 33, gid: 33 }], ['www-data', { uid: 33, gid: 33 }]], bad: [['nosuchuser:x', /unknown user "nosuchuser"/], ['www-data:nosuchgroup', /unknown group/], ['a:b:c', /USER:GROUP/]] },
  { key: 'chmod-socket', extra: ['socket = a.sock'], pick: (s) => s.socket.mode, good: [['660', 0o660], ['0600', 0o600]], bad: [['rw-rw----', /octal mode/], ['4755', /octal mode/], ['888', /octal mode/]] },
  { key: 'ready', pick: (s) => s.ready, good: [['notify', 'notify'], ['NONE', 'none']], bad: [['yes', /one of none, notify/]] },
  { key: 'stop-signal', pick: (s) => s.stopSignal, good: [['QUIT', 'SIGQUIT'], ['sigint', 'SIGINT'], ['15', 'SIGTERM'], ['40', 40]], bad: [['TERMINATE', /signal name/], ['0', /signal name/], ['65', /signal name/]] },
  { key: 'reload-signal', pick: (s) => s.reloadSignal, good: [['USR1', 'SIGUSR1']], bad: [['', /signal name/]] },
  { key: 'stop-timeout', pick: (s) => s.stopTimeoutMs, good: [['30s', 30000], ['500ms', 500], ['2m', 120000], ['5m', 300000], ['7', 7000], ['1.5s', 1500]], bad: [['2h', /at most|to 3600s/], ['soon', /a duration/], ['-1', /a duration/], ['1h', /expected at most 300s \(max-stop-timeout, set in the built-in default\), got 3600s/]] },
  { key: 'rootfs', pick: (s) => s.rootfs, good: [['host', 'host'], ['/distros/bookworm/', '/distros/bookworm']], bad: [['bookworm', /host, or an absolute path/]] },
  { key: 'hostname', pick: (s) => s.hostname, good: [['web-1.example.com', 'web-1.example.com']], bad: [['-bad', /a hostname/], ['a_b', /a hostname/], ['x'.repeat(65), /a hostname/]] },
  { key: 'unshare', pick: (s) => s.unshare, good: [['fs,pid', ['fs', 'pid']], ['mount, pid, net', ['fs', 'net', 'pid']]], bad: [['fs,pid,user', /namespaces from fs,ipc,uts,net,pid/], ['ipc,uts,net,pid', /got a list without fs/], ['fs', /got a list without pid/]] },
  { key: 'bind', pick: (s) => s.binds, good: [['/srv/data:/data', [{ host: '/srv/data', jail: '/data', readOnly: false }]], ['/srv/x', [{ host: '/srv/x', jail: '/srv/x', readOnly: false }]]], bad: [['/:/host', /host path \/ .*would expose the host/], ['/proc/1:/p', /host path \/proc\/1/], ['/srv:/proc', /jail path \/proc/], ['/srv:/', /jail path \//], ['srv:/x', /an absolute host path/], ['/a:/b:/c', /HOST_PATH:JAIL_PATH/]] },
  { key: 'bind-ro', pick: (s) => s.binds, good: [['/usr/share/doc:/docs', [{ host: '/usr/share/doc', jail: '/docs', readOnly: true }]]], bad: [['/sys:/sys', /would expose the host/], ['/x:/run', /jail path \/run/]] },
  { key: 'tmp-size', pick: (s) => s.tmpSizeBytes, good: [['32M', 32 * 1024 ** 2], ['1g', 1024 ** 3], ['2097152', 2097152], ['512MiB', 512 * 1024 ** 2]], bad: [['10', /from 1M to 64G/], ['lots', /a size like 64M/], ['65G', /from 1M to 64G/]] },
  { key: 'run-dir-size', pick: (s) => s.runDirSizeBytes, good: [['8M', 8 * 1024 ** 2], ['256M', 256 * 1024 ** 2]], bad: [['10', /from 1M to 64G/], ['1G', /at most 256M \(max-run-dir-size, set in the built-in default\), got 1G/]] },
  { key: 'ready-timeout', pick: (s) => s.readyTimeoutMs, good: [['90s', 90_000], ['5', 5000]], bad: [['soon', /a duration/], ['2h', /at most|to 3600s/]] },
  { key: 'pty-sessions', pick: (s) => s.ptySessions, good: [['0', 0], ['16', 16]], bad: [['many', /a number of sessions/], ['33', /at most 32 \(max-pty-sessions/]] },
  { key: 'rlimit', pick: (s) => [s.rlimits.nofile, s.rlimits.core, s.rlimits.memlock], good: [['nofile=2048:8192', [[2048, 8192], [0, 0], [8 * 1024 ** 2, 8 * 1024 ** 2]]], ['core=64M', [[1024, 4096], [64 * 1024 ** 2, 64 * 1024 ** 2], [8 * 1024 ** 2, 8 * 1024 ** 2]]]], bad: [['nofile=100000', /expected nofile at most 65536 \(max-rlimit nofile, set in the built-in default\), got 100000/], ['nofile=10:5', /soft limit cannot be above the hard limit/], ['files=10', /NAME=SOFT\[:HARD\]/], ['nproc=many', /NAME=SOFT/]] },
  { key: 'memory-limit', pick: (s) => s.memoryLimitBytes, good: [['128M', 128 * 1024 ** 2], ['8G', 8 * 1024 ** 3]], bad: [['1M', /from 4M to 1T/], ['-5M', /a size/], ['9G', /expected at most 8G \(max-memory-limit, set in the built-in default\), got 9G ask for 8G or less, or have the operator raise max-memory-limit in emperor.ini/]] },
  { key: 'cpu-limit', pick: (s) => s.cpuLimitPercent, good: [['50%', 50], ['200%', 200], ['25', 25]], bad: [['0%', /percent of one CPU/], ['half', /percent of one CPU/], ['0.5', /percent of one CPU/]] },
  { key: 'cpu-weight', pick: (s) => s.cpuWeight, good: [['100', 100], ['10000', 10000]], bad: [['0', /from 1 to 10000/], ['10001', /from 1 to 10000/]] },
  { key: 'pids-limit', pick: (s) => s.pidsLimit, good: [['64', 64]], bad: [['0', /from 1 to/], ['many', /a number of processes/]] },
  { key: 'cgroup-opt', pick: (s) => s.cgroupOpts, good: [['memory.high=96M', [{ file: 'memory.high', value: '96M' }]], ['cpu.shares:512', [{ file: 'cpu.shares', value: '512' }]]], bad: [['cgroup.procs=1', /membership and release files/], ['../../x=1', /FILE=VALUE/], ['tasks=1', /FILE=VALUE/]] },
  { key: 'attach-daemon', pick: (s) => s.daemons.map((d: any) => [d.kind, d.command[2]]), good: [['redis-server', [['plain', 'redis-server']]]], bad: [['', /expected a command line/]] },
  {
    key: 'attach-daemon2',
    pick: (s) => { const d = s.daemons[0]; return [d.kind, d.command[2], d.stopSignal, d.reloadSignal, d.pidfile, d.freqSeconds, d.control, d.touch]; },
    good: [
      ['cmd=celery worker,stopsignal=15,reloadsignal=HUP', ['plain', 'celery worker', 'SIGTERM', 'SIGHUP', undefined, 10, false, []]],
      ['exec=a\\,b,pidfile=/run/x.pid,freq=5,control=1,touch=/a;/b', ['smart', 'a,b', 'SIGTERM', undefined, '/run/x.pid', 5, true, ['/a', '/b']]],
    ],
    bad: [['stopsignal=TERM', /with cmd=/], ['cmd=x,uid=1000', /no uid= key/], ['cmd=x,ns_pid=1', /no ns_pid= key/], ['cmd=x,stopsignal=NOPE', /stopsignal=: a signal name/], ['cmd=x,legion=a', /unknown key "legion"/], ['cmd=x,cmd=y', /"cmd" given twice/], ['cmd=x,daemonize=1', /pidfile= with daemonize=/], ['cmd', /no key=value/]],
  },
  { key: 'smart-attach-daemon', pick: (s) => [s.daemons[0].kind, s.daemons[0].pidfile, s.daemons[0].freqSeconds, s.daemons[0].command[2]], good: [['/run/r.pid redis-server --daemonize yes', ['smart', '/run/r.pid', 10, 'redis-server --daemonize yes']], ['/run/r.pid,3 x', ['smart', '/run/r.pid', 3, 'x']]], bad: [['/run/r.pid', /PIDFILE\[,FREQ\] COMMAND/], ['r.pid x', /an absolute pidfile path/]] },
  {
    key: 'cron',
    pick: (s) => [s.cron[0].schedule, s.cron[0].command[2], s.cron[0].unique],
    good: [
      ['59 23 -1 -1 -1 backup', [{ kind: 'uwsgi', minute: 59, hour: 23, day: -1, month: -1, week: -1 }, 'backup', false]],
      ['0 -2 -1 -1 7 x y', [{ kind: 'uwsgi', minute: 0, hour: -2, day: -1, month: -1, week: 7 }, 'x y', false]],
      ['*/10 * * * * tick', [{ kind: 'crontab', expression: '*/10 * * * *' }, 'tick', false]],
      ['0 9 * * MON-FRI   standup', [{ kind: 'crontab', expression: '0 9 * * MON-FRI' }, 'standup', false]],
      ['@daily rotate', [{ kind: 'crontab', expression: '@daily' }, 'rotate', false]],
    ],
    bad: [['60 -1 -1 -1 -1 x', /minute from 0 to 59/], ['0 -25 -1 -1 -1 x', /hour from 0 to 23/], ['* * * * *', /five fields, then the command/], ['0 0 31 2 * x', /never matches a date/], ['*/0 * * * * x', /crontab schedule/], ['@daily', /no command/]],
  },
  {
    key: 'cron2',
    pick: (s) => [s.cron[0].schedule, s.cron[0].command[2], s.cron[0].unique, s.cron[0].timeoutMs],
    good: [
      ['minute=0,hour=3,unique=1,harakiri=600 nightly job', [{ kind: 'uwsgi', minute: 0, hour: 3, day: -1, month: -1, week: -1 }, 'nightly job', true, 600000]],
      ['every minute', [{ kind: 'uwsgi', minute: -1, hour: -1, day: -1, month: -1, week: -1 }, 'every minute', false, undefined]],
    ],
    bad: [['minute=61 x', /minute from 0 to 59/], ['legion=a x', /without legion=/], ['hour=*/2 x', /hour= from 0 to 23/], ['minut=1 x', /did you mean "minute"/]],
  },
  { key: 'unique-cron', pick: (s) => [s.cron[0].source, s.cron[0].unique], good: [['0 -2 -1 -1 -1 x', ['unique-cron', true]]], bad: [['x', /five fields/]] },
  { key: 'cron-harakiri', extra: ['cron = * * * * * x'], pick: (s) => s.cronTimeoutMs, good: [['5m', 300000]], bad: [['2d', /a duration/]] },
  { key: 'touch-reload', pick: (s) => s.touchReload, good: [['/srv/app/reload', ['/srv/app/reload']]], bad: [['reload.txt', /absolute path/]] },
  { key: 'pty', pick: (s) => s.pty, good: [['on', true], ['Off', false], ['yes', true], ['0', false]], bad: [['maybe', /on or off/]] },
  { key: 'net', pick: (s) => s.net, good: [['nat', 'nat'], ['NONE', 'none']], bad: [['bridge', /one of none, nat/]] },
  {
    key: 'net-allow', extra: ['net = nat'], pick: (s) => s.netAllow.map((r: any) => [r.text, r.dest.bits, r.ports]),
    good: [['tcp 10.0.0.5:5432', [['tcp 10.0.0.5:5432', 32, [5432, 5432]]]], ['UDP 10.1.0.0/16:8000-8999', [['udp 10.1.0.0/16:8000-8999', 16, [8000, 8999]]]], ['icmp 192.168.1.1', [['icmp 192.168.1.1', 32, undefined]]], ['any 172.16.0.0/12', [['any 172.16.0.0/12', 12, undefined]]]],
    bad: [['10.0.0.5:5432', /PROTO ADDRESS/], ['sctp 10.0.0.5', /PROTO ADDRESS/], ['tcp 10.0.0.300', /PROTO ADDRESS/], ['tcp 10.0.0.5/24', /the network is 10\.0\.0\.0\/24/], ['icmp 10.0.0.5:80', /ports go with tcp or udp/], ['tcp 10.0.0.5:0', /ports are 1 to 65535/], ['tcp 10.0.0.5:90-80', /low-high/], ['tcp fd00::1', /PROTO ADDRESS/]],
  },
  { key: 'net-deny', extra: ['net = nat'], pick: (s) => s.netDeny.map((r: any) => r.text), good: [['tcp 192.0.2.0/24:25', ['tcp 192.0.2.0/24:25']]], bad: [['tcp', /PROTO ADDRESS/]] },
  { key: 'net-rate', extra: ['net = nat'], pick: (s) => s.netRate, good: [['20mbit', 20e6], ['500kbit', 500e3], ['1.5gbit', 1.5e9]], bad: [['20M', /say the unit: 20mbit/], ['10kbit', /from 64kbit to 100gbit/], ['fast', /a rate like/]] },
  { key: 'net-connections', extra: ['net = nat'], pick: (s) => s.netConnections, good: [['64', 64], ['16384', 16384]], bad: [['0', /from 1 to/], ['20000', /at most 16384 \(max-net-connections, set in the built-in default\), got 20000/]] },
  {
    key: 'subscribe-to',
    extra: ['socket = a.sock'],
    pick: (s) => { const x = s.subscriptions[0]; return [x.server, x.key, x.socket, x.modifier1, x.sign]; },
    good: [
      ['127.0.0.1:2626:example.com', [{ kind: 'udp', host: '127.0.0.1', port: 2626 }, 'example.com', undefined, undefined, undefined]],
      ['/run/sub.sock:example.com:8080,5', [{ kind: 'unix', path: '/run/sub.sock' }, 'example.com:8080', undefined, 5, undefined]],
      ['=1=:2626:a.b,0,SHA256:/etc/k.pem', [{ kind: 'udp', host: '127.0.0.1', port: 2626 }, 'a.b', 1, 0, { digest: 'SHA256', keyFile: '/etc/k.pem' }]],
      ['app=10.0.0.1:2626:x.org', [{ kind: 'udp', host: '10.0.0.1', port: 2626 }, 'x.org', 'app', undefined, undefined]],
    ],
    bad: [['example.com', /SERVER:KEY/], ['127.0.0.1:99999:x', /router address/], ['127.0.0.1:2626:', /subscription key/], ['127.0.0.1:2626:x,300', /a modifier1 from 0 to 255/], ['127.0.0.1:2626:x,0,nokey', /a signature DIGEST/]],
  },
  {
    key: 'subscribe2',
    extra: ['socket = a.sock'],
    pick: (s) => { const x = s.subscriptions[0]; return [x.server, x.key, x.weight, x.algo, x.proto, x.backup]; },
    good: [['server=127.0.0.1:2626,key=a.org,weight=2,algo=WLRC,proto=http,backup=1', [{ kind: 'udp', host: '127.0.0.1', port: 2626 }, 'a.org', 2, 'wlrc', 'http', 1]]],
    bad: [['key=a.org', /with server= and key=/], ['server=:1,key=a,algo=random', /algo= one of wrr, lrc, wlrc, iphash/], ['server=:1,key=a,sni_key=/k', /sni_key= and sni_crt= together/], ['server=:1,key=a,wieght=2', /did you mean "weight"/]],
  },
];

for (const row of rows) {
  t.test(`${row.key}: accepts its documented forms and refuses others with what it expected`, async (t) => {
    const needCommand = row.key !== 'command';
    for (const [value, want] of row.good) {
      const spec = await good('k.ini', ini(...(needCommand ? ['command = x'] : []), ...(row.extra ?? []), `${row.key} = ${value}`));
      t.same(row.pick(spec), want, `${row.key} = ${value}`);
    }
    for (const [value, want] of row.bad) {
      const problems = await bad('k.ini', ini(...(needCommand ? ['command = x'] : []), ...(row.extra ?? []), `${row.key} = ${value}`));
      t.equal(problems.length, 1, `${row.key} = ${value}: one problem`);
      const [p] = problems;
      // Over an operator's ceiling is its own code; every other bad value is a wrong value.
      t.equal(p?.code, /\(max-/.test(p?.message ?? '') ? 'EMPEROR_ERR_CONFIG_LIMIT' : 'EMPEROR_ERR_CONFIG_VALUE', `${row.key} = ${value}: code`);
      t.equal(p?.key, row.key);
      t.equal(p?.line, 3 + (needCommand ? 1 : 0) + (row.extra?.length ?? 0), 'the line of the value');
      t.match(`${p?.message} ${p?.hint ?? ''}`, want, `${row.key} = ${value}: ${p?.message}`);
      t.match(p?.message, /^expected .*, got .+/, 'says what it expected and what it got');
    }
  });
}

t.test('uid: names and numbers; root and unknown names are refused', async (t) => {
  const spec = await good('k.ini', '[uwsgi]\ncommand = x\nuid = www-data\n');
  t.equal(spec.uid, 33);
  t.equal(spec.gid, 33, 'gid defaults to the primary group');
  t.equal(spec.home, '/var/www', 'home comes from passwd');
  t.same(lines(await bad('k.ini', '[uwsgi]\ncommand = x\nuid = root\n')), ['k.ini:3: uid: expected an existing user name or a uid other than 0, got "root", which is uid 0 (a vassal never runs as root; create an unprivileged user for it)']);
  t.same(lines(await bad('k.ini', '[uwsgi]\ncommand = x\nuid = 0\n')), ['k.ini:3: uid: expected an existing user name or a uid other than 0, got "0" (a vassal never runs as root; create an unprivileged user for it)']);
  t.same(lines(await bad('k.ini', '[uwsgi]\ncommand = x\nuid = nosuchuser\n')), ['k.ini:3: uid: expected an existing user name or a uid other than 0, got unknown user "nosuchuser" (create it (useradd nosuchuser) or use a uid)']);
  // getent gets `--` first: a name that looks like an option is looked up, never obeyed (it printed help).
  t.same(lines(await bad('k.ini', '[uwsgi]\ncommand = x\nuid = --help\n')), ['k.ini:3: uid: expected an existing user name or a uid other than 0, got unknown user "--help" (create it (useradd --help) or use a uid)']);
  t.same(lines(await bad('k.ini', '[uwsgi]\ncommand = x\nuid = 4294967295\n')), ['k.ini:3: uid: expected an existing user name or a uid other than 0, got "4294967295"']);
});

t.test('a numeric uid without a passwd entry needs a gid', async (t) => {
  t.same(lines(await bad('k.ini', '[uwsgi]\ncommand = x\nuid = 71234\n')), ['k.ini:3: uid: expected gid, since uid 71234 has no passwd entry to take a group from, got none (add gid = GROUP)']);
  const spec = await good('k.ini', '[uwsgi]\ncommand = x\nuid = 71234\ngid = 71234\n');
  t.same([spec.uid, spec.gid, spec.home], [71234, 71234, undefined]);
});

t.test('defaults are filled in', async (t) => {
  const spec = await good('my_app.ini', ini('command = x'));
  t.match(spec, {
    name: 'my_app', format: 'ini', hostname: 'my-app', rootfs: 'host', unshare: ['fs', 'ipc', 'uts', 'net', 'pid'],
    ready: 'none', stopSignal: 'SIGTERM', reloadSignal: 'SIGHUP', stopTimeoutMs: 10000, tmpSizeBytes: 64 * 1024 ** 2,
    pty: true, socket: undefined, daemons: [], cron: [], env: {},
  });
  // Nothing unlimited unless the file or the operator says so (docs/security.md).
  t.match(spec, {
    memoryLimitBytes: 512 * 1024 ** 2, cpuLimitPercent: 100, pidsLimit: 512, runDirSizeBytes: 16 * 1024 ** 2, ptySessions: 4, readyTimeoutMs: 60_000,
    rlimits: { nofile: [1024, 4096], nproc: [4096, 4096], core: [0, 0], memlock: [8 * 1024 ** 2, 8 * 1024 ** 2], stack: [8 * 1024 ** 2, 64 * 1024 ** 2], fsize: [16 * 1024 ** 3, 16 * 1024 ** 3] },
  });
});

t.test('daemons and cron jobs keep the order written, across their keys', async (t) => {
  const spec = await good('k.ini', ini('smart-attach-daemon = /run/a.pid first', 'attach-daemon = second', 'attach-daemon2 = cmd=third', 'attach-daemon = fourth', 'cron2 = c1', 'cron = * * * * * c2'));
  t.same(spec.daemons.map((d) => d.command[2]), ['first', 'second', 'third', 'fourth']);
  t.same(spec.cron.map((c) => c.command[2]), ['c1', 'c2']);
});

t.test('a single-valued key given twice names both lines', async (t) => {
  t.same(lines(await bad('k.ini', ini('command = x', 'command = y'))), ['k.ini:4: command: expected one value, got a second one (first at line 3) (command is single-valued; keep one)']);
});

t.test('an env variable given twice is an error', async (t) => {
  t.same(lines(await bad('k.ini', ini('command = x', 'env = A=1', 'env = A=2'))), ['k.ini:5: env: expected each variable once, got A a second time (keep one)']);
});

t.test('unknown keys: a did-you-mean for near misses, a pointer for uWSGI app options', async (t) => {
  t.same(lines(await bad('k.ini', ini('command = x', 'chmod-sockett = 660', 'processes = 4', 'zzzz = 1'))), [
    'k.ini:4: chmod-sockett: expected a vassal key, got unknown key "chmod-sockett" (did you mean "chmod-socket"?)',
    'k.ini:5: processes: expected a vassal key, got unknown key "processes" ("processes" is a uWSGI app option: put it on the app\'s own command line (command = uwsgi --processes ...))',
    'k.ini:6: zzzz: expected a vassal key, got unknown key "zzzz" (see docs/vassal-file.md for the keys)',
  ]);
});

t.test('every problem in a file is reported, not only the first', async (t) => {
  const problems = await bad('k.ini', ini('command = x', 'pids-limit = none', 'cpu-weight = 0', 'ready = later'));
  t.same(problems.map((p) => p.line), [4, 5, 6]);
});

t.test('checks across keys', async (t) => {
  t.same(lines(await bad('k.ini', '[uwsgi]\ncommand = x\n')), ['k.ini: uid: expected uid (the unprivileged user the vassal runs as), got none (add uid = USER)']);
  t.same(lines(await bad('k.ini', ini('pty = on'))), ['k.ini: command: expected something to run (command, an attach-daemon or a cron job), got none (add command = ...)']);
  t.same(lines(await bad('k.ini', ini('command = x', 'chmod-socket = 600'))), ['k.ini:4: chmod-socket: expected a socket key with it, got none (add socket = app.sock or remove this key)']);
  t.same(lines(await bad('k.ini', ini('attach-daemon = x', 'ready = notify'))), ['k.ini:4: ready: expected a command to wait for, got no command (ready = notify waits for the app to send READY=1)']);
  t.ok(await good('k.ini', ini('attach-daemon = x')), 'a daemon-only vassal is fine');
  t.ok(await good('k.ini', ini('cron = * * * * * x')), 'a cron-only vassal is fine');
});

t.test('values that are lists or mappings where text is expected', async (t) => {
  t.same(lines(await bad('k.yaml', 'uid: www-data\ncommand: x\nhostname: [a, b]\n')), ['k.yaml:3: hostname: expected a hostname of letters, digits, "-" and ".", at most 64 characters, got a list of 2']);
  t.same(lines(await bad('k.yaml', 'uid: www-data\ncommand: x\nchdir:\n')), ['k.yaml:3: chdir: expected an absolute path inside the jail (starting with /, without ..), got nothing']);
  t.same(lines(await bad('k.json', '{"uid": "www-data", "command": [], "pty": {"a": 1}}')), [
    'k.json:1: command: expected a command line, or in json/yaml a non-empty list of strings, got an empty list',
    'k.json:1: pty: expected on or off (also true/false, yes/no, 1/0), got a mapping',
  ]);
  t.same(lines(await bad('k.json', '{"uid": "www-data", "command": ["a", {"b": 1}]}')), ['k.json:1: command: expected a command line, or in json/yaml a non-empty list of strings, got a list of 2']);
});

t.test('subscriptions: a socket to announce; tyrant mode: only the operator\'s servers, no addr= or vassal=', async (t) => {
  t.same(lines(await bad('k.ini', ini('command = x', 'subscribe-to = 127.0.0.1:2626:a.test'))), [
    'k.ini:4: subscribe-to: expected a socket to announce, got no socket key and no addr= (add socket = app.sock (the emperor announces it), or addr= in subscribe2)',
  ]);
  t.equal((await good('k.ini', ini('command = x', 'subscribe2 = server=127.0.0.1:2626,key=a.test,addr=10.0.0.1:8000'))).subscriptions[0]?.address, '10.0.0.1:8000', 'addr= is enough outside tyrant mode');
  const limits = builtinLimits();
  limits.tyrantMinUid = { value: 1, from: 'the test' };
  limits.subscriptionServers = { list: ['127.0.0.1:2626', '/run/emperor/sub.sock'], from: 'emperor.ini:3' };
  const tyrant = { tyrant: true, limits, owner: { uid: 33, gid: 33 } };
  t.same(lines(await bad('k.ini', '[uwsgi]\ncommand = x\nsocket = a.sock\nsubscribe-to = 127.0.0.1:9999:a.test\nsubscribe2 = server=127.0.0.1:2626,key=b.test,addr=/run/emperor/control.sock,vassal=bob,check=/root/secret\n', tyrant)), [
    "k.ini:4: subscribe-to: expected one of the operator's subscription servers (127.0.0.1:2626, /run/emperor/sub.sock; subscription-servers, set in emperor.ini:3), got 127.0.0.1:9999 (in tyrant mode the operator names the routers in emperor.ini (subscription-servers))",
    'k.ini:5: subscribe2: expected no addr= in tyrant mode, got /run/emperor/control.sock (the emperor announces your own socket; remove addr=)',
    'k.ini:5: subscribe2: expected no vassal= in tyrant mode, got bob (the emperor names your vassal itself; remove vassal=)',
    'k.ini:5: subscribe2: expected no check= in tyrant mode, got /root/secret (remove check=; the emperor announces the app while it runs and withdraws it when it stops)',
  ]);
  const ok = await good('k.ini', '[uwsgi]\ncommand = x\nsocket = a.sock\nsubscribe-to = 127.0.0.1:2626:a.test\nsubscribe-to = /run/emperor/sub.sock:c.test\n', tyrant);
  t.same(ok.subscriptions.map((s) => s.key), ['a.test', 'c.test'], 'the operator\'s servers, their own socket');
  limits.subscriptionServers = { list: [], from: 'the built-in default' };
  t.match(lines(await bad('k.ini', '[uwsgi]\ncommand = x\nsocket = a.sock\nsubscribe-to = 127.0.0.1:2626:a.test\n', tyrant))[0], /none set; subscription-servers, set in the built-in default/, 'none by default in tyrant mode');
});

t.test('json numbers and booleans are read as their text', async (t) => {
  const spec = await good('k.json', '{"uid": 33, "command": "x", "pids-limit": 10, "pty": false, "stop-timeout": 2, "chmod-socket": 600, "socket": "a.sock"}');
  t.same([spec.uid, spec.pidsLimit, spec.pty, spec.stopTimeoutMs, spec.socket?.mode], [33, 10, false, 2000, 0o600]);
});

t.test('network keys: net-* needs net = nat, nat needs the net namespace, tyrant mode takes no net-allow', async (t) => {
  t.same(lines(await bad('k.ini', ini('command = x', 'net-allow = tcp 10.0.0.5:5432', 'net-rate = 1mbit'))), [
    'k.ini:4: net-allow: expected net = nat with it, got net = none (add net = nat, or remove this key)',
    'k.ini:5: net-rate: expected net = nat with it, got net = none (add net = nat, or remove this key)',
  ]);
  t.same(lines(await bad('k.ini', ini('command = x', 'unshare = fs,pid', 'net = nat'))), ['k.ini:5: net: expected the net namespace in unshare with net = nat, got an unshare list without net (add net to unshare (a nat jail has an interface of its own))']);
  const spec = await good('k.ini', ini('command = x', 'net = nat', 'net-allow = tcp 10.0.0.5:5432', 'net-allow = udp 10.0.0.53:53', 'net-deny = any 192.0.2.0/24'));
  t.same([spec.net, spec.netAllow.map((r) => r.text), spec.netDeny.map((r) => r.text), spec.netRate, spec.netConnections], ['nat', ['tcp 10.0.0.5:5432', 'udp 10.0.0.53:53'], ['any 192.0.2.0/24'], Infinity, 1024], 'defaults: no rate limit, 1024 connections');
  const limits = builtinLimits();
  limits.tyrantMinUid = { value: 1, from: 'the test' };
  const tyrant = { tyrant: true, limits, owner: { uid: 33, gid: 33 } };
  t.same(lines(await bad('k.ini', '[uwsgi]\ncommand = x\nnet = nat\nnet-allow = tcp 10.0.0.5:5432\n', tyrant)), [
    "k.ini:4: net-allow: expected no net-allow in tyrant mode, got one (private destinations are opened by the operator (net-allow in emperor.ini); net-deny is yours)",
  ]);
  t.equal((await good('k.ini', '[uwsgi]\ncommand = x\nnet = nat\nnet-deny = tcp 192.0.2.1:25\nnet-rate = 1mbit\n', tyrant)).netRate, 1e6, 'net-deny and a rate are the customer\'s to set');
});
