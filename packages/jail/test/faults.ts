import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { detectHierarchies, Jail } from '../src/index.js';
import { cleanupCgroups, CGROUP_PARENT, CONTROL_DIR, makeJail, requireJails, runDirFor, sh, specOf } from './fixtures/jail.js';

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Waits (bounded) until none of the pids is alive. */
const allGone = async (pids: number[]): Promise<boolean> => {
  for (let i = 0; i < 200; i++) {
    if (pids.every((p) => !alive(p))) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return false;
};

if (requireJails(t)) {
  cleanupCgroups(t);

  t.test('SIGKILL of the shim ends every process of the jail', async (t) => {
    const jail = await makeJail(t, specOf('fault-shim'));
    const p = jail.exec({ argv: ['sleep', '300'] });
    const { pid } = await p.started;
    process.kill(jail.shimPid, 'SIGKILL');
    t.ok(await allGone([jail.shimPid, jail.initPid, pid]), 'shim, init and the sleeper are gone');
    await jail.exited;
    t.notOk(jail.running);
    t.same(jail.cgroups.dirs.filter((d) => existsSync(d)), [], 'its cgroups are removed');
  });

  t.test('SIGKILL of the init ends every process of the jail', async (t) => {
    const jail = await makeJail(t, specOf('fault-init'));
    const p = jail.exec({ argv: ['sleep', '300'] });
    const { pid } = await p.started;
    process.kill(jail.initPid, 'SIGKILL');
    t.ok(await allGone([jail.initPid, pid, jail.shimPid]), 'init, the sleeper and then the shim are gone');
    t.same(await jail.exited, { code: null, signal: 9 }, 'the shim reports how the init ended');
  });

  t.test('SIGKILL of the emperor leaves the jail and its supervised processes running; a new emperor adopts them through the shim', async (t) => {
    const spec = specOf('fault-parent');
    const runDir = runDirFor(t, spec);
    // A separate node process plays the emperor: it builds the jail, starts a supervised sleeper, prints the pids.
    const script = `
      const { parseVassalText } = await import(${JSON.stringify(new URL('../../config/dist/index.js', import.meta.url).href)});
      const { Jail } = await import(${JSON.stringify(new URL('../dist/index.js', import.meta.url).href)});
      const spec = parseVassalText('[uwsgi]\\nuid = demo-alice\\ncommand = true\\n', 'fault-parent.ini').spec;
      const jail = await Jail.create(spec, { runDir: ${JSON.stringify(runDir)}, cgroupParent: ${JSON.stringify(CGROUP_PARENT)}, controlDir: ${JSON.stringify(CONTROL_DIR)}, label: 'built by the first emperor' });
      const p = jail.start('app', { argv: ['sleep', '300'] });
      const { pid } = await p.started;
      console.log(JSON.stringify({ shim: jail.shimPid, init: jail.initPid, sleeper: pid, id: p.id }));
      setInterval(() => {}, 1000);`;
    const emperor = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const line = await new Promise<string>((resolve) => emperor.stdout.once('data', (d: Buffer) => resolve(d.toString())));
    const pids = JSON.parse(line) as { shim: number; init: number; sleeper: number; id: string };
    emperor.kill('SIGKILL');
    await new Promise((r) => emperor.once('exit', r));
    await new Promise((r) => setTimeout(r, 300));
    t.ok([pids.shim, pids.init, pids.sleeper].every(alive), 'the shim, the init and the sleeper run on without the emperor');
    const adopted = await Jail.adopt(spec, { runDir, cgroupParent: CGROUP_PARENT, controlDir: CONTROL_DIR });
    t.ok(adopted, 'the shim answers a new emperor');
    if (adopted === undefined) return;
    const { jail, processes } = adopted;
    t.teardown(() => jail.stop());
    t.same([jail.shimPid, jail.initPid, jail.label], [pids.shim, pids.init, 'built by the first emperor'], 'the same jail, with its label');
    t.same(processes.map((p) => [p.id, p.pid, p.running]), [[pids.id, pids.sleeper, true]], 'and the same sleeper, still running');
    const sleeper = processes[0];
    sleeper?.kill('SIGTERM');
    t.same(await sleeper?.exited, { code: null, signal: 15, error: undefined }, 'whose exit the new emperor learns');
    const next = jail.start('app', { argv: ['true'] });
    t.not(next.id, pids.id, 'ids go on from the ones the shim knew');
    t.same(await next.exited, { code: 0, signal: null, error: undefined }, 'and it starts new ones');
    await jail.stop();
    t.ok(await allGone([pids.shim, pids.init]), 'a stop through the shim ends the jail');
    t.notOk(jail.cgroups.dirs.some((d) => existsSync(d)), 'and its cgroups are removed');
  });

  t.test('a process flooding its output to the emperor is cut by the shim (16 KiB/s a process): it runs to its end, the emperor gets a bounded share', async (t) => {
    const jail = await makeJail(t, specOf('fault-flood'));
    let received = 0;
    const rss = process.memoryUsage().rss;
    const started = Date.now();
    const p = jail.start('touch', { argv: ['head', '-c', String(64 * 1024 * 1024), '/dev/zero'], output: 'emperor' });
    let garbled = 0;
    p.on('output', (_fd, d) => {
      received += d.length;
      garbled += d.filter((b) => b !== 0).length;
    });
    t.same(await p.exited, { code: 0, signal: null, error: undefined }, '64 MiB written: the writer was never blocked');
    t.equal(garbled, 0, 'what came through is what was written (zeros)');
    const seconds = (Date.now() - started) / 1000;
    t.ok(received > 0, `some came through (${received} bytes in ${seconds.toFixed(1)} s)`);
    t.ok(received <= 16384 * (Math.ceil(seconds) + 1), `at most 16 KiB a second (${received} bytes)`);
    t.ok(process.memoryUsage().rss - rss < 32 * 1024 * 1024, 'the emperor\'s memory did not follow');
    const q = jail.start('touch', { argv: ['echo', 'after'], output: 'emperor' });
    let text = '';
    q.on('output', (_fd, d) => (text += d.toString()));
    await q.exited;
    await new Promise((r) => setTimeout(r, 100));
    t.equal(text, 'after\n', 'another process\'s output is untouched');
  });

  t.test('what the shim forks gets the OOM score the shim was given, not the -1000 that spares the shim and the init', async (t) => {
    const jail = await makeJail(t, specOf('fault-oomadj'));
    const own = readFileSync('/proc/self/oom_score_adj', 'utf8').trim();
    // Lowering a score needs CAP_SYS_RESOURCE, which some hosts (this one's sandbox) withhold from root.
    const capEff = BigInt(`0x${/^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '0'}`);
    const spared = (capEff >> 24n) & 1n ? '-1000' : own;
    t.equal(readFileSync(`/proc/${jail.shimPid}/oom_score_adj`, 'utf8').trim(), spared, `the shim is spared where the host allows it (${spared})`);
    t.equal(readFileSync(`/proc/${jail.initPid}/oom_score_adj`, 'utf8').trim(), spared, 'the init too');
    const p = jail.start('app', { argv: ['sleep', '30'] });
    const { pid } = await p.started;
    t.equal(readFileSync(`/proc/${pid}/oom_score_adj`, 'utf8').trim(), own, `the app is killable (${own}, as the emperor)`);
    p.kill('SIGKILL');
    await p.exited;
  });

  t.test('a connection the shim drops (an emperor that fell behind) is made again: exits missed meanwhile are learned, the jail carries on', async (t) => {
    const jail = await makeJail(t, specOf('fault-behind'));
    const sleepers = Array.from({ length: 100 }, () => jail.start('app', { argv: ['sleep', '300'] }));
    await Promise.all(sleepers.map((p) => p.started));
    const victim = sleepers[0];
    // 100 state requests, each answered with 100 lines: megabytes the emperor does not read while its loop
    // is held, past what the shim keeps for it (1 MiB).
    const fds = () => readdirSync(`/proc/${jail.shimPid}/fd`).length;
    const before = fds();
    for (let i = 0; i < 300; i++) jail.resync();
    // Held (synchronously: nothing is read) until the shim has closed our connection, or 60 s.
    const held = Date.now();
    while (fds() >= before && Date.now() - held < 60_000) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    t.ok(fds() < before, 'the shim dropped the connection');
    process.kill(victim?.pid ?? 0, 'SIGKILL'); // an exit the shim reports while we are away
    const exit = await victim?.exited;
    t.same(exit, { code: null, signal: 9, error: undefined }, 'the missed exit is learned');
    t.equal(jail.reconnects, 1, 'the shim dropped the connection once, and it was made again');
    t.ok(jail.running, 'the jail is running');
    t.notOk(jail.replaced);
    const next = jail.start('app', { argv: ['true'] });
    t.same(await next.exited, { code: 0, signal: null, error: undefined }, 'and starts what is asked');
    for (const p of sleepers.slice(1)) p.kill('SIGKILL');
    t.same((await Promise.all(sleepers.slice(1).map((p) => p.exited))).map((e) => e.signal), Array(99).fill(9), 'every other sleeper\'s kill and exit went through');
  });

  t.test('a second connection takes the shim over: the first is told, lets go without touching the jail, and never connects back', async (t) => {
    const spec = specOf('fault-replaced');
    const first = await makeJail(t, spec);
    const p = first.start('app', { argv: ['sleep', '300'] });
    const { pid } = await p.started;
    const adopted = await Jail.adopt(spec, { runDir: runDirFor(t, spec), cgroupParent: CGROUP_PARENT, controlDir: CONTROL_DIR });
    t.ok(adopted);
    await first.exited;
    t.ok(first.replaced, 'the first learned it was replaced');
    t.ok(alive(pid) && alive(first.shimPid), 'the jail and its process run on');
    t.ok(first.cgroups.dirs.every((d) => existsSync(d)), 'with their cgroups');
    await new Promise((r) => setTimeout(r, 500));
    const sp = adopted?.processes[0];
    t.equal(sp?.pid, pid);
    sp?.kill('SIGKILL');
    t.equal((await sp?.exited)?.signal, 9, 'the second connection is still the shim\'s: it delivers the kill and hears the exit');
    await adopted?.jail.stop();
  });

  t.test('a shim that accepts but does not answer is not waited for without end; once it answers, it is adopted', async (t) => {
    const spec = specOf('fault-mute');
    const first = await makeJail(t, spec);
    const p = first.start('app', { argv: ['sleep', '300'] });
    const { pid } = await p.started;
    process.kill(first.shimPid, 'SIGSTOP');
    t.teardown(() => {
      try {
        process.kill(first.shimPid, 'SIGCONT');
      } catch {
        // gone already
      }
    });
    const options = { runDir: runDirFor(t, spec), cgroupParent: CGROUP_PARENT, controlDir: CONTROL_DIR, stateTimeoutMs: 500 };
    t.equal(await Jail.adopt(spec, options), undefined, 'a stopped shim: no adoption, after the timeout');
    process.kill(first.shimPid, 'SIGCONT');
    const adopted = await Jail.adopt(spec, options);
    t.equal(adopted?.processes[0]?.pid, pid, 'the same shim, answering again, is adopted with its process');
    await adopted?.jail.stop();
  });

  t.test('exec into a stopped jail fails with a clear, coded error', async (t) => {
    const jail = await makeJail(t, specOf('fault-stopped'));
    await jail.stop();
    t.throws(() => jail.exec({ argv: ['true'] }), { code: 'EMPEROR_ERR_JAIL_STOPPED', message: 'jail fault-stopped: expected a running jail, got a stopped one' });
  });

  t.test('the helper refuses to enter a pid that is not the jail init it was told about', async (t) => {
    const jail = await makeJail(t, specOf('fault-reuse'));
    const args = jail.enterArgs();
    args[2] = String(Number(args[2]) + 1); // wrong start time: as if the pid had been reused
    const helper = fileURLToPath(new URL('../../../native/build/emperor-jail', import.meta.url));
    const r = (() => {
      try {
        execFileSync(helper, ['exec', ...args, '--uid', '33', '--gid', '33', '--', '/bin/true'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
        return { status: 0, stderr: '' };
      } catch (e) {
        return e as { status: number; stderr: string };
      }
    })();
    t.equal(r.status, 125);
    t.match(r.stderr, /open the jail: jail init pid \d+ is not the expected process \(it ended and the pid was reused\)/);
  });

  t.test('a missing rootfs, or one whose /dev or /proc is a symlink, gives a coded error naming what to fix', async (t) => {
    const missing = specOf('fault-rootfs', 'rootfs = /nonexistent/distro');
    await t.rejects(Jail.create(missing, { runDir: '/tmp', cgroupParent: CGROUP_PARENT, controlDir: CONTROL_DIR }), {
      code: 'EMPEROR_ERR_JAIL_ROOTFS',
      message: 'rootfs /nonexistent/distro: expected a distro tree, got no such directory',
    });
    const distro = mkdtempSync(join(tmpdir(), 'emperor-distro-'));
    t.teardown(() => rmSync(distro, { recursive: true, force: true }));
    for (const d of ['usr', 'etc', 'proc']) mkdirSync(join(distro, d));
    symlinkSync('/dev', join(distro, 'dev'));
    const evil = specOf('fault-devlink', `rootfs = ${distro}`);
    await t.rejects(Jail.create(evil, { runDir: '/tmp', cgroupParent: CGROUP_PARENT, controlDir: CONTROL_DIR }), {
      code: 'EMPEROR_ERR_JAIL_ROOTFS',
      message: `rootfs ${distro}: expected /dev to be a plain directory, got a symlink to /dev`,
    });
    rmSync(join(distro, 'dev'));
    rmSync(join(distro, 'proc'), { recursive: true });
    symlinkSync('/proc', join(distro, 'proc'));
    await t.rejects(Jail.create(evil, { runDir: '/tmp', cgroupParent: CGROUP_PARENT, controlDir: CONTROL_DIR }), { code: 'EMPEROR_ERR_JAIL_ROOTFS', message: /expected \/proc to be a plain directory/ });
  });

  t.test('a distro rootfs is mounted read-only as the jail\'s root', async (t) => {
    // A tiny "distro": the host's /usr, and /bin -> usr/bin as merged-/usr distros have it.
    const distro = mkdtempSync(join(tmpdir(), 'emperor-distro-'));
    t.teardown(() => rmSync(distro, { recursive: true, force: true }));
    for (const d of ['usr', 'etc', 'var']) mkdirSync(join(distro, d));
    execFileSync('mount', ['--bind', '/usr', join(distro, 'usr')]);
    t.teardown(() => execFileSync('umount', [join(distro, 'usr')]));
    symlinkSync('usr/bin', join(distro, 'bin'));
    symlinkSync('usr/lib', join(distro, 'lib'));
    symlinkSync('usr/lib64', join(distro, 'lib64'));
    symlinkSync('/run', join(distro, 'var', 'run'));
    const jail = await makeJail(t, specOf('fault-distro', `rootfs = ${distro}`));
    const r = await sh(jail, 'echo $(ls /); ls /etc | wc -l; touch /usr/x 2>&1 | grep -c Read-only; readlink /var/run');
    const [root, etc, ro, varRun] = r.stdout.trim().split('\n');
    t.equal(root, 'bin dev etc lib lib64 proc run srv tmp usr var', 'the distro, the jail\'s own dirs, and /srv for the home');
    t.equal(etc, '0', 'the distro\'s (empty) /etc, not the host\'s');
    t.equal(ro, '1', 'read-only');
    t.equal(varRun, '/run');
  });

  t.test('a jail needs an unprivileged user', async (t) => {
    const spec = { ...specOf('fault-user'), uid: undefined as unknown as number };
    await t.rejects(Jail.create(spec, { runDir: '/tmp', cgroupParent: CGROUP_PARENT, controlDir: CONTROL_DIR }), {
      code: 'EMPEROR_ERR_JAIL_USER',
      message: 'jail fault-user: expected an unprivileged uid and gid, got none:995'.replace('995', String(spec.gid)),
    });
    const root = { ...specOf('fault-root'), uid: 0 };
    await t.rejects(Jail.create(root, { runDir: '/tmp', cgroupParent: CGROUP_PARENT, controlDir: CONTROL_DIR }), { code: 'EMPEROR_ERR_JAIL_USER' });
  });

  t.test('a missing cgroup controller gives a coded error naming it', async (t) => {
    const mountinfo = execFileSync('cat', ['/proc/self/mountinfo'], { encoding: 'utf8' });
    const selfCgroup = execFileSync('cat', ['/proc/self/cgroup'], { encoding: 'utf8' });
    if (/ - cgroup \S+ \S*\bpids\b/.test(mountinfo)) {
      // cgroup v1 (this development machine): the real tables with the pids hierarchy taken out, as on a
      // kernel built without it.
      const noPids = mountinfo.split('\n').filter((l) => !/ - cgroup \S+ \S*\bpids\b/.test(l)).join('\n');
      t.throws(() => detectHierarchies({ mountinfo: noPids, selfCgroup, readControllers: () => '' }), {
        code: 'EMPEROR_ERR_JAIL_CGROUP',
        message: 'expected the cgroup controller pids (cgroup v1 or v2), got none mounted for this process',
      });
    } else {
      // cgroup v2 (the VM guest): the real tables, with pids not delegated to our cgroup.
      t.throws(() => detectHierarchies({ mountinfo, selfCgroup, readControllers: () => 'cpu memory' }), {
        code: 'EMPEROR_ERR_JAIL_CGROUP',
        message: /^pids is not delegated to \/\S+: expected memory, cpu, pids in \S+\/cgroup\.controllers, got "cpu memory"$/,
      });
    }
    t.ok(detectHierarchies().length >= 1, 'the real tables have every controller');
  });

  t.test('a bind whose source is a symlink is refused (a customer could have swapped it)', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'emperor-bind-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    symlinkSync('/etc', join(dir, 'data'));
    const spec = specOf('fault-bindlink', `bind = ${join(dir, 'data')}:/data`);
    await t.rejects(Jail.create(spec, { runDir: runDirFor(t, spec), cgroupParent: CGROUP_PARENT, controlDir: CONTROL_DIR }), {
      code: 'EMPEROR_ERR_JAIL_SETUP',
      message: `jail fault-bindlink: bind: bind source ${join(dir, 'data')} is a symlink; bind its target instead (ELOOP)`,
    });
  });

  t.test('exit status is relayed: a code, or a signal (never both)', async (t) => {
    const jail = await makeJail(t, specOf('fault-exit'));
    t.match(await jail.exec({ argv: ['sh', '-c', 'exit 3'] }).exited, { code: 3, signal: null });
    t.match(await jail.exec({ argv: ['sh', '-c', 'kill -TERM $$'] }).exited, { code: null, signal: 15 });
    const missing = await jail.exec({ argv: ['/no/such/program'] }).exited;
    t.match(missing, { code: 127, error: { code: 'EMPEROR_ERR_JAIL_SETUP' } }, 'not found: 127');
    const noexec = await jail.exec({ argv: ['/etc/passwd'] }).exited;
    t.match(noexec, { code: 126 }, 'not executable: 126');
    const term = jail.exec({ argv: ['sleep', '300'] });
    await term.started;
    term.kill('SIGTERM');
    t.match(await term.exited, { code: null, signal: 15 }, 'a signal to the helper is forwarded to the process group');
    const r = await sh(jail, 'echo out; echo err >&2; exit 0');
    t.same([r.stdout, r.stderr], ['out\n', 'err\n']);
  });
}

if (process.getuid?.() === 0) {
  t.test('the empty cgroups left by a killed emperor do not stop the jail from being built again', async (t) => {
    const { JailCgroups } = await import('../src/index.js');
    const stale = JailCgroups.create('fault-stale', CGROUP_PARENT);
    // no remove(): as if the emperor had been SIGKILLed; the directories stay, empty
    const jail = await makeJail(t, specOf('fault-stale'));
    t.same(jail.cgroups.dirs, stale.dirs, 'the same directories, reused');
    const r = await sh(jail, 'echo alive');
    t.equal(r.stdout, 'alive\n');
  });
}
