import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import t from 'tap';
import { cleanupCgroups, makeJail, requireJails, sh, specOf } from './fixtures/jail.js';
import { detectHierarchies } from '../src/index.js';

if (requireJails(t)) {
  cleanupCgroups(t);

  // A bounded bomb: try to fork 100 sleeping children, count the forks the kernel refuses, then clean up.
  const BOMB = [
    'import os, signal',
    'kids, refused = [], 0',
    'for i in range(100):',
    '    try:',
    '        pid = os.fork()',
    '    except BlockingIOError:',
    '        refused += 1',
    '        continue',
    '    if pid == 0:',
    '        signal.pause()',
    '        os._exit(0)',
    '    kids.append(pid)',
    'print(len(kids), refused, flush=True)',
    'for k in kids: os.kill(k, signal.SIGKILL)',
    'for k in kids: os.waitpid(k, 0)',
  ].join('\n');

  t.test('a fork bomb stops at the pids limit, and the host can still fork', async (t) => {
    const jail = await makeJail(t, specOf('lim-pids', 'pids-limit = 16'));
    const r = await sh(jail, `python3 -c '${BOMB}'`);
    const [forked = 0, refused = 0] = r.stdout.trim().split(' ').map(Number);
    t.ok(forked < 16, `at most 15 children besides the shell and python (${forked})`);
    t.ok(refused >= 85, `the kernel refused the other forks with EAGAIN (${refused})`);
    t.equal(execFileSync('sh', ['-c', 'echo host can fork'], { encoding: 'utf8' }), 'host can fork\n');
  });

  t.test('a memory hog is OOM-killed at the memory limit; the OOM kill is counted; the host is fine', async (t) => {
    const jail = await makeJail(t, specOf('lim-mem', 'memory-limit = 32M'));
    const p = jail.exec({ argv: ['python3', '-c', 'a = []\nwhile True: a.append(bytearray(1 << 20))'] });
    const exit = await p.exited;
    t.same([exit.code, exit.signal], [null, 9], 'killed by SIGKILL, reported as a signal (not also as code 137)');
    t.ok(jail.usage().oomKills >= 1, `oom_kill counted (${jail.usage().oomKills})`);
    const after = await sh(jail, 'echo still-usable');
    t.equal(after.stdout, 'still-usable\n', 'the jail itself keeps working');
  });

  t.test('on an OOM kill, cgroup v2 ends every process of the jail but its init (memory.oom.group), v1 only the hog; the jail lives on', async (t) => {
    const v2 = detectHierarchies().some((h) => h.version === 2 && h.controllers.includes('memory'));
    const jail = await makeJail(t, specOf('lim-oomgroup', 'memory-limit = 32M'));
    const bystander = jail.exec({ argv: ['sleep', '600'] });
    const { pid } = await bystander.started;
    const hog = await jail.exec({ argv: ['python3', '-c', 'a = []\nwhile True: a.append(bytearray(1 << 20))'] }).exited;
    t.same([hog.code, hog.signal], [null, 9], 'the hog is SIGKILLed');
    if (v2) {
      const exit = await bystander.exited;
      t.same([exit.code, exit.signal], [null, 9], 'v2: the whole group went with it');
    } else {
      t.ok(existsSync(`/proc/${pid}`), 'v1: the bystander still runs');
      bystander.kill('SIGKILL');
      await bystander.exited;
    }
    t.ok(jail.running, 'the init was spared: the jail is still up');
    t.ok(jail.usage().oomKills >= 1, `and its OOM count is readable (${jail.usage().oomKills})`);
    t.equal((await sh(jail, 'echo after')).stdout, 'after\n');
  });

  t.test('on cgroup v2 the init and every process are born in the jail\'s cgroup (clone3 CLONE_INTO_CGROUP); on v1 they are moved in', async (t) => {
    const v2 = detectHierarchies().some((h) => h.version === 2);
    const jail = await makeJail(t, specOf('lim-born'));
    t.equal(jail.bornInCgroup, v2, `the init: born in its cgroup = ${jail.bornInCgroup}`);
    const p = jail.exec({ argv: ['sleep', '600'] });
    const started = await p.started;
    t.equal(started.bornInCgroup, v2, `an exec'd process: born in its cgroup = ${started.bornInCgroup}`);
    // Either way it is in every one of the jail's cgroups before it runs anything (the host's view).
    const paths = readFileSync(`/proc/${started.pid}/cgroup`, 'utf8').split('\n').map((l) => l.split(':').slice(2).join(':'));
    for (const d of jail.cgroups.dirs) t.ok(paths.some((path) => path.length > 1 && d.endsWith(path)), `${started.pid} is in ${d}`);
    p.kill('SIGKILL');
    await p.exited;
  });

  t.test('cgroup.kill (v2) or a kill per pid (v1) ends a jail whose processes keep forking', async (t) => {
    const jail = await makeJail(t, specOf('lim-kill', 'pids-limit = 64'));
    const p = jail.exec({ argv: ['/bin/sh', '-c', 'while :; do sleep 600 & done'] });
    await p.started;
    await new Promise((r) => setTimeout(r, 200));
    t.ok(jail.cgroups.pids().length > 2, `it forked (${jail.cgroups.pids().length} processes)`);
    jail.cgroups.kill();
    const exit = await jail.exited;
    t.ok(exit.signal === 9 || exit.code !== 0, `the init was killed too (${JSON.stringify(exit)})`);
    t.same(jail.cgroups.pids(), [], 'nothing is left in its cgroups');
  });

  t.test('cpu quota and weight, memory and pids limits are written to the cgroup', async (t) => {
    // A cgroup-opt of the running hierarchy: v1's swappiness, v2's memory.high.
    const v2 = detectHierarchies().some((h) => h.version === 2 && h.controllers.includes('memory'));
    const opt = v2 ? 'memory.high=41943040' : 'memory.swappiness=0';
    const jail = await makeJail(t, specOf('lim-files', 'memory-limit = 48M', 'cpu-limit = 50%', 'cpu-weight = 200', 'pids-limit = 40', `cgroup-opt = ${opt}`));
    t.ok(jail.cgroups.dirs.length >= (v2 ? 1 : 3), `one directory per hierarchy (${jail.cgroups.dirs.length}: cgroup v${v2 ? 2 : 1})`);
    const cat = (file: string): string => {
      for (const d of jail.cgroups.dirs) {
        try {
          return execFileSync('cat', [`${d}/${file}`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
        } catch {
          // not in this hierarchy
        }
      }
      return 'missing';
    };
    if (cat('memory.limit_in_bytes') !== 'missing') {
      t.equal(cat('memory.limit_in_bytes'), String(48 * 1024 * 1024));
      t.equal(cat('cpu.cfs_quota_us'), '50000');
      t.equal(cat('cpu.cfs_period_us'), '100000');
      t.equal(cat('cpu.shares'), '2048', 'weight 200 is 2048 shares');
      t.equal(cat('memory.swappiness'), '0', 'cgroup-opt is written');
    } else {
      t.equal(cat('memory.max'), String(48 * 1024 * 1024));
      t.equal(cat('cpu.max'), '50000 100000');
      t.equal(cat('cpu.weight'), '200');
      t.equal(cat('memory.high'), '41943040', 'cgroup-opt is written');
    }
    t.equal(cat('pids.max'), '40');
    for (const d of jail.cgroups.dirs) t.ok(d.includes(`/emperor-test-${process.pid}/lim-files`), `${d} is under the test's own parent`);
  });

  t.test('a cgroup-opt file the running hierarchy does not have is refused by name, with the way out', async (t) => {
    const v2 = detectHierarchies().some((h) => h.version === 2 && h.controllers.includes('memory'));
    // The other version's file: v1's swappiness on v2 (what vassals.example/dave.ini once set), v2's memory.high on v1.
    const file = v2 ? 'memory.swappiness' : 'memory.high';
    const err = await makeJail(t, specOf('lim-badopt', `cgroup-opt = ${file}=1`)).catch((e: Error) => e);
    t.match(err, { code: 'EMPEROR_ERR_JAIL_CGROUP', message: `cgroup-opt ${file}: expected a control file of this host's cgroup v${v2 ? 2 : 1} memory controller, got none of that name` });
    if (v2) t.match(err, { hint: /a cgroup v1 file; on v2 use the vassal keys/ });
  });

  t.test('limits can be changed while the jail runs', async (t) => {
    const jail = await makeJail(t, specOf('lim-live', 'pids-limit = 40'));
    jail.cgroups.apply({ pids: 8 });
    const r = await sh(jail, `python3 -c '${BOMB}'`);
    const [forked = 0] = r.stdout.trim().split(' ').map(Number);
    t.ok(forked <= 6, `the new limit of 8 holds: ${forked} children besides sh and python`);
  });
}
