import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import t from 'tap';
import {
  app, CHECKOUT, gracefulApp, VASSALS, ptyShell, DROPIN, get, installUnit, journal, leftovers, load, processesBelow, prop, requireSystemdGuest, SCALE, sh, tryRun, UNIT, unitCgroup, until, writeVassals,
} from './fixtures/system.js';

/**
 * docs/deploy/emperor.service, installed unchanged in a Debian 12 guest (systemd 252, cgroup v2), driven the
 * way an operator does: systemctl start, status, reload, stop, the watchdog, the journal. Run by
 * scripts/vm/run.sh; `enable` + reboot continues in boot.ts on the guest's second boot.
 */

/** `systemd-analyze security` of docs/deploy/emperor.service in the guest (systemd 252). */
const SHIPPED_EXPOSURE = 6.3;

const BROKEN = '[uwsgi]\nuid = demo-alice\ncpu-limit = fast\ncommand = true\n';

/** The vassal directory of the refused starts: a vassal is there, and never starts. */
const VASSALS_ND = '/var/tmp/emperor-nd-vassals';

if (requireSystemdGuest(t)) {
  t.test('systemd-analyze security: the unit\'s exposure, with the hardening that leaves jails working', async (t) => {
    installUnit();
    const report = tryRun('systemd-analyze', 'security', '--no-pager', 'emperor.service').out;
    const m = /Overall exposure level for emperor\.service: ([\d.]+)/.exec(report);
    t.ok(m, 'systemd-analyze rates the unit');
    const score = Number(m?.[1]);
    t.comment(`exposure ${score}`);
    // The score of the unit as shipped, measured in this guest (docs/operations.md lists each directive and
    // why the rest are off): a change that loosens the unit fails here.
    t.ok(score <= SHIPPED_EXPOSURE, `exposure ${score} is at most the shipped unit's ${SHIPPED_EXPOSURE} (9.6 without hardening)`);
    for (const d of ['NoNewPrivileges=', 'SystemCallArchitectures=', 'ProtectClock=', 'LockPersonality=', 'RestrictRealtime=', 'RestrictNamespaces=~user',
      'RestrictAddressFamilies=~AF_PACKET', 'CapabilityBoundingSet=~CAP_SYS_MODULE', 'CapabilityBoundingSet=~CAP_SYS_BOOT', 'CapabilityBoundingSet=~CAP_SYS_TIME', 'SystemCallFilter=~@clock', 'SystemCallFilter=~@reboot']) {
      t.match(report, new RegExp(`✓ ${d.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`), `${d} holds`);
    }
    // systemd-analyze has no row of its own for the device policy: systemd says what it applies.
    t.equal(prop('DevicePolicy'), 'closed', 'DevicePolicy=closed');
    const allowed = prop('DeviceAllow').split('\n').map((l) => l.trim());
    t.ok(['char-pts rw', '/dev/ptmx rw', '/dev/tty rw'].every((d) => allowed.includes(d)), `the ptys and /dev/tty allowed (${allowed.join(', ')})`);
  });

  t.test('a unit that gets a mount namespace of its own (PrivateTmp=, ProtectSystem=...) hides every app socket from the web server: the emperor says so', async (t) => {
    installUnit({ privatetmp: 'PrivateTmp=yes' });
    writeVassals({ 'alice.ini': app('alice', 'demo-alice') });
    const since = sh('date', '+%Y-%m-%d %H:%M:%S');
    sh('systemctl', 'start', 'emperor.service');
    const r = await get('alice');
    t.match(r instanceof Error ? r.message : r, /ENOENT/, 'the socket is not there outside the unit\'s namespace (why the shipped unit has no such option)');
    const said = journal(since).find((x) => /mount namespace of its own/.test(x.MESSAGE ?? ''));
    t.equal(said?.PRIORITY, '3', 'an error in the journal');
    t.match(said?.MESSAGE, /remove ProtectSystem=, ProtectHome=, PrivateTmp=/, 'naming what to remove');
    sh('systemctl', 'stop', 'emperor.service');
  });

  t.test('systemctl start returns once the first scan has started (or failed) every vassal; status shows the counts; the emperor is MAINPID in a leaf of its delegated cgroup', async (t) => {
    installUnit();
    writeVassals({ 'alice.ini': `${app('alice', 'demo-alice')}pty = on\n`, 'bob.ini': app('bob', 'demo-bob'), 'broken.ini': BROKEN });
    const since = sh('date', '+%Y-%m-%d %H:%M:%S');
    sh('systemctl', 'start', 'emperor.service');
    // No polling: READY=1 came after every vassal started, so they answer now.
    const [a, b] = await Promise.all([get('alice'), get('bob')]);
    t.match(a, /^alice \w+\n$/, 'alice answers the moment systemctl start returns');
    t.match(b, /^bob \w+\n$/, 'bob too');
    t.equal(prop('ActiveState'), 'active');
    t.match(await ptyShell('alice', 'test -c $(tty) && echo PTY-$((40+2)) $(id -un) $(stty size)'), /PTY-42 demo-alice 40 120/, 'a pty login works under the unit\'s device policy');
    // A hostile customer in that shell tries to speak for the emperor: systemd's notify socket is not in the
    // jail, nor in its environment.
    const forged = await ptyShell('alice', `env | grep -c -E '^(NOTIFY_SOCKET|WATCHDOG_|JOURNAL_STREAM|INVOCATION_ID)' ; python3 -c "import socket; socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'STOPPING=1\\nSTATUS=pwned', '/run/systemd/notify')" 2>&1 | tail -1`);
    t.match(forged, /[\r\n]0\r\n/, 'no systemd variable in a customer\'s environment (grep -c counts 0)');
    t.match(forged, /FileNotFoundError/, 'and no notify socket to send to');
    t.equal(prop('ActiveState'), 'active', 'the unit is not stopping');
    t.equal(prop('StatusText'), '3 vassals: 2 running, 1 invalid', 'systemctl status shows the counts');
    const main = Number(prop('MainPID'));
    t.match(readFileSync(`/proc/${main}/cmdline`, 'utf8'), /node.*\/opt\/emperor\/node_modules\/.bin\/emperor/, 'MAINPID is the emperor itself (no wrapper process)');
    const cg = unitCgroup();
    t.equal(readFileSync(`/proc/${main}/cgroup`, 'utf8').trim(), `0::${prop('ControlGroup')}/supervisor`, 'the emperor moved itself into a leaf of the unit\'s cgroup');
    for (const v of ['alice', 'bob']) {
      const dir = join(cg, 'emperor', v);
      t.ok(existsSync(dir), `${v}'s cgroup is under the unit's own: ${dir}`);
      t.equal(readFileSync(join(dir, 'cgroup.controllers'), 'utf8').trim(), 'cpu memory pids', 'with the controllers delegated to it');
    }
    t.equal(readFileSync(join(cg, 'emperor', 'alice', 'cpu.max'), 'utf8').trim(), '100000 100000', 'and the default cpu limit written (cpu came with Delegate=yes)');
    const status = JSON.parse(sh(join(CHECKOUT, 'node_modules/.bin/emperor'), 'status', '--json')) as Array<{ name: string; state: string }>;
    t.same(status.map((s) => `${s.name}:${s.state}`).sort(), ['alice:running', 'bob:running', 'broken:invalid'], 'emperor status agrees');
    const records = journal(since);
    const invalid = records.find((r) => /^broken: invalid/.test(r.MESSAGE ?? ''));
    t.equal(invalid?.PRIORITY, '4', 'the bad file is a warning in the journal (journalctl -p warning shows it)');
    t.match(invalid?.MESSAGE, /cpu-limit: expected/, 'with its problem');
    t.ok(records.some((r) => r.MESSAGE?.startsWith('alice: spawned') && r.PRIORITY === '6'), 'a spawn is info');
    t.notOk(records.some((r) => r.MESSAGE?.startsWith('{')), 'no JSON lines: journald gets plain lines');
    // What a file's author writes reaches the journal quoted: a newline and a priority prefix of theirs forge nothing.
    writeFileSync(join(VASSALS, 'forger.json'), JSON.stringify({ uwsgi: { uid: 'demo-alice', command: 'true', 'cpu-limit': 'fast\n<0>emperor: forged line' } }));
    await until(() => journal(since).some((r) => /^forger: invalid/.test(r.MESSAGE ?? '')), 'the forger\'s file refused');
    const after = journal(since);
    t.notOk(after.some((r) => r.PRIORITY === '0' || /^emperor: forged/.test(r.MESSAGE ?? '')), 'no forged journal entry');
    t.match(after.find((r) => /^forger: invalid/.test(r.MESSAGE ?? ''))?.MESSAGE, /fast(\\)+n<0>emperor: forged line/, 'its bytes are there, escaped (a backslash and an n, never a newline)');
    rmSync(join(VASSALS, 'forger.json'));
    await until(() => prop('StatusText') === '3 vassals: 2 running, 1 invalid', 'the forger gone again');
  });

  t.test('systemctl reload: RELOADING=1, every app reloaded, READY=1 again; no request fails meanwhile', async (t) => {
    // Apps that finish what they accepted when told to stop (as a reload needs of them): the emperor keeps
    // the socket open across the reload, the old app drains its own connections.
    writeVassals({ 'alice.ini': gracefulApp('alice', 'demo-alice'), 'bob.ini': gracefulApp('bob', 'demo-bob'), 'broken.ini': BROKEN });
    await until(async () => /^alice-graceful/.test(String(await get('alice'))) && /^bob-graceful/.test(String(await get('bob'))), 'the graceful apps');
    const before = await Promise.all([get('alice'), get('bob')]);
    const since = sh('date', '+%Y-%m-%d %H:%M:%S');
    const traffic = load(['alice', 'bob']);
    await until(() => traffic.counts.ok > 10, 'traffic before the reload');
    sh('systemctl', 'reload', 'emperor.service');
    await until(async () => {
      const now = await Promise.all([get('alice'), get('bob')]);
      return now.every((x, i) => typeof x === 'string' && x !== before[i]) && prop('ActiveState') === 'active';
    }, 'both apps reloaded (new processes) and the unit active again');
    await until(() => traffic.counts.ok > 40, 'traffic after the reload');
    const counts = await traffic.stop();
    t.same(counts.failed, [], `no request failed (${counts.ok} served during the reload)`);
    await until(() => journal(since).some((r) => /^SIGHUP: reloading every vassal/.test(r.MESSAGE ?? '')), 'the reload in the journal');
    t.equal(prop('StatusText'), '3 vassals: 2 running, 1 invalid', 'the counts are back after READY=1');
    const systemdSaid = sh('journalctl', '--since', since, '_PID=1', '-o', 'cat', '--no-pager');
    t.match(systemdSaid, /Reload(ing|ed)/, 'systemd saw the reload');
  });

  t.test('emperor upgrade under load: a new emperor (MAINPID) adopts every jail; no app restarted, no request failed, the unit never left active', async (t) => {
    const main = Number(prop('MainPID'));
    const before = JSON.parse(sh(join(CHECKOUT, 'node_modules/.bin/emperor'), 'status', '--json')) as Array<{ name: string; pid: number | null; jail: { shim: number } | null }>;
    const since = sh('date', '+%Y-%m-%d %H:%M:%S');
    const traffic = load(['alice', 'bob']);
    await until(() => traffic.counts.ok > 10, 'traffic before the upgrade');
    const said = sh(join(CHECKOUT, 'node_modules/.bin/emperor'), 'upgrade');
    t.match(said, new RegExp(`handed over from pid ${main} to pid \\d+: 3 vassals, 2 running, none restarted`), said);
    await until(() => traffic.counts.ok > 40, 'traffic after the upgrade');
    const counts = await traffic.stop();
    t.same(counts.failed, [], `no request failed (${counts.ok} served across the upgrade)`);
    const now = Number(prop('MainPID'));
    t.not(now, main, 'systemd follows the new emperor as MAINPID');
    t.equal(prop('ActiveState'), 'active');
    t.equal(prop('NRestarts'), '0', 'the unit was not restarted');
    t.equal(readFileSync(`/proc/${now}/cgroup`, 'utf8').trim(), `0::${prop('ControlGroup')}/supervisor`, 'the new emperor is in the unit\'s leaf (where the old one started it)');
    const after = JSON.parse(sh(join(CHECKOUT, 'node_modules/.bin/emperor'), 'status', '--json')) as typeof before;
    t.same(after.map((v) => [v.name, v.pid, v.jail?.shim]), before.map((v) => [v.name, v.pid, v.jail?.shim]), 'the same apps and shims');
    t.ok(journal(since).some((r) => /^handed over to the new emperor \(pid \d+\)/.test(r.MESSAGE ?? '')), 'the journal says so');
    // The new emperor answers systemd: a reload reaches it (RELOADING=1, READY=1 from the new MAINPID).
    sh('systemctl', 'reload', 'emperor.service');
    await until(() => prop('ActiveState') === 'active' && prop('StatusText') === '3 vassals: 2 running, 1 invalid', 'reloaded by the new emperor');
  });

  t.test('the watchdog: an emperor whose event loop stops is killed and restarted by systemd, and its vassals come back', async (t) => {
    installUnit({ watchdog: `WatchdogSec=${Math.round(5 * Math.min(SCALE, 4))}s` });
    sh('systemctl', 'restart', 'emperor.service');
    const first = Number(prop('MainPID'));
    const restarts = Number(prop('NRestarts'));
    const oldApp = await get('alice');
    t.match(oldApp, /^alice/);
    const since = sh('date', '+%Y-%m-%d %H:%M:%S');
    // Healthy: two watchdog periods pass without a kill.
    await new Promise((r) => setTimeout(r, 2 * 5000 * Math.min(SCALE, 4)));
    t.equal(Number(prop('MainPID')), first, 'a healthy emperor is left alone');
    process.kill(first, 'SIGSTOP');
    await until(() => /Watchdog timeout/.test(sh('journalctl', '--since', since, '_PID=1', '-o', 'cat', '--no-pager')), 'systemd to notice the missed pings', 120_000);
    // systemd sends SIGABRT, then SIGCONT, so even a stopped emperor dies of it (a wedged, running loop at once).
    await until(() => Number(prop('NRestarts')) === restarts + 1 && prop('ActiveState') === 'active', 'the restart', 120_000);
    t.not(Number(prop('MainPID')), first, 'a new emperor');
    const newApp = await get('alice');
    t.match(newApp, /^alice/, 'alice answers again');
    // KillMode=mixed: a crashed emperor's jails are killed with it under systemd 252 (a restarted main process
    // cannot join a delegated cgroup whose subtree still runs: 219/CGROUP; docs/decisions.md, issue 11).
    t.not(newApp, oldApp, 'from a new app (systemd 252 cannot restart into a cgroup with live jails)');
    t.equal(prop('Result'), 'success', 'the unit is fine again');
  });

  t.test('systemctl stop: every vassal stopped, the emperor exits 0, nothing left (process, cgroup, mount, run dir)', async (t) => {
    installUnit();
    sh('systemctl', 'restart', 'emperor.service');
    t.match(await get('alice'), /^alice/);
    const cg = unitCgroup();
    t.ok(processesBelow(cg).length >= 5, 'the emperor, two jails (shim, init, app each)');
    const since = sh('date', '+%Y-%m-%d %H:%M:%S');
    sh('systemctl', 'stop', 'emperor.service');
    t.equal(prop('ActiveState'), 'inactive');
    t.equal(prop('Result'), 'success', 'exited by itself (no SIGKILL by systemd, no timeout)');
    t.equal(prop('ExecMainStatus'), '0');
    t.same(leftovers(cg), [], 'no process, mount, run dir or cgroup left');
    const said = journal(since).map((r) => r.MESSAGE ?? '');
    t.ok(said.some((m) => /^alice: stopped/.test(m)) && said.some((m) => /^bob: stopped/.test(m)), 'each vassal stopped gracefully');
  });

  t.test('without Delegate=yes (a unit, or a shell by hand): the emperor refuses to start, naming the controller, the cgroup and the fix', async (t) => {
    mkdirSync(VASSALS_ND, { recursive: true });
    writeFileSync(join(VASSALS_ND, 'alice.ini'), app('alice', 'demo-alice'));
    for (const [how, args] of [
      ['a service', ['--unit', 'emperor-nodelegate', '--wait', '--collect', '-p', 'Type=notify', '-p', 'NotifyAccess=main']],
      ['a scope (a shell by hand)', ['--scope', '--unit', 'emperor-byhand']],
    ] as const) {
      const r = tryRun('systemd-run', '--quiet', ...args, join(CHECKOUT, 'node_modules/.bin/emperor'), VASSALS_ND, '--run-dir', '/run/emperor-nd', '--log-dir', '/var/log/emperor-nd', '--log-format', 'journal');
      t.not(r.status, 0, `${how}: it fails`);
      const unit = how === 'a service' ? 'emperor-nodelegate.service' : 'emperor-byhand.scope';
      const said = how === 'a service' ? sh('journalctl', '-u', unit, '-o', 'cat', '--no-pager') : r.out;
      t.match(said, new RegExp(`emperor failed to start: cpu is not delegated to /system.slice/${unit.replace('.', '\\.')}: expected memory, cpu, pids in /sys/fs/cgroup/system.slice/${unit.replace('.', '\\.')}/cgroup.controllers, got "memory pids"`), `${how}: the exact error`);
      t.match(said, /set Delegate=yes/, `${how}: and the fix`);
      t.notOk(existsSync('/run/emperor-nd/vassals'), `${how}: nothing was started`);
    }
    rmSync(VASSALS_ND, { recursive: true, force: true });
    rmSync('/run/emperor-nd', { recursive: true, force: true });
    rmSync('/var/log/emperor-nd', { recursive: true, force: true });
  });

  t.test('in a container (a cgroup namespace of its own): with its own cgroup2 mount it runs vassals; seeing the host\'s cgroup mount instead, it says what to mount', async (t) => {
    const bin = join(CHECKOUT, 'node_modules/.bin/emperor');
    const args = `${VASSALS_ND} --run-dir /run/emperor-ct --log-dir /var/log/emperor-ct --log-format journal`;
    mkdirSync(VASSALS_ND, { recursive: true });
    writeFileSync(join(VASSALS_ND, 'alice.ini'), app('alice', 'demo-alice'));
    t.teardown(() => {
      for (const d of [VASSALS_ND, '/run/emperor-ct', '/var/log/emperor-ct']) rmSync(d, { recursive: true, force: true });
    });
    // What a container runtime does: a cgroup namespace, and in its own mount namespace cgroup2 mounted afresh
    // at /sys/fs/cgroup, which then shows the namespace's root (a delegated scope).
    const ct = spawn('systemd-run', ['--scope', '--quiet', '-p', 'Delegate=yes', '--unit', 'emperor-ct', 'unshare', '-C', '-m', '--propagation', 'private', 'sh', '-c', `umount /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup && exec ${bin} ${args}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let said = '';
    ct.stdout.on('data', (d: Buffer) => (said += d.toString()));
    ct.stderr.on('data', (d: Buffer) => (said += d.toString()));
    const ended = new Promise<number | null>((r) => ct.on('exit', (code) => r(code)));
    t.teardown(() => void ct.kill('SIGKILL'));
    const status = () => JSON.parse(tryRun(bin, 'status', '--json', '--run-dir', '/run/emperor-ct').out || '[]') as Array<{ name: string; state: string }>;
    await until(() => { try { return status().some((v) => v.name === 'alice' && v.state === 'running'); } catch { return false; } }, 'alice running in the container', 30_000)
      .catch((e: Error) => t.fail(`${e.message}; the emperor said: ${said}`));
    t.pass('alice runs: the jail\'s cgroup is under the container\'s own');
    const inside = readFileSync(join('/sys/fs/cgroup/system.slice/emperor-ct.scope/emperor/alice/cgroup.procs'), 'utf8').trim().split('\n');
    t.ok(inside.length >= 2, `seen from the host, under the scope the container runs in (${inside.length} processes)`);
    ct.kill('SIGTERM');
    t.equal(await ended, 0, 'SIGTERM stops it cleanly');
    t.notOk(existsSync('/sys/fs/cgroup/system.slice/emperor-ct.scope'), 'nothing left of its cgroups');
    // The same without the mount: /sys/fs/cgroup is the host's, seen from the namespace as /../..
    const r = tryRun('systemd-run', '--scope', '--quiet', '-p', 'Delegate=yes', 'unshare', '-C', bin, ...args.split(' '));
    t.not(r.status, 0, 'it does not start');
    t.match(r.out, /the cgroup mount at \/sys\/fs\/cgroup shows \/\.\.[^ ]*, not this process's cgroup \/: expected a cgroup file system mounted in this cgroup namespace/, 'the exact error');
    t.match(r.out, /mount cgroup2 at \/sys\/fs\/cgroup inside it/, 'and the fix');
  });

  t.test('enabled, it comes up at boot (continued by boot.ts after the guest restarts)', async (t) => {
    installUnit();
    writeVassals({ 'alice.ini': app('alice', 'demo-alice'), 'bob.ini': app('bob', 'demo-bob') });
    sh('systemctl', 'enable', '--now', 'emperor.service');
    t.equal(prop('UnitFileState'), 'enabled');
    t.match(await get('alice'), /^alice/);
    // Left running: the guest's poweroff stops it the way a shutdown does, and the next boot starts it.
    t.ok(existsSync(UNIT) && !existsSync(DROPIN), 'the shipped unit, with no drop-in');
  });
}
