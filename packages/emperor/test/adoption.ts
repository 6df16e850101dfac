import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import t, { type Test } from 'tap';
import { emperorBin } from './fixtures/daemon-bin.js';
import { alive, get, nodeApp, requireJails } from './fixtures/emperor.js';
import { bound } from './fixtures/time.js';

interface View { name: string; state: string; pid: number | null; jail: { shim: number; init: number } | null; restarts: number; lastError: string | null; daemons: Array<{ pid: number | null; restarts: number }> }

/**
 * One scratch world (vassal dir, run dir, log dir, cgroup parent) in which emperors come and go: each is the
 * real binary, as systemd runs it, and can be SIGKILLed; the next one starts on the same directories.
 */
const world = (t: Test, bin = emperorBin) => {
  const root = mkdtempSync(join(tmpdir(), 'emperor-test-adopt-'));
  chmodSync(root, 0o755);
  const dir = join(root, 'vassals');
  mkdirSync(dir);
  const runDir = join(root, 'run');
  const cgroupParent = `emperor-test-${process.pid}-adopt${Math.random().toString(36).slice(2, 6)}`;
  let current: { proc: ChildProcess; exited: Promise<unknown>; out: () => string } | undefined;
  /** What each emperor started in this world printed, in order (for a failure's diagnosis). */
  const outs: Array<() => string> = [];
  const start = () => {
    const proc = spawn(bin, [dir, '--run-dir', runDir, '--log-dir', join(root, 'log'), '--cgroup-parent', cgroupParent], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise((r) => proc.on('exit', r));
    current = { proc, exited, out: () => out };
    outs.push(current.out);
    return current;
  };
  const vassals = async (): Promise<View[]> => JSON.parse(await get(join(runDir, 'control.sock'), '/vassals')) as View[];
  /** Polls the running emperor's /vassals until `ok` holds (bounded). */
  const until = async (ok: (vs: View[]) => boolean, what: string): Promise<View[]> => {
    const deadline = Date.now() + bound(60_000);
    let last: View[] | string = 'no answer';
    while (Date.now() < deadline) {
      try {
        const vs = await vassals();
        last = vs;
        if (ok(vs)) return vs;
      } catch (e) {
        last = String(e);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`${what}: not reached; last ${JSON.stringify(last)}; emperor said: ${current?.out().slice(-2000)}`);
  };
  const kill9 = async () => {
    const c = current;
    c?.proc.kill('SIGKILL');
    await c?.exited;
  };
  const write = (name: string, ...lines: string[]) => writeFileSync(join(dir, name), `${lines.join('\n')}\n`);
  /** The host processes in the vassal's jail cgroup (any hierarchy) whose command line starts with `text`. */
  const inJail = (name: string, text: string): number[] =>
    readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cgroup`, 'utf8').includes(`/${cgroupParent}/${name}\n`) && readFileSync(`/proc/${p}/cmdline`, 'utf8').replaceAll('\0', ' ').startsWith(text);
      } catch {
        return false;
      }
    }).map(Number);
  /**
   * Requests through the vassals' sockets, `per` clients each, one after another until stopped: every
   * answer must come from that vassal's app (its greeting); `away` counts those served while it is set.
   */
  const load = (names: string[], per = 1) => {
    const counts = { ok: 0, during: 0, failures: [] as string[] };
    let on = true;
    let away = false;
    const client = async (n: string) => {
      const sock = join(runDir, 'vassals', n, 'app.sock');
      while (on) {
        try {
          const body = await get(sock);
          if (!body.startsWith(`${n}:`)) counts.failures.push(`${n} answered ${body}`);
          counts.ok++;
          if (away) counts.during++;
        } catch (err) {
          counts.failures.push(`${n}: ${String(err)}`);
        }
      }
    };
    const clients = names.flatMap((n) => Array.from({ length: per }, () => client(n)));
    t.teardown(() => {
      on = false;
    });
    return { counts, away: (v: boolean) => (away = v), stop: async () => { on = false; await Promise.all(clients); return counts; } };
  };
  t.teardown(async () => {
    if (current !== undefined && current.proc.exitCode === null && current.proc.signalCode === null) {
      current.proc.kill('SIGTERM');
      await current.exited;
    }
    rmSync(root, { recursive: true, force: true });
  });
  return { root, dir, runDir, cgroupParent, start, vassals, until, kill9, write, inJail, load, current: () => current, outs: () => outs.map((o) => o()) };
};

/** Alive and not a zombie (a shim whose emperor died is reaped by PID 1, in its own time). */
const running = (pid: number | null | undefined): boolean => {
  if (!alive(pid)) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
};

/** True once none of the pids runs (bounded). */
const allGone = async (pids: Array<number | null | undefined>): Promise<boolean> => {
  for (let i = 0; i < 200; i++) {
    if (!pids.some(running)) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return false;
};

const allRunning = (names: string[]) => (vs: View[]) => names.every((n) => vs.find((v) => v.name === n)?.state === 'running');

if (requireJails(t)) {
  t.test('SIGKILL of the emperor under load through three vassals\' sockets: zero failed requests, and the next emperor adopts every app as it runs, with its history', async (t) => {
    const w = world(t);
    const names = ['ada', 'bea', 'cid'];
    for (const n of names) w.write(`${n}.ini`, '[uwsgi]', 'uid = demo-alice', 'socket = app.sock', nodeApp(n), ...(n === 'bea' ? ['attach-daemon = sleep 600'] : []));
    w.start();
    let before = await w.until((vs) => allRunning(names)(vs) && vs.every((v) => v.pid !== null), 'the first emperor runs all three');
    // ada's app dies once: a restart in its history.
    process.kill(before.find((v) => v.name === 'ada')?.pid ?? 0, 'SIGKILL');
    before = await w.until((vs) => allRunning(names)(vs) && vs.find((v) => v.name === 'ada')?.restarts === 1, 'ada respawned');
    const traffic = w.load(names, 2);
    await new Promise((r) => setTimeout(r, 300));
    traffic.away(true);
    await w.kill9();
    // No emperor: the apps serve on.
    await new Promise((r) => setTimeout(r, 500));
    w.start();
    const after = await w.until(allRunning(names), 'the second emperor has every vassal running');
    traffic.away(false);
    await new Promise((r) => setTimeout(r, 300));
    const { ok, during, failures } = await traffic.stop();
    t.equal(failures.length, 0, `failed requests: ${failures.slice(0, 3).join('; ')}`);
    t.ok(during > 0, `requests served while no emperor ran and during the adoption: ${during} (of ${ok})`);
    for (const n of names) {
      const [b, a] = [before.find((v) => v.name === n), after.find((v) => v.name === n)];
      t.same([a?.pid, a?.jail], [b?.pid, b?.jail], `${n}: the same app, shim and init (adopted, not restarted)`);
      t.equal(a?.restarts, b?.restarts, `${n}: its restart count carried over (${a?.restarts})`);
    }
    const bea = after.find((v) => v.name === 'bea');
    t.equal(bea?.daemons[0]?.pid, before.find((v) => v.name === 'bea')?.daemons[0]?.pid, 'bea\'s daemon: the same process');
    t.match(w.current()?.out() ?? '', /3 jails of a previous emperor found running: adopting them/);
    // The adopted app is supervised: its death is seen and it is respawned, in the same jail.
    const cid = after.find((v) => v.name === 'cid');
    process.kill(cid?.pid ?? 0, 'SIGKILL');
    const again = await w.until((vs) => { const v = vs.find((x) => x.name === 'cid'); return v?.state === 'running' && v.pid !== null && v.pid !== cid?.pid; }, 'cid respawned by the second emperor');
    t.same(again.find((v) => v.name === 'cid')?.jail, cid?.jail, 'in the same jail');
    t.equal(again.find((v) => v.name === 'cid')?.restarts, 1);
    // A graceful stop of the adopting emperor ends everything the first one built.
    const pids = after.flatMap((v) => [v.pid, v.jail?.shim, v.jail?.init]);
    w.current()?.proc.kill('SIGTERM');
    await w.current()?.exited;
    t.ok(await allGone(pids), 'stopped: no app, shim or init of either emperor left');
    t.same(readdirSync(join(w.runDir, 'shims')), [], 'no control socket left');
    t.same(readdirSync(join(w.runDir, 'state')), [], 'no saved state left (a stopped vassal starts afresh)');
  });

  t.test('what changed while no emperor ran is acted on: a changed file reloads its app in the adopted jail, a removed one is stopped, a new one is started', async (t) => {
    const w = world(t);
    w.write('same.ini', '[uwsgi]', 'uid = demo-alice', 'command = sleep 600');
    w.write('edit.ini', '[uwsgi]', 'uid = demo-alice', 'command = sleep 601');
    w.write('gone.ini', '[uwsgi]', 'uid = demo-bob', 'command = sleep 602');
    w.write('dead.ini', '[uwsgi]', 'uid = demo-bob', 'command = sleep 605');
    w.start();
    const before = await w.until(allRunning(['same', 'edit', 'gone', 'dead']), 'the first emperor');
    await w.kill9();
    // dead: its jail ends too (as when an emperor dies in the middle of stopping it), leaving its saved
    // state, its run dir (a mount) and its cgroups; then its file goes.
    const dead = before.find((v) => v.name === 'dead');
    process.kill(dead?.jail?.shim ?? 0, 'SIGKILL');
    t.ok(await allGone([dead?.jail?.shim, dead?.jail?.init, dead?.pid]), 'dead\'s jail is gone');
    t.ok(existsSync(join(w.runDir, 'state', 'dead.json')) && readFileSync('/proc/self/mountinfo', 'utf8').includes(join(w.runDir, 'vassals', 'dead')), 'what it left: a saved state and a mounted run dir');
    unlinkSync(join(w.dir, 'dead.ini'));
    w.write('edit.ini', '[uwsgi]', 'uid = demo-alice', 'command = sleep 603');
    unlinkSync(join(w.dir, 'gone.ini'));
    w.write('new.ini', '[uwsgi]', 'uid = demo-bob', 'command = sleep 604');
    w.start();
    const after = await w.until((vs) => allRunning(['same', 'edit', 'new'])(vs) && !vs.some((v) => v.name === 'gone') && vs.find((v) => v.name === 'edit')?.pid !== before.find((v) => v.name === 'edit')?.pid, 'the second emperor');
    const [b, a] = [(n: string) => before.find((v) => v.name === n), (n: string) => after.find((v) => v.name === n)];
    t.equal(a('same')?.pid, b('same')?.pid, 'unchanged: the same app');
    t.same(a('edit')?.jail, b('edit')?.jail, 'changed (its command): the same jail');
    if (!t.passing()) t.comment(`edit: ${JSON.stringify(a('edit'))}; what the emperors said of it:\n${w.outs().map((o) => o.split('\n').filter((l) => l.includes('edit')).join('\n')).join('\n--\n')}`);
    t.not(a('edit')?.pid, b('edit')?.pid, 'a new app');
    for (let i = 0; i < 200 && w.inJail('edit', 'sleep 601').length > 0; i++) await new Promise((r) => setTimeout(r, 25)); // the old one's stop
    t.same(w.inJail('edit', 'sleep 601'), [], 'the old app was stopped');
    t.equal(w.inJail('edit', 'sleep 603').length, 1, 'one new app runs');
    const gone = b('gone');
    t.ok(await allGone([gone?.pid, gone?.jail?.shim, gone?.jail?.init]), 'removed: its app and jail are gone');
    // The stop ends with the control socket, the saved state and the run dir removed.
    for (let i = 0; i < 200 && ['shims/gone.sock', 'state/gone.json', 'vassals/gone'].some((f) => existsSync(join(w.runDir, f))); i++) await new Promise((r) => setTimeout(r, 25));
    t.notOk(existsSync(join(w.runDir, 'shims', 'gone.sock')), 'with its control socket');
    t.notOk(existsSync(join(w.runDir, 'state', 'gone.json')), 'and its saved state');
    t.notOk(existsSync(join(w.runDir, 'vassals', 'gone')), 'and its run dir');
    for (let i = 0; i < 200 && existsSync(join(w.runDir, 'vassals', 'dead')); i++) await new Promise((r) => setTimeout(r, 25));
    t.notOk(existsSync(join(w.runDir, 'state', 'dead.json')), 'what a dead jail left: its saved state is removed');
    t.notOk(readFileSync('/proc/self/mountinfo', 'utf8').includes(join(w.runDir, 'vassals', 'dead')), 'its run dir unmounted');
    t.notOk(existsSync(join(w.runDir, 'vassals', 'dead')), 'and removed');
  });

  t.test('a touch-reload path touched while no emperor ran reloads the app once the next emperor has adopted it', async (t) => {
    const w = world(t);
    w.write('touchy.ini', '[uwsgi]', 'uid = demo-alice', 'command = sleep 606', 'touch-reload = /run/reload-me');
    w.start();
    const [before] = await w.until(allRunning(['touchy']), 'the first emperor');
    // The watcher's first look (the path missing) is saved for the next emperor.
    const state = join(w.runDir, 'state', 'touchy.json');
    for (let i = 0; i < 400 && !(existsSync(state) && readFileSync(state, 'utf8').includes('touchSeen')); i++) await new Promise((r) => setTimeout(r, 25));
    t.match(readFileSync(state, 'utf8'), /"touchSeen":\{"app":\{"paths":\["\/run\/reload-me"\],"seen":\["-"\]\}\}/, 'what the watcher saw is saved');
    await w.kill9();
    writeFileSync(join(w.runDir, 'vassals', 'touchy', 'reload-me'), ''); // the customer's touch, while no emperor runs
    w.start();
    const after = await w.until((vs) => allRunning(['touchy'])(vs) && vs[0]?.pid !== before?.pid, 'a reload by the next emperor');
    t.same(after[0]?.jail, before?.jail, 'in the adopted jail');
    t.not(after[0]?.pid, before?.pid, 'a new app: the touch was not missed');
  });

  t.test('SIGKILL of the emperor during a spawn, a reload and a stop: the next emperor finishes or redoes each; nothing doubles or leaks', async (t) => {
    const w = world(t);
    w.start();
    await w.until(() => true, 'the emperor answers');
    // During spawns: files written, the emperor killed while it builds and starts them.
    for (let i = 0; i < 6; i++) w.write(`s${i}.ini`, '[uwsgi]', 'uid = demo-alice', `command = sleep 70${i}`, 'attach-daemon = sleep 800');
    await new Promise((r) => setTimeout(r, 150));
    await w.kill9();
    w.start();
    const names = Array.from({ length: 6 }, (_, i) => `s${i}`);
    await w.until(allRunning(names), 'every spawn finished or was redone');
    for (const [i, n] of names.entries()) {
      t.equal(w.inJail(n, `sleep 70${i}`).length, 1, `${n}: one app`);
      t.equal(w.inJail(n, 'sleep 800').length, 1, `${n}: one daemon`);
    }
    // During a reload: the file changed, the emperor killed while the new app starts and the old one stops.
    let vs = await w.vassals();
    const old = vs.find((v) => v.name === 's0');
    w.write('s0.ini', '[uwsgi]', 'uid = demo-alice', 'command = sleep 710', 'attach-daemon = sleep 800');
    await new Promise((r) => setTimeout(r, 400));
    await w.kill9();
    w.start();
    vs = await w.until((x) => allRunning(names)(x) && w.inJail('s0', 'sleep 710').length === 1 && w.inJail('s0', 'sleep 700').length === 0, 'the reload was finished or redone');
    t.same(vs.find((v) => v.name === 's0')?.jail, old?.jail, 's0: reloaded in its jail');
    t.same(w.inJail('s0', 'sleep 7').length, 1, 's0: exactly one app, the new one');
    // During a stop: the file removed, the emperor killed while it stops the vassal.
    const s1 = vs.find((v) => v.name === 's1');
    unlinkSync(join(w.dir, 's1.ini'));
    await new Promise((r) => setTimeout(r, 100));
    await w.kill9();
    w.start();
    await w.until((x) => !x.some((v) => v.name === 's1') && allRunning(names.filter((n) => n !== 's1'))(x), 'the stop was finished');
    t.ok(await allGone([s1?.pid, s1?.jail?.shim, s1?.jail?.init]), 's1: stopped, nothing of it left');
    t.same(w.inJail('s1', 'sleep'), []);
    // A second emperor on the same run dir is refused while this one runs.
    const second = spawn(emperorBin, [w.dir, '--run-dir', w.runDir, '--log-dir', join(w.root, 'log'), '--cgroup-parent', w.cgroupParent], { stdio: ['ignore', 'pipe', 'pipe'] });
    let said = '';
    second.stderr.on('data', (d: Buffer) => (said += d.toString()));
    second.stdout.on('data', (d: Buffer) => (said += d.toString()));
    const code = await new Promise((r) => second.on('exit', r));
    t.not(code, 0, 'a second emperor exits with an error');
    t.match(said, /expected no other emperor on this run dir, got one running as pid \d+/, 'naming the running one');
    const final = await w.vassals();
    t.equal(final.length, 5, 'and the running one is untouched');
    // Every shim and app ends with the last emperor's stop.
    const pids = final.flatMap((v) => [v.pid, v.jail?.shim, v.jail?.init]);
    w.current()?.proc.kill('SIGTERM');
    await w.current()?.exited;
    t.ok(await allGone(pids), 'nothing left after the stop');
  });

  t.test('emperor upgrade under load: the jails go to a newly started emperor, no app restarted, zero failed requests; a new emperor that fails hands them back', async (t) => {
    // The emperor is started through a script that the test then replaces: what an upgrade installs.
    const scratch = mkdtempSync(join(tmpdir(), 'emperor-test-upgrade-'));
    t.teardown(() => rmSync(scratch, { recursive: true, force: true }));
    const bin = join(scratch, 'emperor.mjs');
    const install = (body: string) => writeFileSync(bin, `#!${process.execPath}\n${body}\n`, { mode: 0o755 });
    install(`await import(${JSON.stringify(pathToFileURL(realpathSync(emperorBin)).href)});`);
    const w = world(t, bin);
    const names = ['up1', 'up2'];
    for (const n of names) w.write(`${n}.ini`, '[uwsgi]', 'uid = demo-alice', 'socket = app.sock', nodeApp(n), 'attach-daemon = sleep 900');
    const first = w.start();
    const before = await w.until((vs) => allRunning(names)(vs) && vs.every((v) => v.pid !== null), 'the first emperor');
    const traffic = w.load(names);
    const cli = (...args: string[]) => new Promise<{ code: number | null; out: string }>((res) => {
      const p = spawn(emperorBin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      p.stdout.on('data', (d: Buffer) => (out += d.toString()));
      p.stderr.on('data', (d: Buffer) => (out += d.toString()));
      p.on('exit', (code) => res({ code, out }));
    });
    // A lock left by a dead emperor whose pid is now another process's: that process is never signalled.
    const bystander = spawn('sleep', ['60']);
    t.teardown(() => bystander.kill('SIGKILL'));
    const staleRun = join(scratch, 'stale-run');
    mkdirSync(staleRun);
    writeFileSync(join(staleRun, 'emperor.pid'), `${bystander.pid} 1\n`);
    const stale = await cli('upgrade', '--run-dir', staleRun);
    t.equal(stale.code, 1, `refused: ${stale.out.trim()}`);
    t.match(stale.out, /emperor\.pid: expected a running emperor, got a lock whose process is gone/);
    t.ok(running(bystander.pid), 'the process that reused the pid is untouched');
    // A broken upgrade: the new code exits at once. The old emperor takes every jail back.
    install('process.exit(3);');
    const bad = await cli('upgrade', '--run-dir', w.runDir);
    t.not(bad.code, 0, `a failed upgrade is an error: ${bad.out.trim()}`);
    t.match(bad.out, /expected a new emperor to take over from pid \d+, got: the new emperor did not take over \(it exited \(code 3\)\); this one took every jail back/);
    t.ok(running(first.proc.pid), 'the old emperor runs on');
    let vs = await w.until(allRunning(names), 'the old emperor has them back');
    t.same(vs.map((v) => v.pid), before.map((v) => v.pid), 'no app restarted');
    t.match(first.out(), /the new emperor did not take over \(it exited \(code 3\)\); taking every jail back/);
    // A good upgrade.
    install(`await import(${JSON.stringify(pathToFileURL(realpathSync(emperorBin)).href)});`);
    const good = await cli('upgrade', '--run-dir', w.runDir);
    t.equal(good.code, 0, good.out);
    t.match(good.out, new RegExp(`handed over from pid ${first.proc.pid} to pid \\d+: 2 vassals, 2 running`));
    await first.exited;
    const newPid = Number(readFileSync(join(w.runDir, 'emperor.pid'), 'utf8').split(' ')[0]);
    t.not(newPid, first.proc.pid, 'a new emperor holds the run dir');
    vs = await w.until(allRunning(names), 'the new emperor');
    await new Promise((r) => setTimeout(r, 300));
    const { ok, failures } = await traffic.stop();
    t.equal(failures.length, 0, `failed requests: ${failures.slice(0, 3).join('; ')}`);
    t.ok(ok > 0, `requests served: ${ok}`);
    t.same(vs.map((v) => [v.pid, v.jail, v.daemons[0]?.pid]), before.map((v) => [v.pid, v.jail, v.daemons[0]?.pid]), 'the same apps, jails and daemons');
    // The new emperor is not our child: stop it by its pid, and nothing is left.
    const pids = vs.flatMap((v) => [v.pid, v.jail?.shim, v.jail?.init, v.daemons[0]?.pid]);
    process.kill(newPid, 'SIGTERM');
    t.ok(await allGone([newPid, ...pids]), 'stopped: the new emperor and everything it adopted');
  });
}
