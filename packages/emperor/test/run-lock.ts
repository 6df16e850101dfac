import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { RunLock } from '../src/run-lock.js';
import { emperorBin, startDaemon } from './fixtures/daemon-bin.js';
import { requireJails } from './fixtures/emperor.js';
import { bound } from './fixtures/time.js';

const scratch = (t: Parameters<Parameters<typeof t.test>[1]>[0]): string => {
  const dir = mkdtempSync(join(tmpdir(), 'emperor-test-lock-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
};

t.test('a lock left by an emperor that died, or naming a pid now reused by another process, is taken over', async (t) => {
  const dir = scratch(t);
  // A pid that cannot be alive (above pid_max).
  writeFileSync(join(dir, 'emperor.pid'), '99999999 12345\n');
  const a = RunLock.acquire(dir);
  t.match(readFileSync(join(dir, 'emperor.pid'), 'utf8'), new RegExp(`^${process.pid} \\d+\\n$`), 'ours now');
  a.release();
  t.notOk(existsSync(join(dir, 'emperor.pid')), 'released');
  // PID 1 is alive, but did not start at tick 12345: a reused pid, not an emperor.
  writeFileSync(join(dir, 'emperor.pid'), '1 12345\n');
  const b = RunLock.acquire(dir);
  t.ok(b, 'taken over');
  b.release();
});

t.test('release removes only a lock that is still ours', async (t) => {
  const dir = scratch(t);
  const a = RunLock.acquire(dir);
  writeFileSync(join(dir, 'emperor.pid'), '1 0\n');
  a.release();
  t.equal(readFileSync(join(dir, 'emperor.pid'), 'utf8'), '1 0\n', 'someone else\'s file is left alone');
});

if (requireJails(t)) {
  t.test('a second emperor on the same run dir refuses to start, naming the first; the first is untouched', async (t) => {
    const first = startDaemon(t, { 'one.ini': '[uwsgi]\nuid = demo-alice\ncommand = sleep 600\n' });
    const deadline = Date.now() + bound(30_000);
    while (!/first scan done/.test(first.output()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const second = spawnSync(emperorBin, [first.dir, '--run-dir', first.runDir, '--log-dir', join(first.root, 'log2'), '--cgroup-parent', `${first.cgroupParent}-2`, '--log-format', 'journal'], { encoding: 'utf8', timeout: bound(30_000) });
    t.equal(second.status, 1, 'it exits 1');
    t.match(second.stdout, new RegExp(`^<3>emperor failed to start: ${first.runDir}: expected no other emperor on this run dir, got one running as pid ${first.proc.pid} \\(code=EMPEROR_ERR_ALREADY_RUNNING hint="stop it first`, 'm'));
    t.ok(existsSync(join(first.runDir, 'control.sock')), 'the first one\'s control socket is still there');
    const status = spawnSync(emperorBin, ['status', '--json', '--run-dir', first.runDir], { encoding: 'utf8', timeout: bound(30_000) });
    t.match(JSON.parse(status.stdout), [{ name: 'one', state: 'running' }], 'and it still governs its vassal');
    t.equal(RunLock.holder(join(first.runDir, 'emperor.pid')), first.proc.pid, 'the lock still names it');
  });
}
