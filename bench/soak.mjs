#!/usr/bin/env node
// Soak: N cycles of drop / rewrite (reload) / remove of a vassal file against the real `emperor` binary, as a
// panel does it, reporting the emperor's fds and RSS and what is left on the machine (helper processes,
// mounts, cgroups, veths, run dirs) before and after. Usage: node bench/soak.mjs [CYCLES=1000] [AT_ONCE=4]
// AT_ONCE vassals are cycled side by side (each cycle of each is counted).
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

const CYCLES = Number(process.argv[2] ?? 1000);
const AT_ONCE = Number(process.argv[3] ?? 4);
const ROOT = '/tmp/emperor-bench-soak';
const BIN = fileURLToPath(new URL('../node_modules/.bin/emperor', import.meta.url));
const PARENT = `emperor-bench-soak-${process.pid}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

rmSync(ROOT, { recursive: true, force: true });
const dir = join(ROOT, 'vassals');
const run = join(ROOT, 'run');
mkdirSync(dir, { recursive: true });
const proc = spawn(BIN, [dir, '--run-dir', run, '--log-dir', join(ROOT, 'log'), '--cgroup-parent', PARENT], { stdio: ['ignore', 'ignore', 'inherit'] });

const api = (method, path) =>
  new Promise((resolve) => {
    const req = request({ socketPath: join(run, 'control.sock'), method, path, agent: false }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('error', () => resolve({ status: 0, body: '' }));
    req.end();
  });
const until = async (pred, what, limitMs = 60_000) => {
  const start = Date.now();
  while (!(await pred())) {
    if (Date.now() - start > limitMs) throw new Error(`soak: timed out waiting for ${what}`);
    await sleep(5);
  }
};
const view = async (name) => {
  const r = await api('GET', `/vassals/${name}`);
  return r.status === 200 ? JSON.parse(r.body) : undefined;
};

/** The emperor's processes: the one we started (`emperor DIR` is the daemon itself since issue 10). */
const emperorPids = () => [proc.pid];
const measure = () => {
  let fds = 0;
  let rss = 0;
  for (const p of emperorPids()) {
    try {
      fds += readdirSync(`/proc/${p}/fd`).length;
      rss += Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1] ?? 0) * 1024;
    } catch {
      // gone
    }
  }
  const helpers = readdirSync('/proc').filter((x) => /^\d+$/.test(x)).filter((p) => {
    try {
      return readlinkSync(`/proc/${p}/exe`).includes('emperor-jail') && readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(PARENT);
    } catch {
      return false;
    }
  }).length;
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(ROOT)).length;
  let cgroups = 0;
  for (const h of readdirSync('/sys/fs/cgroup')) {
    try {
      const own = readFileSync('/proc/self/cgroup', 'utf8').split('\n').find((l) => l.split(':')[1]?.split(',').includes(h))?.split(':')[2] ?? '/';
      const base = join('/sys/fs/cgroup', h, own, PARENT);
      if (existsSync(base)) cgroups += readdirSync(base, { withFileTypes: true }).filter((e) => e.isDirectory()).length;
    } catch {
      // not a hierarchy
    }
  }
  let veths = 0;
  try {
    veths = execFileSync('ip', ['-o', 'link', 'show', 'type', 'veth'], { encoding: 'utf8' }).trim().split('\n').filter((l) => l !== '').length;
  } catch {
    // no iproute2
  }
  const runDirs = existsSync(join(run, 'vassals')) ? readdirSync(join(run, 'vassals')).length : 0;
  return { fds, rssMiB: +(rss / 1024 / 1024).toFixed(1), helpers, mounts, cgroups, veths, runDirs };
};

const write = (name, text) => {
  writeFileSync(join(dir, `.${name}.tmp`), text);
  renameSync(join(dir, `.${name}.tmp`), join(dir, `${name}.ini`));
};
const file = (n, round) => `[uwsgi]\nuid = demo-alice\nsocket = app.sock\nenv = ROUND=${round}\ncommand = sleep 600\n`;

/** One cycle of one vassal: drop, wait running; rewrite, wait for a new app; remove, wait gone. */
const cycle = async (name, i) => {
  write(name, file(name, i));
  await until(async () => (await view(name))?.state === 'running', `${name} running`);
  const pid = (await view(name)).pid;
  write(name, file(name, `${i}b`));
  await until(async () => {
    const v = await view(name);
    return v?.state === 'running' && v.pid !== pid;
  }, `${name} reloaded`);
  rmSync(join(dir, `${name}.ini`));
  await until(async () => (await view(name)) === undefined, `${name} removed`);
};

await until(() => existsSync(join(run, 'control.sock')), 'the control socket');
const names = Array.from({ length: AT_ONCE }, (_, i) => `soak${i}`);
// Warm up (JIT, pools) before the baseline.
await Promise.all(names.map((n) => cycle(n, 'warm')));
const before = measure();
const start = Date.now();
const per = Math.ceil(CYCLES / AT_ONCE);
await Promise.all(names.map(async (n) => {
  for (let i = 0; i < per; i++) await cycle(n, i);
}));
const seconds = (Date.now() - start) / 1000;
await sleep(500);
const after = measure();
proc.kill('SIGTERM');
await new Promise((r) => proc.on('exit', r));
const gone = measure();
rmSync(ROOT, { recursive: true, force: true });
const result = { cycles: per * AT_ONCE, atOnce: AT_ONCE, seconds: +seconds.toFixed(1), cyclesPerSecond: +((per * AT_ONCE) / seconds).toFixed(1), before, after, afterShutdown: { ...gone, fds: undefined, rssMiB: undefined } };
console.log(JSON.stringify(result, null, 2));
