import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { cleanupCgroups, makeJail, requireJails, runDirFor, sh, specOf } from './fixtures/jail.js';

// Probes run inside real jails as an unprivileged vassal user (demo-alice / demo-bob from scripts/setup.sh).
if (requireJails(t)) {
  cleanupCgroups(t);

  t.test('only the jail\'s processes are visible; PID 1 is the init; host pids are unreachable', async (t) => {
    const jail = await makeJail(t, specOf('iso-pids'));
    const r = await sh(jail, `python3 -c "import os; print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))"; tr -d '\\0' < /proc/1/cmdline; echo; kill -0 ${process.pid} 2>&1; echo "kill:$?"`);
    const [pids = '', init = '', ...rest] = r.stdout.split('\n');
    t.equal(pids, '[1, 2, 3]', 'only the init, the shell and the python probe');
    // "init" and NULs to the old length where the kernel refuses PR_SET_MM (no CAP_SYS_RESOURCE, as here).
    t.equal(init, 'init', 'PID 1 is the jail init, under a short neutral name: no host path, cgroup or argument');
    t.match(rest.join('\n'), /No such process[\s\S]*kill:1/, 'the host test process is unreachable');
  });

  t.test('uid and gid are the vassal\'s, every capability set is empty, NoNewPrivs is 1, seccomp is on', async (t) => {
    const jail = await makeJail(t, specOf('iso-creds'));
    const r = await sh(jail, 'id -u; id -g; id -G; grep -E "^(Cap|NoNewPrivs|Seccomp:)" /proc/self/status');
    const [uid, gid, groups] = r.stdout.split('\n');
    t.equal(Number(uid), jail.spec.uid);
    t.equal(Number(gid), jail.spec.gid);
    t.equal(groups?.trim(), String(jail.spec.gid), 'no supplementary groups');
    for (const cap of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) t.match(r.stdout, new RegExp(`${cap}:\\s+0000000000000000`), `${cap} is empty`);
    t.match(r.stdout, /NoNewPrivs:\s+1/);
    t.match(r.stdout, /Seccomp:\s+2/, 'filter mode');
  });

  t.test('io_uring is denied: io_uring_setup fails with EPERM', async (t) => {
    const jail = await makeJail(t, specOf('iso-uring'));
    // 425 is io_uring_setup on x86_64 and arm64 alike.
    const r = await sh(jail, `python3 -c "import ctypes, ctypes.util; libc = ctypes.CDLL(None, use_errno=True); p = ctypes.create_string_buffer(120); print(libc.syscall(425, 1, p), ctypes.get_errno())"`);
    t.equal(r.stdout.trim(), '-1 1', 'EPERM');
  });

  t.test('a setuid-root binary gains nothing', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'emperor-suid-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    chmodSync(dir, 0o755);
    copyFileSync('/usr/bin/id', join(dir, 'suid-id'));
    chmodSync(join(dir, 'suid-id'), 0o4755); // owned by root: setuid root
    const jail = await makeJail(t, specOf('iso-suid', `bind-ro = ${dir}:/suid`));
    const r = await sh(jail, 'ls -l /suid/suid-id >&2; /suid/suid-id -u; /suid/suid-id -ru');
    t.same(r.stdout.trim().split('\n').map(Number), [jail.spec.uid, jail.spec.uid], 'effective uid stays the vassal\'s');
  });

  t.test('/ is read-only; mount, umount, remount, pivot_root, chroot, mknod, unshare and setns all fail', async (t) => {
    const jail = await makeJail(t, specOf('iso-fs'));
    const probes: Array<[string, string]> = [
      ['write to /', 'touch /x'],
      ['write to /usr', 'touch /usr/x'],
      ['write to /etc', 'touch /etc/x'],
      ['remount / rw', 'mount -o remount,rw /'],
      ['remount / bind rw', 'mount -o remount,bind,rw /'],
      ['mount a tmpfs', 'mkdir -p /tmp/m && mount -t tmpfs none /tmp/m'],
      ['mount a new proc', 'mkdir -p /tmp/p && mount -t proc proc /tmp/p'],
      ['umount /proc', 'umount /proc'],
      ['umount -l /proc', 'umount -l /proc'],
      ['pivot_root', 'cd /tmp && mkdir -p old && /usr/sbin/pivot_root . old'],
      ['chroot', '/usr/sbin/chroot / /bin/true'],
      ['mknod a block device', '/usr/bin/mknod /tmp/sda b 8 0'],
      ['mknod a char device', 'mknod /tmp/null c 1 3'],
      ['unshare a user namespace', 'unshare -U true'],
      ['unshare -r', 'unshare -r true'],
      ['unshare a mount namespace', 'unshare -m true'],
      ['setns into PID 1', '/usr/bin/nsenter -t 1 -m /bin/true'],
      ['python unshare(CLONE_NEWUSER)', 'python3 -c "import os,sys; os.unshare(os.CLONE_NEWUSER)"'],
    ];
    for (const [what, cmd] of probes) {
      const r = await sh(jail, cmd);
      t.not(r.code, 0, `${what} fails (${(r.stderr.trim().split('\n').pop() ?? '').slice(0, 80)})`);
    }
    const r = await sh(jail, 'cat /proc/self/mountinfo');
    t.notMatch(r.stdout, /\/tmp\/m|\/tmp\/p/, 'nothing got mounted');
  });

  t.test('/proc/sys, /proc/sysrq-trigger and the like are not writable; /proc/kcore gives nothing', async (t) => {
    const jail = await makeJail(t, specOf('iso-proc'));
    for (const f of ['/proc/sys/kernel/hostname', '/proc/sys/kernel/core_pattern', '/proc/sys/vm/drop_caches']) {
      const r = await sh(jail, `echo x > ${f}`);
      t.not(r.code, 0, `${f} is not writable`);
    }
    // sysrq-trigger is covered with /dev/null where the kernel lets the mount through (a write then succeeds
    // and goes nowhere); else the write fails. Either way it never reaches the kernel.
    const sysrq = await sh(jail, 'if echo x > /proc/sysrq-trigger 2>/dev/null; then stat -c "written %t:%T" /proc/sysrq-trigger; else echo refused; fi');
    t.match(sysrq.stdout.trim(), /^(refused|written 1:3)$/, `/proc/sysrq-trigger is refused or the null device: ${sysrq.stdout.trim()}`);
    for (const f of ['/proc/kcore', '/proc/keys', '/proc/timer_list', '/proc/kallsyms']) {
      const r = await sh(jail, `head -c 64 ${f} 2>/dev/null | wc -c`);
      t.equal(r.stdout.trim(), '0', `${f} gives nothing`);
    }
    const r = await sh(jail, 'grep -E " /proc/(sys|irq|bus|fs) " /proc/self/mountinfo');
    t.match(r.stdout, / \/proc\/sys [^-]*\bro\b/, '/proc/sys is a read-only mount');
  });

  t.test('the hostname is the vassal\'s and cannot be changed', async (t) => {
    const jail = await makeJail(t, specOf('iso-uts', 'hostname = alice-web'));
    const r = await sh(jail, 'hostname; hostname evil 2>&1; echo "rc:$?"; hostname');
    const lines = r.stdout.trim().split('\n');
    t.equal(lines[0], 'alice-web');
    t.match(r.stdout, /rc:[1-9]/);
    t.equal(lines.at(-1), 'alice-web');
  });

  t.test('only lo exists; host services on 127.0.0.1 and host abstract unix sockets are unreachable', async (t) => {
    const tcp = createServer((s) => s.end('host secret\n'));
    await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
    const abstract = createServer((s) => s.end('host secret\n'));
    const name = `emperor-test-abstract-${process.pid}`;
    await new Promise<void>((r) => abstract.listen(`\0${name}`, r));
    t.teardown(() => {
      tcp.close();
      abstract.close();
    });
    const port = (tcp.address() as { port: number }).port;
    const jail = await makeJail(t, specOf('iso-net'));
    const r = await sh(jail, `ip -o link 2>/dev/null | awk '{print $2}' || true; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '`);
    t.same([...new Set(r.stdout.trim().split('\n').map((l) => l.replace(/:$/, '')))], ['lo'], 'only lo');
    const up = await sh(jail, 'cat /sys/class/net/lo/operstate 2>/dev/null; grep -c . /proc/net/if_inet6 2>/dev/null; python3 -c "import socket; s=socket.socket(); s.bind((\'127.0.0.1\', 0)); s.listen(); c=socket.create_connection(s.getsockname()); print(\'lo works\')"');
    t.match(up.stdout, /lo works/, 'lo is up inside the jail');
    const tcpProbe = await sh(jail, `python3 -c "import socket; socket.create_connection(('127.0.0.1', ${port}), timeout=2)"`);
    t.not(tcpProbe.code, 0, 'the host\'s 127.0.0.1 service is unreachable');
    const unixProbe = await sh(jail, `python3 -c "import socket; s=socket.socket(socket.AF_UNIX); s.connect('\\0${name}')"`);
    t.not(unixProbe.code, 0, 'the host\'s abstract socket is unreachable');
    t.match(unixProbe.stderr, /ConnectionRefused|No such file/);
  });

  t.test('SysV IPC and POSIX mqueues of the host and of other jails are invisible', async (t) => {
    const hostShm = execFileSync('ipcmk', ['-M', '4096'], { encoding: 'utf8' }).match(/(\d+)/)?.[1];
    t.teardown(() => {
      if (hostShm) execFileSync('ipcrm', ['-m', hostShm]);
    });
    const a = await makeJail(t, specOf('iso-ipc-a'));
    const b = await makeJail(t, specOf('iso-ipc-b', 'uid = demo-bob'));
    const made = await sh(a, 'ipcmk -Q >/dev/null && ipcmk -M 1024 >/dev/null && touch /dev/mqueue/alice-q && ipcs -q -m | grep -c "^0x"; ls /dev/mqueue');
    t.match(made.stdout, /^2\nalice-q$/m, 'jail a has its own queue, segment and mqueue');
    const seen = await sh(b, 'ipcs -q -m -s | grep -c "^0x"; ls -A /dev/mqueue | wc -l');
    t.same(seen.stdout.trim().split('\n'), ['0', '0'], 'jail b sees none of them, nor the host\'s segment');
  });

  t.test('/tmp is private and writable; /dev holds only what it should; a pty can be allocated', async (t) => {
    const a = await makeJail(t, specOf('iso-tmp-a'));
    const b = await makeJail(t, specOf('iso-tmp-b', 'uid = demo-bob'));
    const w = await sh(a, 'echo secret > /tmp/alice-file && cat /tmp/alice-file && stat -c %a /tmp');
    t.same(w.stdout.trim().split('\n'), ['secret', '1777']);
    const other = await sh(b, 'ls -A /tmp');
    t.equal(other.stdout.trim(), '', 'another jail does not see it');
    t.throws(() => execFileSync('sh', ['-c', 'ls /tmp/alice-file'], { stdio: 'ignore' }), 'the host does not see it');
    const dev = await sh(a, 'ls -A /dev | tr "\\n" " "');
    t.equal(dev.stdout.trim(), 'fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero');
    const pts = await sh(a, 'ls -A /dev/pts | tr "\\n" " "');
    t.equal(pts.stdout.trim(), 'ptmx', 'a private devpts: no host pty is visible');
    const tty = await sh(a, 'tty; test -c "$(tty)" && echo exists-in-jail', { pty: true, stdio: ['ignore', 'pipe', 'pipe'] });
    t.match(tty.stdout, /\/dev\/pts\/\d+\r?\nexists-in-jail/, 'the pty is a device of the jail');
  });

  t.test('only the intended fds are open, and cwd is inside the root', async (t) => {
    const spec = specOf('iso-fds', 'socket = app.sock');
    const jail = await makeJail(t, spec, { socket: { path: '/tmp/app.sock', uid: 33, gid: spec.gid ?? 0, mode: 0o660 } }).catch((e: Error) => e);
    t.match(jail, { code: 'EMPEROR_ERR_JAIL_SETUP', message: /expected a socket path relative to the run dir, got \/tmp\/app\.sock/ }, 'an absolute socket path is refused');
    const plain = await makeJail(t, specOf('iso-fds-plain'));
    const r = await sh(plain, 'cd /tmp; python3 -c "import os; print(\\" \\".join(sorted(os.listdir(\\"/proc/self/fd\\"))))"; readlink /proc/self/cwd', { cwd: '/tmp' });
    const lines = r.stdout.trim().split('\n');
    t.equal(lines[0], '0 1 2 3', 'stdio, and the fd python opened to list /proc/self/fd: nothing inherited');
    t.equal(lines.at(-1), '/tmp', 'cwd is inside the jail');
  });

  t.test('the listening socket held by the shim arrives as fd 3 with LISTEN_FDS and LISTEN_PID', async (t) => {
    const spec = specOf('iso-listen', 'socket = app.sock');
    const runDir = runDirFor(t, spec);
    const jail = await makeJail(t, spec, { runDir, socket: { path: 'app.sock', uid: 33, gid: spec.gid ?? 0, mode: 0o660 } });
    const r = await sh(jail, 'echo "$LISTEN_FDS $LISTEN_PID $$"; readlink /proc/self/fd/3; ls -l /run/app.sock', { socket: true });
    const [vars = '', fd3 = '', ls = ''] = r.stdout.trim().split('\n');
    const [n, listenPid, shellPid] = vars.split(' ');
    t.equal(n, '1');
    t.equal(listenPid, shellPid, 'LISTEN_PID is the process itself, in the jail\'s pid namespace');
    t.match(fd3, /^socket:\[\d+\]$/);
    t.match(ls, /^srw-rw---- 1 www-data demo-alice .* \/run\/app\.sock$/, 'owner and mode as asked');
  });

  t.test('a second jail\'s files, processes, sockets and IPC are out of reach', async (t) => {
    const a = await makeJail(t, specOf('iso-two-a'));
    const b = await makeJail(t, specOf('iso-two-b', 'uid = demo-bob'));
    const sleeper = a.exec({ argv: ['sleep', '60'] });
    const { pid } = await sleeper.started;
    t.teardown(() => sleeper.kill('SIGKILL'));
    const srv = await sh(a, 'python3 -c "import socket,os; s=socket.socket(socket.AF_UNIX); s.bind(\'/run/a.sock\'); s.listen(); print(\'ok\')"');
    t.match(srv.stdout, /ok/);
    const probe = await sh(b, `ps -e -o comm= | grep -c "^sleep$"; kill -0 ${pid} 2>&1; ls /run; ls ${a.spec.home} 2>&1 | head -1`);
    const lines = probe.stdout.trim().split('\n');
    t.equal(lines[0], '0', 'jail b does not see jail a\'s processes');
    t.match(probe.stdout, /No such process/, 'nor can it signal them by host pid');
    t.notMatch(probe.stdout, /a\.sock/, 'jail b\'s /run is its own');
    t.match(probe.stdout, /No such file or directory/, 'jail a\'s home is not mounted in jail b');
  });

  t.test('ptrace of the init, and of anything outside the jail, fails', async (t) => {
    const jail = await makeJail(t, specOf('iso-ptrace'));
    const ptrace = (pid: string) => `python3 -c "import ctypes,sys; libc=ctypes.CDLL(None, use_errno=True); r=libc.ptrace(16, ${pid}, 0, 0); print(r, ctypes.get_errno())"`;
    const init = await sh(jail, ptrace('1'));
    t.equal(init.stdout.trim(), '-1 1', 'PTRACE_ATTACH to PID 1: EPERM');
    const host = await sh(jail, ptrace(String(process.pid)));
    t.match(host.stdout.trim(), /^-1 (1|3)$/, 'a host pid: EPERM or ESRCH');
    const mem = await sh(jail, 'cat /proc/1/environ; echo rc:$?; ls -l /proc/1/root 2>&1 | head -1');
    t.match(mem.stdout, /rc:1/, '/proc/1/environ is unreadable');
  });
}
