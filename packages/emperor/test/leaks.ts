import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import t from 'tap';
import { detectHierarchies } from '@emperor/jail';
import { alive, get, nodeApp, requireJails, startEmperor } from './fixtures/emperor.js';

const fdCount = () => readdirSync('/proc/self/fd').length;
const fdList = () => readdirSync('/proc/self/fd').map((f) => {
  try {
    return `${f}->${readlinkSync(`/proc/self/fd/${f}`)}`;
  } catch {
    return f;
  }
});
const mountCount = () => readFileSync('/proc/self/mountinfo', 'utf8').split('\n').length;

if (requireJails(t)) {
  t.test('many spawn, reload and remove cycles leave no process, cgroup, mount, socket or fd behind', async (t) => {
    const e = await startEmperor(t);
    const pids = new Set<number>();
    // One warm-up cycle so that lazily opened handles (inotify, the control socket) are counted in the baseline.
    e.write('warm.ini', '[uwsgi]', 'uid = demo-alice', 'socket = app.sock', nodeApp());
    await e.waitFor((x) => x.vassal === 'warm' && x.event === 'spawned');
    e.remove('warm.ini');
    await e.waitFor((x) => x.vassal === 'warm' && x.event === 'removed');
    await new Promise((r) => setTimeout(r, 200));
    const fds = fdCount();
    const mounts = mountCount();
    for (let round = 0; round < 8; round++) {
      const names = ['a', 'b', 'c'].map((n) => `cyc${round}${n}`);
      const seen = e.events.length;
      for (const n of names) e.write(`${n}.ini`, '[uwsgi]', `uid = demo-${n.endsWith('a') ? 'alice' : n.endsWith('b') ? 'bob' : 'carol'}`, 'socket = app.sock', nodeApp('v1'));
      for (const n of names) {
        const ev = await e.waitFor((x) => x.vassal === n && x.event === 'spawned', seen);
        pids.add(ev.pid as number);
        const v = e.emperor.vassals.get(n);
        if (v?.jail) for (const p of [v.jail.shimPid, v.jail.initPid]) pids.add(p);
      }
      const mid = e.events.length;
      for (const n of names) e.write(`${n}.ini`, '[uwsgi]', `uid = demo-${n.endsWith('a') ? 'alice' : n.endsWith('b') ? 'bob' : 'carol'}`, 'socket = app.sock', nodeApp('v2'));
      for (const n of names) {
        const ev = await e.waitFor((x) => x.vassal === n && x.event === 'reloaded', mid);
        pids.add(ev.pid as number);
        t.match(await get(e.socketOf(n)), /^v2:/);
      }
      const end = e.events.length;
      for (const n of names) e.remove(`${n}.ini`);
      for (const n of names) await e.waitFor((x) => x.vassal === n && x.event === 'removed', end);
    }
    t.equal(e.emperor.vassals.size, 0, 'no vassal left');
    t.same([...pids].filter(alive), [], `none of the ${pids.size} processes (apps, shims, inits) is alive`);
    // Pipes of exited helpers are closed by node a tick after their processes' exit events: give that a
    // bounded moment; a real leak stays and fails.
    for (let i = 0; i < 100 && fdCount() !== fds; i++) await new Promise((r) => setTimeout(r, 20));
    t.equal(fdCount(), fds, `the emperor holds as many fds as before (${fdList().join(' ')})`);
    t.equal(mountCount(), mounts, 'no mount appeared on the host');
    t.same(readdirSync(`${e.root}/run/vassals`), [], 'no run dir or socket left');
    const parent = e.emperor.options.cgroupParent;
    const left = detectHierarchies().flatMap((h) => (existsSync(`${h.own}/${parent}`) ? readdirSync(`${h.own}/${parent}`, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => `${h.own}/${parent}/${d.name}`) : []));
    t.same(left, [], 'no vassal cgroup left');
  });
}
