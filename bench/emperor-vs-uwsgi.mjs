#!/usr/bin/env node
// The emperor side by side with uWSGI's Emperor (Debian's uwsgi-core, --emperor DIR
// --emperor-use-clone fs,ipc,uts,pid,net), in one run, on equivalent vassals: both run the same app, a uWSGI
// instance (master + 1 worker) answering every HTTP request with 200 (route-run = return:200). Ours gets
// its socket as fd 3 from the jail; uWSGI's binds its own. Usage: node bench/emperor-vs-uwsgi.mjs [MANY] [BIG]
// MANY (default 100): vassals dropped / removed at once. BIG (default 500): vassals for the memory figure.
// EMPEROR_BENCH_CONFIG=emperor.ini: ours with that file (--config), e.g. another jail-builds.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { now, ping, sleep } from './lib.mjs';

const MANY = Number(process.argv[2] ?? 100);
const BIG = Number(process.argv[3] ?? 500);
const ROOT = '/tmp/emperor-bench';
rmSync(ROOT, { recursive: true, force: true });
const untilAnswers = async (socks, limitMs = 180_000) => {
  const start = now();
  const left = new Set(socks);
  while (left.size > 0) {
    if (now() - start > limitMs) return Infinity;
    await Promise.all([...left].map(async (s) => (existsSync(s) && (await ping(s)) ? left.delete(s) : undefined)));
    if (left.size > 0) await sleep(2);
  }
  return now() - start;
};
const until = async (pred, limitMs = 180_000) => {
  const start = now();
  while (!pred()) {
    if (now() - start > limitMs) return Infinity;
    await sleep(2);
  }
  return now() - start;
};
const pidsMatching = (re) => readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
  try {
    return re.test(readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' '));
  } catch {
    return false;
  }
}).map(Number);
const pss = (pid) => {
  try {
    return Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
};
const descendants = (pid) => {
  const all = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).map((p) => {
    try {
      return [Number(p), Number(readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1].split(' ')[1])];
    } catch {
      return [Number(p), -1];
    }
  });
  const out = [];
  const walk = (p) => {
    for (const [c, pp] of all) if (pp === p) {
      out.push(c);
      walk(c);
    }
  };
  walk(pid);
  return out;
};

// ---- the two supervisors ----
const side = (name) => {
  const dir = join(ROOT, name, 'vassals');
  const run = join(ROOT, name, 'run');
  mkdirSync(dir, { recursive: true });
  mkdirSync(run, { recursive: true });
  return { dir, run };
};
const ours = side('ours');
const uw = side('uwsgi');
execFileSync('chown', ['demo-alice:demo-alice', uw.run]);
const oursFile = (n) => `[uwsgi]\nuid = demo-alice\nsocket = app.sock\ncommand = uwsgi --master --processes 1 --http-socket fd://3 --route-run return:200 --die-on-term --disable-logging\n`;
const uwFile = (n) => `[uwsgi]\nuid = demo-alice\ngid = demo-alice\nmaster = true\nprocesses = 1\nhttp-socket = ${uw.run}/${n}.sock\nroute-run = return:200\ndie-on-term = true\ndisable-logging = true\nvacuum = true\n`;
const sockOf = { ours: (n) => join(ours.run, 'vassals', n, 'app.sock'), uwsgi: (n) => join(uw.run, `${n}.sock`) };
const writeV = { ours: (n) => writeFileSync(join(ours.dir, `${n}.ini`), oursFile(n)), uwsgi: (n) => writeFileSync(join(uw.dir, `${n}.ini`), uwFile(n)) };
const removeV = { ours: (n) => rmSync(join(ours.dir, `${n}.ini`)), uwsgi: (n) => rmSync(join(uw.dir, `${n}.ini`)) };
const goneV = {
  ours: (names) => () => names.every((n) => !existsSync(join(ours.run, 'vassals', n))) && pidsMatching(/emperor-jail (create|exec)/).length === 0,
  uwsgi: (names) => () => pidsMatching(new RegExp(`(${names.join('|')})\\.ini`)).length === 0,
};

const emperorProc = spawn(join(process.cwd(), 'node_modules/.bin/emperor'), [ours.dir, '--run-dir', ours.run, '--log-dir', join(ROOT, 'ours', 'log'), '--cgroup-parent', `emperor-bench-${process.pid}`, ...(process.env.EMPEROR_BENCH_CONFIG ? ['--config', process.env.EMPEROR_BENCH_CONFIG] : [])], { stdio: 'ignore' });
const uwsgiProc = spawn('uwsgi', ['--emperor', uw.dir, '--emperor-use-clone', 'fs,ipc,uts,pid,net', '--disable-logging'], { stdio: 'ignore' });
await until(() => existsSync(join(ours.run, 'control.sock')), 10_000);
await sleep(1000);

const results = {};
const record = (what, side, ms) => ((results[what] ??= {})[side] = ms);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// 1. one file dropped -> its app answering (5 times each, alternating; median)
for (const s of ['ours', 'uwsgi']) record('one vassal answering (ms, median of 5)', s, []);
for (let i = 0; i < 5; i++) {
  for (const s of ['ours', 'uwsgi']) {
    const n = `one${i}`;
    const t0 = now();
    writeV[s](n);
    const ms = await untilAnswers([sockOf[s](n)]);
    results['one vassal answering (ms, median of 5)'][s].push(ms === Infinity ? Infinity : ms + 0 * t0);
    removeV[s](n);
    await until(goneV[s]([n]), 60_000);
  }
}
for (const s of ['ours', 'uwsgi']) record('one vassal answering (ms, median of 5)', s, median(results['one vassal answering (ms, median of 5)'][s]));

// 2. MANY files at once -> all answering; 3. app SIGKILL -> a request answered again; 4. MANY removed -> gone
const names = Array.from({ length: MANY }, (_, i) => `many${i}`);
for (const s of ['ours', 'uwsgi']) {
  const t0 = now();
  for (const n of names) writeV[s](n);
  record(`${MANY} vassals all answering (ms)`, s, (await untilAnswers(names.map(sockOf[s]))) + 0 * t0);
  await sleep(500);
  // SIGKILL the app (ours: the uWSGI master in the jail; uWSGI: the vassal's master), 5 times, median
  const kills = [];
  for (let k = 0; k < 5; k++) {
    const n = names[k];
    const victim = s === 'ours'
      ? JSON.parse(execFileSync(join(process.cwd(), 'node_modules/.bin/emperor'), ['status', n, '--json', '--run-dir', ours.run], { encoding: 'utf8' })).pid
      : pidsMatching(new RegExp(`--ini ${n}\\.ini`)).sort((a, b) => a - b)[0] ?? pidsMatching(new RegExp(`${n}\\.ini`)).sort((a, b) => a - b)[0];
    if (!victim) continue;
    await ping(sockOf[s](n));
    const t1 = now();
    process.kill(victim, 'SIGKILL');
    // running again: a new request is answered by a new app (a request queued meanwhile counts when served)
    const ms = await until(() => !existsSync(`/proc/${victim}`), 5000);
    void ms;
    await untilAnswers([sockOf[s](n)]);
    kills.push(now() - t1);
    await sleep(200);
  }
  record('app SIGKILL -> answering again (ms, median of 5)', s, median(kills));
  const t2 = now();
  for (const n of names) removeV[s](n);
  record(`${MANY} vassals removed, all gone (ms)`, s, (await until(goneV[s](names))) + 0 * t2);
  await sleep(1000);
}

// 5. supervision memory at BIG vassals: PSS of everything but the apps
const big = Array.from({ length: BIG }, (_, i) => `big${i}`);
for (const s of ['ours', 'uwsgi']) {
  for (const n of big) writeV[s](n);
  const ms = await untilAnswers(big.map(sockOf[s]), 600_000);
  record(`${BIG} vassals all answering (ms)`, s, ms);
  await sleep(2000);
  let sup = 0;
  let apps = 0;
  if (s === 'ours') {
    sup += pss(emperorProc.pid) + descendants(emperorProc.pid).filter((p) => {
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8');
      return cmd.includes('emperor');
    }).reduce((a, p) => a + pss(p), 0);
    // shims, inits and exec helpers are emperor-jail processes; the apps are the uwsgi processes inside
    sup = pss(emperorProc.pid) + pidsMatching(/emperor-jail|emperor-daemon/).filter((p) => p !== emperorProc.pid).reduce((a, p) => a + pss(p), 0);
    apps = pidsMatching(/uwsgi --master --processes 1 --http-socket fd:\/\/3/).reduce((a, p) => a + pss(p), 0);
  } else {
    // the Emperor, plus each vassal's master (its supervisor); the worker is the app
    const all = descendants(uwsgiProc.pid);
    const masters = all.filter((p) => descendants(p).length > 0);
    sup = pss(uwsgiProc.pid) + masters.reduce((a, p) => a + pss(p), 0);
    apps = all.filter((p) => !masters.includes(p)).reduce((a, p) => a + pss(p), 0);
  }
  record(`supervision PSS per vassal at ${BIG} (KiB)`, s, Math.round(sup / BIG / 1024));
  record(`app PSS per vassal at ${BIG} (KiB, for reference)`, s, Math.round(apps / BIG / 1024));
  for (const n of big) removeV[s](n);
  await until(goneV[s](big), 600_000);
}

emperorProc.kill('SIGTERM');
uwsgiProc.kill('SIGINT');
await new Promise((r) => emperorProc.on('exit', r));
await sleep(3000);
rmSync(ROOT, { recursive: true, force: true });
const fmt = (v) => (v === Infinity ? 'timeout' : Math.round(v * 10) / 10);
console.log('| measure | ours | uWSGI | ratio uWSGI/ours |');
console.log('|---|---|---|---|');
for (const [k, v] of Object.entries(results)) console.log(`| ${k} | ${fmt(v.ours)} | ${fmt(v.uwsgi)} | ${(v.uwsgi / v.ours).toFixed(1)} |`);
console.log(JSON.stringify(results));
