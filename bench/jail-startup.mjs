#!/usr/bin/env node
// Jail start-up, side by side with bubblewrap in one run (issue 3).
//   ours:  Jail.create (cgroups with memory, cpu and pids limits; clone; pivot_root; /proc /dev /tmp /run)
//          + /bin/true started by the jail's shim as the vassal user (setns, caps, seccomp) + its exit + stop
//   bwrap: bwrap --unshare-all --ro-bind / / --proc /proc --dev /dev true
//   helperNoCgroup: our helper's create + exec with the same mounts but no cgroups (the C side alone)
//   oursExecOnly: /bin/true started by the shim of an already running jail (an app, daemon or cron run)
//   helperExecOnly: the same through the exec helper, a spawn from Node (a pty session or an ssh command)
//   oursB: ours with another build of the helper (EMPEROR_BENCH_HELPER_B=PATH), for an A/B of a helper change
//          (docs/benchmarks.md: clone3 CLONE_INTO_CGROUP against the build that migrated each process)
// Runs alternate between the cases so that machine noise hits all alike. Usage: node bench/jail-startup.mjs [N]
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, chownSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseVassalText } from '@emperor/config';
import { detectHierarchies, helperPath, Jail, mountArgs, removeCgroupParent } from '@emperor/jail';

const N = Number(process.argv[2] ?? 200);
const PARENT = `emperor-bench-${process.pid}`;
const r = parseVassalText('[uwsgi]\nuid = demo-alice\ncommand = true\nmemory-limit = 256M\ncpu-limit = 100%\npids-limit = 64\n', 'bench.ini');
if (!r.ok) throw new Error('bad bench spec');
const runDir = mkdtempSync(join(tmpdir(), 'emperor-run-bench-'));
const controlDir = join(runDir, '..', `emperor-bench-ctl-${process.pid}`);
chownSync(runDir, 0, r.spec.gid);

let bornInCgroup;
const ours = async () => {
  const jail = await Jail.create(r.spec, { runDir, controlDir, cgroupParent: PARENT });
  bornInCgroup ??= jail.bornInCgroup;
  const e = await jail.start('bench', { argv: ['/bin/true'] }).exited;
  if (e.code !== 0) throw new Error(`true exited ${e.code}`);
  await jail.stop();
};
let warm;
const oursExecOnly = async () => {
  warm ??= await Jail.create({ ...r.spec, name: 'bench-warm' }, { runDir, controlDir, cgroupParent: PARENT });
  const e = await warm.start('bench', { argv: ['/bin/true'] }).exited;
  if (e.code !== 0) throw new Error(`true exited ${e.code}`);
};
// The exec helper's way into a running jail (a pty session, a command of `emperor pty`): a spawn from Node.
const helperExecOnly = async () => {
  warm ??= await Jail.create({ ...r.spec, name: 'bench-warm' }, { runDir, controlDir, cgroupParent: PARENT });
  const e = await warm.exec({ argv: ['/bin/true'] }).exited;
  if (e.code !== 0) throw new Error(`true exited ${e.code}`);
};
// Every process is started the same way (node:child_process.spawn), as Jail does for its helpers.
const run = (cmd, args) =>
  new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: 'ignore' });
    c.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} exited ${code}`))));
  });
const bwrap = () => run('bwrap', ['--unshare-all', '--ro-bind', '/', '/', '--proc', '/proc', '--dev', '/dev', 'true']);
// The helper alone, same mounts as ours, but no cgroups: what the C side costs next to bwrap.
const helper = helperPath();
const mounts = mountArgs(r.spec, { runDir });
const helperNoCgroup = async () => {
  const shim = spawn(helper, ['create', '--status-fd', '3', '--hostname', 'bench', ...mounts], { stdio: ['ignore', 'ignore', 'inherit', 'pipe'] });
  const ready = await new Promise((resolve) => shim.stdio[3].once('data', (d) => resolve(JSON.parse(d.toString().split('\n')[0]))));
  await run(helper, ['exec', '--init', String(ready.init), String(ready.init_start), '--uid', String(r.spec.uid), '--gid', String(r.spec.gid), '--', '/bin/true']);
  const gone = new Promise((resolve) => shim.on('exit', resolve));
  shim.kill('SIGTERM');
  await gone;
};

const helperB = process.env.EMPEROR_BENCH_HELPER_B;
const oursB = async () => {
  const saved = process.env.EMPEROR_JAIL_HELPER;
  process.env.EMPEROR_JAIL_HELPER = helperB;
  try {
    await ours();
  } finally {
    if (saved === undefined) delete process.env.EMPEROR_JAIL_HELPER;
    else process.env.EMPEROR_JAIL_HELPER = saved;
  }
};

const cases = { ours, bwrap, helperNoCgroup, oursExecOnly, helperExecOnly, ...(helperB ? { oursB } : {}) };
const times = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
for (let i = 0; i < 10; i++) for (const f of Object.values(cases)) await f(); // warm-up
for (let i = 0; i < N; i++) {
  for (const [name, f] of Object.entries(cases)) {
    const t0 = process.hrtime.bigint();
    await f();
    times[name].push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
}
await warm?.stop();
removeCgroupParent(PARENT);
rmSync(runDir, { recursive: true, force: true });
rmSync(controlDir, { recursive: true, force: true });

const q = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
};
const stats = Object.fromEntries(Object.entries(times).map(([k, xs]) => [k, { median: q(xs, 0.5), p10: q(xs, 0.1), p90: q(xs, 0.9) }]));
const fmt = (v) => v.toFixed(2);
console.log(`runs: ${N} each, interleaved`);
for (const [k, s] of Object.entries(stats)) console.log(`${k.padEnd(13)} median ${fmt(s.median)} ms  p10 ${fmt(s.p10)}  p90 ${fmt(s.p90)}`);
console.log(`ratio ours/bwrap (medians): ${(stats.ours.median / stats.bwrap.median).toFixed(2)}`);
if (stats.oursB) console.log(`ratio ours/oursB (medians): ${(stats.ours.median / stats.oursB.median).toFixed(2)}`);
console.log(`cgroup v${detectHierarchies().some((h) => h.version === 2) ? 2 : 1}; jail init born in its cgroup: ${bornInCgroup}`);
console.log(JSON.stringify({ n: N, stats }));
