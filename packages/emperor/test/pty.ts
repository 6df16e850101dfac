import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, readdirSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { frame } from '@emperor/pty';
import { requireJails, startEmperor } from './fixtures/emperor.js';
import { asCustomer } from './fixtures/hostile.js';
import { publicCheckout } from './fixtures/public-checkout.js';
import { run, SYSTEM_PATH } from './fixtures/run.js';


/** A raw urouter client: sends frames, collects raw output until the router closes or `ms` pass. */
const session = (path: string, frames: Buffer[], ms = 3000, spacingMs = 300): Promise<string> =>
  new Promise((resolve) => {
    const s = connect(path);
    let out = '';
    s.on('data', (d: Buffer) => (out += d.toString()));
    s.on('connect', async () => {
      for (const f of frames) {
        s.write(f);
        await new Promise((r) => setTimeout(r, spacingMs));
      }
    });
    const done = () => resolve(out);
    s.on('close', done);
    s.on('error', done);
    setTimeout(() => {
      s.destroy();
      done();
    }, ms);
  });
const type = (text: string) => frame(0, Buffer.from(text));

if (requireJails(t)) {
  t.test('each connection gets a login shell inside the jail: its tty exists there, ps shows only the jail, job control works', async (t) => {
    const e = await startEmperor(t);
    e.write('sh1.ini', '[uwsgi]', 'uid = demo-alice', 'command = sleep 300', 'hostname = sh1-box');
    await e.waitFor((x) => x.vassal === 'sh1' && x.event === 'spawned');
    const out = await session(e.socketOf('sh1', 'pty.sock'), [
      frame(100, undefined, 40), frame(101, undefined, 120),
      type('echo T=$(tty); test -c $(tty) && echo TTY-IN-JAIL; stty size; hostname; id -un\r'),
      type('ps -e -o comm= | sort | tr "\\n" " "; echo\r'),
      type('sleep 100 & jobs; kill %1; echo JOBS-OK\r'),
      type('exit\r'),
    ]);
    t.match(out, /T=\/dev\/pts\/\d+/);
    t.match(out, /TTY-IN-JAIL/);
    t.match(out, /\r\n40 120\r\n/, 'the window size arrived');
    t.match(out, /sh1-box\r\ndemo-alice/);
    t.match(out, /bash init ps sh sleep sort tr \r/, 'only the jail\'s processes: init, the app (sh, sleep), this shell');
    t.match(out, /\[1\]\+\s+Running\s+sleep 100 &[\s\S]*JOBS-OK/);
  });

  t.test('UTF-8 passes through the pty unchanged, both ways', async (t) => {
    const e = await startEmperor(t);
    e.write('utf.ini', '[uwsgi]', 'uid = demo-alice', 'command = sleep 300', 'env = LANG=C.UTF-8');
    await e.waitFor((x) => x.vassal === 'utf' && x.event === 'spawned');
    const out = await session(e.socketOf('utf', 'pty.sock'), [type('printf "%s" "héllo ✓ 日本" | od -An -tx1 | tr -d " \\n"; echo; exit\r')]);
    t.match(out, /68c3a96c6c6f20e29c9320e697a5e69cac/, 'the bytes typed reach the shell as UTF-8');
    t.match(out, /héllo ✓ 日本/, 'and the echo comes back as UTF-8');
  });

  t.test('uwsgi --pty-uconnect (the real uWSGI client) works against the router', async (t) => {
    const e = await startEmperor(t);
    e.write('uw.ini', '[uwsgi]', 'uid = demo-alice', 'command = sleep 300');
    await e.waitFor((x) => x.vassal === 'uw' && x.event === 'spawned');
    const script = `(sleep 1; printf 'echo VIA-UWSGI-$((6*7))\\r'; sleep 1; printf 'exit\\r'; sleep 1) | timeout 10 script -qfc "uwsgi --plugin pty --pty-uconnect ${e.socketOf('uw', 'pty.sock')}" /dev/null`;
    const r = await run('sh', ['-c', script]);
    t.match(r.stdout, /\[pty\] connected\./, r.stdout + r.stderr);
    t.match(r.stdout, /VIA-UWSGI-42/);
  });

  t.test('emperor pty: commands over plain pipes, exit status, stdin; a customer cannot reach another customer', async (t) => {
    const emperorBin = `${publicCheckout(t)}/node_modules/.bin/emperor`;
    const e = await startEmperor(t);
    e.write('ca.ini', '[uwsgi]', 'uid = demo-alice', 'command = sleep 300');
    e.write('cb.ini', '[uwsgi]', 'uid = demo-bob', 'command = sleep 300');
    await e.waitFor((x) => x.vassal === 'ca' && x.event === 'spawned');
    await e.waitFor((x) => x.vassal === 'cb' && x.event === 'spawned');
    const as = (user: string, command: string | undefined, input = '') =>
      // env -i: the exact environment sshd would give, and none of the test runner's NODE_OPTIONS.
      run('setpriv', ['--reuid', user, '--regid', user, '--init-groups', 'env', '-i', `PATH=${SYSTEM_PATH}`, ...(command ? [`SSH_ORIGINAL_COMMAND=${command}`] : []), emperorBin, 'pty', '--run-dir', `${e.root}/run`], { input });
    const r = await as('demo-alice', 'id -un; cat; echo oops >&2; exit 7', 'from stdin\n');
    t.equal(r.stdout, 'demo-alice\nfrom stdin\n');
    t.equal(r.stderr, 'oops\n');
    t.equal(r.status, 7, 'the exit status reaches the client');
    const b = await as('demo-bob', 'id -un');
    t.equal(b.stdout, 'demo-bob\n', 'bob lands in his own vassal');
    const steal = await run('setpriv', ['--reuid', 'demo-bob', '--regid', 'demo-bob', '--init-groups', 'env', '-i', `PATH=${SYSTEM_PATH}`, emperorBin, 'pty', '--run-dir', `${e.root}/run`, '--vassal', 'ca']);
    t.equal(steal.status, 1);
    t.match(steal.stderr, /^emperor: expected a vassal of yours named ca, got none \(yours: cb\)/);
    const direct = await run('setpriv', ['--reuid', 'demo-bob', '--regid', 'demo-bob', '--init-groups', 'python3', '-c', `import socket; socket.socket(socket.AF_UNIX).connect(${JSON.stringify(e.socketOf('ca', 'pty.sock'))})`]);
    t.not(direct.status, 0);
    t.match(direct.stderr, /PermissionError/, `alice's pty socket refuses bob at the kernel level: ${direct.stderr}`);
  });

  t.test('emperor pty enters only what the emperor lists for the caller\'s uid: planted sockets and symlinks change nothing', async (t) => {
    const emperorBin = `${publicCheckout(t)}/node_modules/.bin/emperor`;
    const e = await startEmperor(t);
    e.write('la.ini', '[uwsgi]', 'uid = demo-alice', 'command = sleep 300');
    e.write('lb.ini', '[uwsgi]', 'uid = demo-bob', 'command = sleep 300');
    await e.waitFor((x) => x.vassal === 'la' && x.event === 'spawned');
    await e.waitFor((x) => x.vassal === 'lb' && x.event === 'spawned');
    const uid = (u: string) => Number(execFileSync('id', ['-u', u], { encoding: 'utf8' }).trim());
    const logins = join(e.root, 'run', 'logins');
    const top = statSync(logins);
    t.equal(top.uid, 0);
    t.equal(top.mode & 0o777, 0o711, 'nobody lists the uids');
    const aliceDir = lstatSync(join(logins, String(uid('demo-alice'))));
    t.equal(aliceDir.uid, uid('demo-alice'));
    t.equal(aliceDir.mode & 0o777, 0o500, 'alice reads her own list; nobody but root writes it');
    t.same(readdirSync(join(logins, String(uid('demo-alice')))), ['la']);
    // Alice, from inside her jail, plants what used to catch or block bob's login: a symlink to bob's pty
    // socket and a listening socket of her own, both next to her pty socket (a run dir bob's client once scanned).
    const bobPty = e.socketOf('lb', 'pty.sock');
    const plant = await asCustomer(e.emperor.vassals.get('la')?.jail, `
import os, socket, time, sys
os.symlink(${JSON.stringify(bobPty)}, '/run/bob-pty.sock')
s = socket.socket(socket.AF_UNIX); s.bind('/run/fake-pty.sock'); os.chmod('/run/fake-pty.sock', 0o666); s.listen()
print('planted'); sys.stdout.flush()
`);
    t.match(plant.stdout, /planted/);
    const as = (user: string, command: string, ...extra: string[]) =>
      run('setpriv', ['--reuid', user, '--regid', user, '--init-groups', 'env', '-i', `PATH=${SYSTEM_PATH}`, `SSH_ORIGINAL_COMMAND=${command}`, emperorBin, 'pty', '--run-dir', `${e.root}/run`, ...extra]);
    const b = await as('demo-bob', 'id -un; hostname');
    t.equal(b.status, 0, b.stderr);
    t.equal(b.stdout, 'demo-bob\nlb\n', 'bob lands in his own vassal, not blocked nor redirected');
    // Bob cannot read alice's list, nor write his own.
    const peek = await run('setpriv', ['--reuid', 'demo-bob', '--regid', 'demo-bob', '--init-groups', 'sh', '-c', `ls ${logins}/${uid('demo-alice')} 2>&1; ls ${logins} 2>&1; ln -s /tmp ${logins}/${uid('demo-bob')}/x 2>&1; true`]);
    t.match(peek.stdout, /ls: cannot open directory .*Permission denied[\s\S]*ls: cannot open directory .*Permission denied[\s\S]*Permission denied/, peek.stdout);
    // Alice makes her own list writable and adds an entry: her own logins ignore it (only root's entries count).
    const self = await run('setpriv', ['--reuid', 'demo-alice', '--regid', 'demo-alice', '--init-groups', 'sh', '-c', `chmod u+w ${logins}/${uid('demo-alice')} && ln -s ${bobPty} ${logins}/${uid('demo-alice')}/evil && echo ok`]);
    t.match(self.stdout, /ok/);
    const a = await as('demo-alice', 'id -un');
    t.equal(a.stdout, 'demo-alice\n', 'alice\'s own planted entry is not an entry');
    // A stopped vassal leaves the list; the emperor's stop leaves nothing.
    e.remove('lb.ini');
    await e.waitFor((x) => x.vassal === 'lb' && x.event === 'removed');
    t.notOk(existsSync(join(logins, String(uid('demo-bob')))), 'bob\'s list went with his last vassal');
    const gone = await as('demo-bob', 'id -un');
    t.match(gone.stderr, /expected a vassal running as uid \d+, got none/);
    await e.emperor.stop();
    t.notOk(existsSync(logins), 'the emperor\'s stop removes the login directory');
  });

  t.test('the shim hands the pty master to the emperor: the jail holds only its terminal, the customer owns it, sessions leave no fd behind', async (t) => {
    const e = await startEmperor(t);
    e.write('pm.ini', '[uwsgi]', 'uid = demo-alice', 'command = sleep 300');
    await e.waitFor((x) => x.vassal === 'pm' && x.event === 'spawned');
    const path = e.socketOf('pm', 'pty.sock');
    const fds = () => readdirSync('/proc/self/fd').length;
    // Input sent at once, before the shell is even up, is kept and reaches it.
    const fast = await session(path, [type('echo FAST-$((40+2)); exit\r')], 3000, 0);
    t.match(fast, /FAST-42/, 'keys typed before the shell started reach it');
    const before = fds();
    for (let i = 0; i < 10; i++) await session(path, [type('exit\r')], 3000, 0);
    // Each session's master was the emperor's fd: every one is closed once its session ended.
    await new Promise((r) => setTimeout(r, 300));
    t.ok(fds() <= before, `the emperor's fds after 10 sessions: ${fds()}, before: ${before}`);
    const out = await session(path, [
      // The customer, hunting for the master (or anything of the shim's) in every process of the jail.
      type('stat -c "OWNER=%U MODE=%a" $(tty); ls -l /proc/[0-9]*/fd/ 2>/dev/null | grep -c -e ptmx -e socket: | sed "s/^/LEAKED=/"; exit\r'),
    ], 3000, 0);
    t.match(out, /OWNER=demo-alice MODE=620/, 'the terminal belongs to the customer, mode 620 (as sshd leaves it)');
    t.match(out, /LEAKED=0\r/, 'no process of the jail holds a pty master or a socket of the emperor\'s or the shim\'s');
  });

  t.test('bad clients get a clear error and the router keeps serving', async (t) => {
    const e = await startEmperor(t);
    e.write('bad.ini', '[uwsgi]', 'uid = demo-alice', 'command = sleep 300');
    await e.waitFor((x) => x.vassal === 'bad' && x.event === 'spawned');
    const path = e.socketOf('bad', 'pty.sock');
    const garbage = await session(path, [Buffer.from([0, 0, 0, 250])], 2000);
    t.match(garbage, /emperor pty: expected a frame type 0, 1-64, 100, 101, 200 or 201, got 250; closing/);
    await session(path, [Buffer.from([0, 9])], 300); // closed mid-frame
    const huge = await session(path, [frame(100, undefined, 65535), frame(101, undefined, 65535), type('stty size; exit\r')]);
    t.match(huge, /\r1000 1000\r\n/, 'an absurd window size is clamped');
    const fine = await session(path, [type('echo STILL-SERVING; exit\r')]);
    t.match(fine, /STILL-SERVING/);
  });
}
