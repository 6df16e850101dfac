import { readFileSync } from 'node:fs';
import t from 'tap';
import { requireJails, startEmperor } from './fixtures/emperor.js';
import { asCustomer } from './fixtures/hostile.js';
import { publicCheckout } from './fixtures/public-checkout.js';

if (requireJails(t)) {
  t.test('inside the jail the customer sees and reloads their own vassal with the same CLI, and nothing else', async (t) => {
    const checkout = publicCheckout(t);
    const e = await startEmperor(t);
    e.write('own.ini', '[uwsgi]', 'uid = demo-alice', 'command = echo app started; sleep 300', `bind-ro = ${checkout}:/emperor`);
    e.write('other.ini', '[uwsgi]', 'uid = demo-bob', 'command = sleep 300');
    const first = await e.waitFor((x) => x.vassal === 'own' && x.event === 'spawned');
    await e.waitFor((x) => x.vassal === 'other' && x.event === 'spawned');
    const jail = e.emperor.vassals.get('own')?.jail;
    const cli = async (...args: string[]) => {
      const p = jail?.exec({ argv: ['/emperor/node_modules/.bin/emperor', ...args], env: { PATH: '/usr/bin:/bin' } });
      let stdout = '';
      let stderr = '';
      p?.subprocess.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
      p?.subprocess.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
      const exit = await p?.exited;
      return { code: exit?.code, stdout, stderr };
    };
    const st = await cli('status', '--json');
    t.equal(st.code, 0, st.stderr);
    t.match(JSON.parse(st.stdout), [{ name: 'own', state: 'running' }]);
    t.equal((JSON.parse(st.stdout) as unknown[]).length, 1, 'only their own vassal is listed');
    const other = await cli('status', 'other');
    t.equal(other.code, 1);
    t.equal(other.stderr, 'emperor: no vassal named other\n', 'another customer\'s vassal does not exist from here');
    const stop = await cli('stop', 'own');
    t.equal(stop.code, 1);
    t.match(stop.stderr, /only reload and restart are allowed from inside a vassal/);
    const logs = await cli('logs', 'own');
    t.equal(logs.stdout, 'app started\n', 'their app\'s log');
    const n = e.events.length;
    const reload = await cli('reload', 'own');
    t.equal(reload.code, 0, reload.stderr);
    const reloaded = await e.waitFor((x) => x.vassal === 'own' && x.event === 'reloaded', n);
    t.not(reloaded.pid, first.pid, 'the app was reloaded');
    const explicit = await cli('status', '--json', '--run-dir', '/run');
    t.equal(explicit.code, 0);
    // What the customer reads names nothing of the host: the pid is the jail's, no shim or init pid, the
    // file without its host directory.
    const view = (JSON.parse(explicit.stdout) as Array<{ pid: number; jail: unknown; file: string }>)[0];
    const inJail = jail?.exec({ argv: ['/bin/sh', '-c', 'for p in /proc/[0-9]*; do tr "\\\\0" " " < $p/cmdline | grep -q "^/bin/sh -c echo app started" && echo ${p#/proc/}; done'], env: { PATH: '/usr/bin:/bin' } });
    let sleepPid = '';
    inJail?.subprocess.stdout?.on('data', (d: Buffer) => (sleepPid += d.toString()));
    await inJail?.exited;
    t.equal(String(view?.pid), sleepPid.trim(), 'the app\'s pid as the jail numbers it');
    t.not(view?.pid, e.emperor.vassals.get('own')?.pid, 'not the host pid');
    t.same(view?.jail, { init: 1 });
    t.equal(view?.file, 'own.ini');
    t.notMatch(explicit.stdout, e.root, 'no host path of the emperor\'s');
    t.notMatch(explicit.stdout, /\/sys\/fs\/cgroup/);
    // From the host, as bob: alice's customer socket refuses him at the kernel level (0600, owned by alice).
    const { spawn } = await import('node:child_process');
    const bob = spawn('setpriv', ['--reuid', 'demo-bob', '--regid', 'demo-bob', '--init-groups', '/usr/bin/python3', '-c', `import socket; socket.socket(socket.AF_UNIX).connect(${JSON.stringify(e.socketOf('own', 'control.sock'))})`], { env: { PATH: '/usr/bin:/bin' } });
    let err = '';
    bob.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise((r) => bob.on('close', r));
    t.not(code, 0);
    t.match(err, /PermissionError/, 'another customer cannot use it');
  });

  t.test('a hostile customer cannot find or reach their jail\'s shim control socket (the emperor\'s line to the shim): not by path, not in their namespaces, not by an inherited fd', async (t) => {
    const e = await startEmperor(t);
    e.write('own.ini', '[uwsgi]', 'uid = demo-alice', 'socket = app.sock', 'command = sleep 600', 'attach-daemon = sleep 601');
    await e.waitFor((x) => x.vassal === 'own' && x.event === 'spawned');
    const jail = e.emperor.vassals.get('own')?.jail;
    const path = jail?.controlPath ?? '';
    t.match(path, /\/shims\/own\.sock$/);
    // The host's view: the control socket's inodes (the listener and the emperor's accepted connection).
    const inodes = readFileSync('/proc/net/unix', 'utf8').split('\n').filter((l) => l.endsWith(` ${path}`)).map((l) => l.trim().split(/\s+/)[6]);
    t.ok(inodes.length >= 2, `the shim listens and the emperor is connected (${inodes.length} sockets at ${path})`);
    const r = await asCustomer(jail, `
import os, socket
found = []
for root, dirs, files in os.walk('/', onerror=lambda e: None):
    if root.startswith(('/proc', '/sys')):
        dirs[:] = []
        continue
    for f in files:
        if f.endswith('.sock') and 'shims' in root:
            found.append(os.path.join(root, f))
print('found', found)
for target in (${JSON.stringify(path)}, '/run/shims/own.sock', '/run/emperor/shims/own.sock'):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(target)
        print('connected', target)
    except OSError as e:
        print('refused', target, e.strerror)
try:
    s = socket.socket(socket.AF_UNIX)
    s.connect('\\0' + ${JSON.stringify(path)})
    print('connected abstract')
except OSError as e:
    print('refused abstract', e.strerror)
# Every fd of every process the customer can see: socket inodes.
inodes = set()
for p in os.listdir('/proc'):
    if not p.isdigit():
        continue
    try:
        for fd in os.listdir('/proc/%s/fd' % p):
            l = os.readlink('/proc/%s/fd/%s' % (p, fd))
            if l.startswith('socket:['):
                inodes.add(l[8:-1])
    except OSError:
        pass
print('inodes', ' '.join(sorted(inodes)))
print('unix', ' '.join(l.split()[-1] for l in open('/proc/net/unix').read().splitlines()[1:] if len(l.split()) > 7))
`);
    t.match(r.stdout, /^found \[\]$/m, `no shim socket anywhere in the jail's tree: ${r.stderr}`);
    t.notMatch(r.stdout, /^connected/m, 'no connection by any path, abstract name included');
    t.match(r.stdout, new RegExp(`^refused ${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} No such file or directory$`, 'm'), 'the host path does not exist in the jail');
    const seen = /^inodes (.*)$/m.exec(r.stdout)?.[1]?.split(' ') ?? [];
    t.ok(seen.length > 0, 'the customer does see sockets of their own (the app\'s listening socket, fd 3)');
    t.same(seen.filter((i) => inodes.includes(i)), [], 'none of them is the shim\'s control socket or the emperor\'s connection to it');
    t.notMatch(/^unix (.*)$/m.exec(r.stdout)?.[1] ?? '', /shims/, 'nor is it among the unix sockets of the jail\'s network namespace');
  });
}
