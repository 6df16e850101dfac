import t from 'tap';
import { requireJails, startEmperor } from './fixtures/emperor.js';
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
}
