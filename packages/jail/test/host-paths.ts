// What root does with paths a customer can write, and what a jail learns about the host: each attack is
// made by the customer's uid (on the host where the customer owns files there, from inside the jail
// otherwise), and the test asserts the outcome.
import { execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { helperPath, Jail, mountArgs } from '../src/index.js';
import { CGROUP_PARENT, CONTROL_DIR, cleanupCgroups, makeJail, requireJails, runDirFor, sh, specOf } from './fixtures/jail.js';

if (!requireJails(t)) process.exit(0);
cleanupCgroups(t);

const uidOf = (user: string): number => Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }).trim());
const alice = uidOf('demo-alice');

/** Runs a shell command on the host as a demo user (what a customer with files on the host can do). */
const asUser = (user: string, script: string): string => execFileSync('setpriv', ['--reuid', user, '--regid', user, '--init-groups', '--', 'sh', '-c', script], { encoding: 'utf8' });

/** A scratch directory owned by alice, like /srv/alice on a host. */
const aliceDir = (t: Parameters<Parameters<typeof t.test>[1]>[0]): string => {
  const dir = mkdtempSync(join(tmpdir(), 'emperor-srv-'));
  chownSync(dir, alice, alice);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
};

t.test('nothing of the vassal\'s env or the host\'s paths shows in ps on the host', async (t) => {
  const spec = specOf('hp-ps', 'env = DB_PASSWORD=hunter2-secret');
  const jail = await makeJail(t, spec);
  const p = jail.exec({ argv: ['sleep', '30'] });
  await p.started;
  t.teardown(() => p.kill('SIGKILL'));
  const all = execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' });
  t.notMatch(all, /hunter2-secret/, 'the password is no argument of any process');
  // A zombie (a helper of another test file that exited a moment ago, not yet reaped) has no command line.
  const helpers = all.split('\n').filter((l) => l.includes('emperor-jail') && !l.includes('<defunct>'));
  t.ok(helpers.length >= 2, 'the shim and the exec helper are running');
  for (const l of helpers) t.match(l.trim(), /^\d+ \S*emperor-jail(-asan)? (create|exec) --args-fd \d+$/, `a helper's command line is only its verb: ${l.trim()}`);
  t.notMatch(all, new RegExp(jail.cgroups.dirs[0]?.split('/').at(-1) ?? 'x'), 'nor a cgroup path');
  // As a host user other than root, the helper's environment (where a pty session's arguments travel) is closed.
  const env = asUser('demo-bob', `cat /proc/${jail.shimPid}/environ 2>&1 || true`);
  t.match(env, /Permission denied/, 'a root helper\'s environment is unreadable to other users');
});

t.test('inside the jail: PID 1 is "init", /proc/self/cgroup reads "/", mountinfo names no host run dir or cgroup', async (t) => {
  const spec = specOf('hp-inside');
  const runDir = runDirFor(t, spec);
  // A tmpfs of its own, as the emperor makes every run dir (packages/emperor/src/run-dir.ts): mountinfo
  // shows a mount's root within its file system, which for a tmpfs is "/".
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=1m,mode=1775,gid=${spec.gid ?? 0}`, 'emperor-run-hp', runDir]);
  t.teardown(() => execFileSync('umount', ['-l', runDir]));
  const jail = await makeJail(t, spec, { runDir });
  const r = await sh(jail, 'tr -d "\\0" < /proc/1/cmdline; echo; cat /proc/1/comm; echo ---; cat /proc/self/cgroup; echo ---; cat /proc/self/mountinfo');
  const [init = '', comm = '', rest = ''] = [r.stdout.split('\n')[0], r.stdout.split('\n')[1], r.stdout.split('---\n').slice(1).join('---\n')];
  t.equal(init, 'init');
  t.equal(comm, 'init');
  const [cgroups = '', mountinfo = ''] = rest.split('---\n');
  const lines = cgroups.trim().split('\n');
  t.ok(lines.length >= 1);
  for (const l of lines) t.match(l, /^\d+:[^:]*:\/$/, `cgroup line ${l} is the namespace's root`);
  t.notMatch(mountinfo, runDir, 'the host path of the run dir is not in mountinfo');
  t.notMatch(mountinfo, /emperor-test-/, 'nor the emperor\'s cgroup');
});

t.test('a bind source whose directory the customer swapped for a symlink is refused', async (t) => {
  const srv = aliceDir(t);
  asUser('demo-alice', `mkdir -p ${srv}/a/b && echo mine > ${srv}/a/b/file`);
  const hostDir = mkdtempSync(join(tmpdir(), 'emperor-host-secret-'));
  t.teardown(() => rmSync(hostDir, { recursive: true, force: true }));
  writeFileSync(join(hostDir, 'secret'), 'root only\n', { mode: 0o600 });
  mkdirSync(join(hostDir, 'b'));
  const spec = specOf('hp-bind', `bind = ${srv}/a/b:/data`);
  // The operator's vassal works as written.
  const ok = await makeJail(t, spec);
  t.equal((await sh(ok, 'cat /data/file')).stdout, 'mine\n');
  await ok.stop();
  // Then alice replaces "a" (a middle component) with a symlink to the host directory and waits for a restart.
  asUser('demo-alice', `mv ${srv}/a ${srv}/old && ln -s ${hostDir} ${srv}/a`);
  const err = await makeJail(t, spec).catch((e: Error) => e);
  t.match(err, { code: 'EMPEROR_ERR_JAIL_SETUP', message: /bind source .*\/a\/b: a component of the path is a symlink; give the real path/ }, 'refused, naming the source');
  // The last component swapped: refused too.
  asUser('demo-alice', `rm ${srv}/a && mv ${srv}/old ${srv}/a && mv ${srv}/a/b ${srv}/a/c && ln -s ${hostDir} ${srv}/a/b`);
  const last = await makeJail(t, spec).catch((e: Error) => e);
  t.match(last, { code: 'EMPEROR_ERR_JAIL_SETUP', message: /symlink/ }, 'a symlinked last component is refused');
  t.equal(readFileSync(join(hostDir, 'secret'), 'utf8'), 'root only\n', 'the host directory was never mounted (nor changed)');
});

t.test('a hard link to a host file is not the customer\'s to make (protected_hardlinks)', async (t) => {
  const srv = aliceDir(t);
  t.equal(readFileSync('/proc/sys/fs/protected_hardlinks', 'utf8').trim(), '1', 'the kernel protects hard links (Debian\'s default)');
  const out = asUser('demo-alice', `ln /etc/shadow ${srv}/shadow 2>&1 || echo refused`);
  t.match(out, /Operation not permitted[\s\S]*refused/);
  t.notOk(existsSync(join(srv, 'shadow')));
});

t.test('a bind source that resolves to a kernel file system is refused, whatever its path says', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'emperor-procbind-'));
  mkdirSync(join(dir, 'p'));
  execFileSync('mount', ['-t', 'proc', 'proc', join(dir, 'p')]);
  t.teardown(() => {
    execFileSync('umount', ['-l', join(dir, 'p')]);
    rmSync(dir, { recursive: true, force: true });
  });
  const err = await makeJail(t, specOf('hp-procbind', `bind-ro = ${dir}/p:/data`)).catch((e: Error) => e);
  t.match(err, { code: 'EMPEROR_ERR_JAIL_SETUP', message: /bind source .*\/p: resolves to .*, which a jail may never see/ });
});

t.test('a socket in a subdirectory of the run dir: root makes the directory, the customer cannot swap it', async (t) => {
  const spec = specOf('hp-subsock', 'socket = sockets/app.sock');
  const runDir = runDirFor(t, spec);
  execFileSync('chmod', ['1775', runDir]); // as the emperor makes it: the vassal's group may write, sticky
  const jail = await makeJail(t, spec, { runDir, socket: { path: 'sockets/app.sock', uid: 33, gid: spec.gid ?? 0, mode: 0o660 } });
  const st = statSync(join(runDir, 'sockets'));
  t.equal(st.uid, 0, 'the directory is root\'s');
  t.equal(st.mode & 0o777, 0o755);
  t.ok(statSync(join(runDir, 'sockets', 'app.sock')).isSocket(), 'the socket is there (the documented form works on a fresh run dir)');
  // From inside the jail, as the customer: rename, remove or replace the directory.
  const target = mkdtempSync(join(tmpdir(), 'emperor-victim-'));
  t.teardown(() => rmSync(target, { recursive: true, force: true }));
  writeFileSync(join(target, 'app.sock'), 'root file\n', { mode: 0o600 });
  const r = await sh(jail, 'mv /run/sockets /run/gone 2>&1; rm -rf /run/sockets 2>&1; ln -s /tmp /run/sockets 2>&1; touch /run/sockets/x 2>&1; ls -la /run/sockets');
  t.match(r.stdout, /mv: cannot move .*Operation not permitted/, 'no rename (sticky run dir, root\'s directory)');
  t.match(r.stdout, /Permission denied/, 'nothing inside it either');
  t.match(r.stdout, /app\.sock/, 'the socket is still there');
  await jail.stop();
  t.notOk(existsSync(join(runDir, 'sockets', 'app.sock')), 'the shim removed its socket at stop');
  t.equal(readFileSync(join(target, 'app.sock'), 'utf8'), 'root file\n', 'and nothing else');
});

t.test('a socket directory the customer made (or a symlink) is refused, never followed', async (t) => {
  const spec = specOf('hp-subsock-pre', 'socket = sockets/app.sock');
  const victim = mkdtempSync(join(tmpdir(), 'emperor-victim-'));
  t.teardown(() => rmSync(victim, { recursive: true, force: true }));
  writeFileSync(join(victim, 'app.sock'), 'root file\n', { mode: 0o600 });
  // A run dir where the customer got there first (a leftover, or a run dir that is not a fresh tmpfs).
  const byCustomer = runDirFor(t, spec);
  mkdirSync(join(byCustomer, 'sockets'));
  chownSync(join(byCustomer, 'sockets'), alice, alice);
  const e1 = await makeJail(t, spec, { runDir: byCustomer, socket: { path: 'sockets/app.sock', uid: 33, gid: spec.gid ?? 0, mode: 0o660 } }).catch((e: Error) => e);
  t.match(e1, { message: /expected the directory sockets to be root's and writable by root only, got uid \d+/ });
  const linked = runDirFor(t, spec);
  symlinkSync(victim, join(linked, 'sockets'));
  const e2 = await makeJail(t, spec, { runDir: linked, socket: { path: 'sockets/app.sock', uid: 33, gid: spec.gid ?? 0, mode: 0o660 } }).catch((e: Error) => e);
  t.match(e2, { message: /component sockets must be a directory, not a symlink/ });
  t.equal(readFileSync(join(victim, 'app.sock'), 'utf8'), 'root file\n', 'the file behind the symlink is untouched');
  t.same(readdirSync(victim), ['app.sock']);
});

t.test('a race: the customer swaps a directory of a bind source for a symlink in a loop while jails are built', async (t) => {
  const srv = aliceDir(t);
  asUser('demo-alice', `mkdir -p ${srv}/real/b && echo mine > ${srv}/real/b/file && ln -s ${srv}/real ${srv}/link-unused`);
  const hostDir = mkdtempSync(join(tmpdir(), 'emperor-host-secret-'));
  t.teardown(() => rmSync(hostDir, { recursive: true, force: true }));
  mkdirSync(join(hostDir, 'b'));
  writeFileSync(join(hostDir, 'b', 'file'), 'host\n');
  // "a" flips between alice's directory and a symlink to the host directory, as fast as a shell can.
  const flipper = spawn('setpriv', ['--reuid', 'demo-alice', '--regid', 'demo-alice', '--init-groups', '--', 'sh', '-c',
    `cd ${srv}; while :; do mv -T real a 2>/dev/null; mv -T a real 2>/dev/null; ln -sfn ${hostDir} a 2>/dev/null; rm -f a 2>/dev/null; done`], { stdio: 'ignore' });
  t.teardown(() => void flipper.kill('SIGKILL'));
  const spec = specOf('hp-race', `bind-ro = ${srv}/a/b:/data`);
  const seen = { mine: 0, refused: 0, missing: 0, host: 0 };
  for (let i = 0; i < 40; i++) {
    const jail = await Jail.create(spec, { runDir: runDirFor(t, spec), cgroupParent: CGROUP_PARENT, controlDir: CONTROL_DIR }).catch((e: Error) => e);
    if (jail instanceof Error) {
      if (/symlink/.test(jail.message)) seen.refused++;
      else if (/ENOENT|No such file/.test(jail.message)) seen.missing++;
      else t.fail(`unexpected error: ${jail.message}`);
      continue;
    }
    const r = await sh(jail, 'cat /data/file');
    if (r.stdout === 'host\n') seen.host++;
    else if (r.stdout === 'mine\n') seen.mine++;
    await jail.stop();
  }
  flipper.kill('SIGKILL');
  t.equal(seen.host, 0, `the host directory was never mounted (${JSON.stringify(seen)})`);
  t.ok(seen.refused + seen.mine + seen.missing === 40);
});

t.test('arguments on the command line still work (debugging, the bench), and the init is renamed only once the root is built from them', async (t) => {
  const spec = specOf('hp-argv');
  const runDir = runDirFor(t, spec);
  const shim = spawn(helperPath(), ['create', '--status-fd', '3', '--hostname', 'argv', ...mountArgs(spec, { runDir })], { stdio: ['ignore', 'ignore', 'pipe', 'pipe'] });
  let err = '';
  shim.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const first = await new Promise<string>((resolve) => {
    let text = '';
    shim.stdio[3]?.on('data', (d: Buffer) => {
      text += d.toString();
      if (text.includes('\n')) resolve(text.split('\n')[0] ?? '');
    });
    shim.on('exit', () => resolve(text));
  });
  const ready = JSON.parse(first) as { event: string; init: number };
  t.equal(ready.event, 'ready', err);
  t.equal(readFileSync(`/proc/${ready.init}/cmdline`, 'utf8').replace(/\0+$/, ''), 'init');
  const gone = new Promise((r) => shim.on('exit', r));
  shim.kill('SIGTERM');
  await gone;
});
