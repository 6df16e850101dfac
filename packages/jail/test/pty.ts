import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import t from 'tap';
import { controlPathOf, Jail, JailCgroups, ptyMaxOf, type JailPty } from '@emperor/jail';
import { CGROUP_PARENT, cleanupCgroups, CONTROL_DIR, makeJail, requireJails, runDirFor, specOf } from './fixtures/jail.js';

/** What the terminal shows until `pattern` appears (or the pty closes, or 5 s pass). */
const until = (pty: JailPty, pattern: RegExp): Promise<string> =>
  new Promise((resolve) => {
    let out = '';
    const done = () => {
      clearTimeout(timer);
      pty.terminal.off('data', on);
      resolve(out);
    };
    const on = (d: Buffer) => {
      out += d.toString();
      if (pattern.test(out)) done();
    };
    const timer = setTimeout(done, 5000);
    pty.terminal.on('data', on);
    pty.terminal.once('close', done);
  });

if (requireJails(t)) {
  cleanupCgroups(t);

  t.test('Jail.openPty: the shim starts a login on a pty of the jail and hands its master over', async (t) => {
    const jail = await makeJail(t, specOf('ptyj', 'hostname = ptyj-box'));
    const pty = await jail.openPty({ argv: ['/bin/sh'], rows: 33, cols: 111, env: { PS1: '$ ' } });
    t.ok(pty.process.pid, 'the process has a host pid');
    pty.terminal.write('stty size; id -u; hostname; tty\r');
    const first = await until(pty, /\/dev\/pts\/\d+/);
    t.match(first, /33 111\r\n/, 'it starts with the size asked for');
    t.match(first, new RegExp(`\\r\\n${jail.spec.uid}\\r\\nptyj-box\\r\\n/dev/pts/\\d+`), 'as the vassal user, in the jail, on the jail\'s devpts');
    t.ok(pty.resize(50, 160), 'a resize is an ioctl on the master');
    pty.terminal.write('stty size\r');
    t.match(await until(pty, /50 160/), /50 160/, 'the shell sees the new size');
    pty.terminal.write('exit 5\r');
    t.match(await pty.process.exited, { code: 5, signal: null }, 'its exit comes from the shim');
    pty.close();
    t.notOk(pty.resize(10, 10), 'a closed pty is not resized');
  });

  t.test('closing the master hangs the pty up; a command that cannot run and a bad request are errors, not hangs', async (t) => {
    const jail = await makeJail(t, specOf('ptyk'));
    const pty = await jail.openPty({ argv: ['/bin/sh', '-c', 'echo UP; sleep 300'], rows: 24, cols: 80 });
    await until(pty, /UP/);
    pty.close();
    t.match(await pty.process.exited, { signal: 1 }, 'the session got SIGHUP, as from a closed terminal');
    const missing = await jail.openPty({ argv: ['/nope'], rows: 24, cols: 80 });
    const exit = await missing.process.exited;
    t.equal(exit.code, 127);
    t.match(exit.error?.message, /exec \/nope/, 'the exec error names the command');
    missing.close();
    await t.rejects(jail.openPty({ argv: ['/bin/sh'], rows: 0, cols: 80 }), { code: 'EMPEROR_ERR_JAIL_SETUP', message: /expected pty ID ROWS COLS/ });
    await t.rejects(jail.openPty({ argv: ['/bin/sh'], rows: 24, cols: 80, env: { BIG: 'x'.repeat(300 * 1024) } }), { message: /expected a shim request of at most 262144 bytes/ });
    await jail.stop();
    await t.rejects(jail.openPty({ argv: ['/bin/sh'], rows: 24, cols: 80 }), { code: 'EMPEROR_ERR_JAIL_STOPPED' });
  });

  t.test('a customer who opens ptys in a loop stops at their jail\'s own bound; a neighbour\'s login still gets one', async (t) => {
    const hogSpec = specOf('ptyhog', 'pty-sessions = 2');
    const hog = await makeJail(t, hogSpec);
    const neighbour = await makeJail(t, specOf('ptyok'));
    // As the customer, inside the jail: ptys until the kernel says no, then hold them.
    const p = hog.exec({ argv: ['python3', '-c', 'import os, sys, time\nfds = []\ntry:\n    while True: fds.append(os.openpty())\nexcept OSError as e:\n    print(len(fds), e.errno, flush=True)\ntime.sleep(60)\n'] });
    const line = await new Promise<string>((resolve) => {
      let out = '';
      p.subprocess.stdout?.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) resolve(out.trim());
      });
      void p.exited.then(() => resolve(out.trim()));
    });
    t.equal(line, `${ptyMaxOf(hogSpec)} 28`, `it got ${ptyMaxOf(hogSpec)} ptys (2 x pty-sessions + 16), then ENOSPC`);
    const login = await neighbour.openPty({ argv: ['/bin/sh', '-c', 'tty'], rows: 24, cols: 80 });
    t.match(await until(login, /\/dev\/pts\/\d+/), /\/dev\/pts\/\d+/, 'the neighbour\'s login has its pty');
    login.close();
    await t.rejects(hog.openPty({ argv: ['/bin/sh'], rows: 24, cols: 80 }), { message: /ENOSPC|No space left/ }, 'the hog\'s own next login is refused, saying why');
    p.kill('SIGKILL');
    await p.exited;
  });

  t.test('a jail whose shim predates ptys (an older emperor built it): a login is refused saying what to do, and no pty request reaches that shim', async (t) => {
    // A stand-in for such a shim: it answers state as before issue 11 (no "pty"), and counts connections.
    const spec = specOf('ptyold');
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const start = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
    const info = { label: '', shim: process.pid, shim_start: start, init: process.pid, init_start: start, socket_fd: -1, born_in_cgroup: true };
    let connections = 0;
    const server = createServer((sock) => {
      connections++;
      sock.on('error', () => {});
      sock.on('data', () => sock.write(`${JSON.stringify({ event: 'state', ...info })}\n{"event":"state-end"}\n`));
    });
    await new Promise<void>((r) => server.listen(controlPathOf(CONTROL_DIR, spec.name), r));
    const cgroups = JailCgroups.create(spec.name, CGROUP_PARENT); // what the old jail would have
    const adopted = await Jail.adopt(spec, { runDir: runDirFor(t, spec), cgroupParent: CGROUP_PARENT, controlDir: CONTROL_DIR });
    t.ok(adopted, 'adopted');
    await t.rejects(adopted!.jail.openPty({ argv: ['/bin/sh'], rows: 24, cols: 80 }), { code: 'EMPEROR_ERR_JAIL_SETUP', message: /expected a shim that opens ptys, got one built by an older emperor/, hint: /emperor restart ptyold/ });
    t.equal(connections, 1, 'only the emperor\'s own connection: none that the old shim would have taken for a new emperor\'s');
    t.notOk(adopted!.jail.replaced, 'the emperor keeps the jail');
    adopted!.jail.detach();
    await new Promise((r) => server.close(r));
    await cgroups.drainAndRemove();
  });
}
