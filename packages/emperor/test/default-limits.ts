import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { requireJails, startEmperor } from './fixtures/emperor.js';
import { asCustomer, PY_FRAME } from './fixtures/hostile.js';

const MiB = 1024 * 1024;

if (requireJails(t)) {
  t.test('a vassal file with no limit keys gets the operator\'s defaults: cgroup limits, rlimits on every process, a small run dir', async (t) => {
    const e = await startEmperor(t);
    e.write('plain.ini', '[uwsgi]', 'uid = demo-alice', 'command = sleep 600');
    e.write('other.ini', '[uwsgi]', 'uid = demo-bob', 'command = sleep 600');
    await e.waitFor((x) => x.vassal === 'plain' && x.event === 'spawned');
    await e.waitFor((x) => x.vassal === 'other' && x.event === 'spawned');
    const jail = e.emperor.vassals.get('plain')?.jail;
    // The file in whichever of the jail's cgroup directories has it (v1: one per hierarchy; v2: one for all).
    const cat = (file: string): string | undefined => {
      for (const d of jail?.cgroups.dirs ?? []) if (existsSync(join(d, file))) return readFileSync(join(d, file), 'utf8').trim();
      return undefined;
    };
    t.equal(cat('pids.max'), '512', 'pids.max');
    if (cat('memory.max') !== undefined) {
      t.equal(cat('memory.max'), String(512 * MiB), 'memory limit (v2)');
      t.equal(cat('cpu.max'), '100000 100000', 'one CPU (v2)');
    } else {
      t.equal(cat('memory.limit_in_bytes'), String(512 * MiB), 'memory limit');
      t.equal(cat('cpu.cfs_quota_us'), '100000', 'one CPU');
    }
    const r = await asCustomer(jail, `
import resource, os
for n in ('NOFILE', 'NPROC', 'CORE', 'MEMLOCK', 'STACK', 'FSIZE', 'AS'):
    s, h = resource.getrlimit(getattr(resource, 'RLIMIT_' + n))
    print(n, s, h)
st = os.statvfs('/run')
print('run', st.f_blocks * st.f_frsize, st.f_files)
try:
    with open('/run/fill', 'wb') as f:
        for _ in range(64): f.write(b'x' * (1 << 20))
    print('filled')
except OSError as ex:
    print('full', ex.errno)
os.unlink('/run/fill')
`);
    t.equal(r.code, 0, r.stderr);
    const lines = Object.fromEntries(r.stdout.trim().split('\n').map((l) => [l.split(' ')[0], l.split(' ').slice(1).join(' ')]));
    const INF = '-1 -1';
    t.same(lines, {
      NOFILE: '1024 4096', NPROC: '4096 4096', CORE: '0 0', MEMLOCK: `${8 * MiB} ${8 * MiB}`, STACK: `${8 * MiB} ${64 * MiB}`, FSIZE: `${16 * 1024 * MiB} ${16 * 1024 * MiB}`, AS: INF,
      run: `${16 * MiB} 4096`, full: '28',
    }, 'rlimits as set by the helper; /run is a 16M tmpfs, and filling it fails with ENOSPC');
    t.equal(e.emperor.vassals.get('other')?.state, 'running', 'the neighbour is untouched');
  });

  t.test('a user without a home directory runs from /, for the app and a pty login (daemons and cron go through the same exec), and the emperor says so once', async (t) => {
    const e = await startEmperor(t);
    e.write('homeless.ini', '[uwsgi]', 'uid = demo-nohome', 'command = echo "pwd=$(pwd) home=$HOME"; sleep 600');
    await e.waitFor((x) => x.vassal === 'homeless' && x.event === 'spawned');
    const v = e.emperor.vassals.get('homeless');
    t.equal(v?.state, 'running', 'not cursed');
    await new Promise((r) => setTimeout(r, 300));
    t.equal(readFileSync(join(e.root, 'log', 'homeless', 'app.log'), 'utf8'), 'pwd=/ home=/\n');
    const r = await asCustomer(v?.jail, `${PY_FRAME}
s = pty({'command': 'echo "login pwd=$(pwd) home=$HOME"'})
print(read_all(s)[4:].decode(errors='replace'))
`);
    t.match(r.stdout, /login pwd=\/ home=\//, r.stderr);
    await v?.reload();
    t.equal(e.logs.filter((l) => l.vassal === 'homeless' && /home \/nonexistent does not exist/.test(l.msg)).length, 1, 'said once');
  });

  t.test('an app the kernel kills at its memory-limit is reported as an oom event (count, limit, last error) and respawned in the same jail', async (t) => {
    const e = await startEmperor(t, { minUptimeMs: 0 });
    // A hog on its first run, then (the marker in its home-less /run) a sleeper: one OOM, then it stays up.
    e.write('hog.ini', '[uwsgi]', 'uid = demo-alice', 'memory-limit = 48M',
      'command = if [ -e /run/ran ]; then exec sleep 600; fi; touch /run/ran; exec python3 -c "exec(\'a = []\\nwhile True: a.append(bytearray(1 << 20))\')"');
    e.write('calm.ini', '[uwsgi]', 'uid = demo-bob', 'command = sleep 600');
    await e.waitFor((x) => x.vassal === 'calm' && x.event === 'spawned');
    const oom = await e.waitFor((x) => x.vassal === 'hog' && x.event === 'oom');
    t.match(oom, { memoryLimitBytes: 48 * MiB, error: /OOM killer ended the app .*memory-limit of 50331648 bytes; raise memory-limit/ });
    t.ok(Number(oom.oomKills) >= 1, `counted (${String(oom.oomKills)})`);
    const jail = e.emperor.vassals.get('hog')?.jail;
    const respawn = await e.waitFor((x) => x.vassal === 'hog' && x.event === 'spawned' && x.respawn === true);
    t.ok(respawn, 'respawned');
    t.equal(e.emperor.vassals.get('hog')?.jail, jail, 'in the same jail (its init was spared)');
    t.equal(e.emperor.vassals.get('hog')?.jail?.usage().oomKills, oom.oomKills, 'the count stays readable');
    t.ok(e.logs.some((l) => l.vassal === 'hog' && l.msg === 'hog: oom' && l.level === 40), 'logged as a warning');
    t.equal(e.emperor.vassals.get('calm')?.state, 'running', 'the neighbour is untouched');
  });
}
