#!/usr/bin/env node
// The emperor SIGKILLed with N running vassals, side by side with uWSGI's Emperor (Debian's uwsgi-core) in
// one run, under a constant request load through every vassal's socket: ours is started again and adopts
// every jail; uWSGI's vassals die with their Emperor (PDEATHSIG, its documented behaviour) and the new
// Emperor starts them again. Both run the same app (a uWSGI instance, master + 1 worker, answering 200).
// Usage: node bench/adoption.mjs [N]   (default 500)
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { now, ping, sleep } from './lib.mjs';

const N = Number(process.argv[2] ?? 500);
const ROOT = '/tmp/emperor-bench-adopt';
const EMPEROR = join(process.cwd(), 'node_modules/.bin/emperor');
rmSync(ROOT, { recursive: true, force: true });
const until = async (pred, limitMs = 600_000, everyMs = 5) => {
  const start = now();
  while (!(await pred())) {
    if (now() - start > limitMs) return Infinity;
    await sleep(everyMs);
  }
  return now() - start;
};
const allAnswer = async (socks) => (await Promise.all(socks.map((s) => (existsSync(s) ? ping(s, 5000) : false)))).every(Boolean);

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
const names = Array.from({ length: N }, (_, i) => `v${i}`);
for (const n of names) {
  writeFileSync(join(ours.dir, `${n}.ini`), '[uwsgi]\nuid = demo-alice\nsocket = app.sock\ncommand = uwsgi --master --processes 1 --http-socket fd://3 --route-run return:200 --die-on-term --disable-logging\n');
  writeFileSync(join(uw.dir, `${n}.ini`), `[uwsgi]\nuid = demo-alice\ngid = demo-alice\nmaster = true\nprocesses = 1\nhttp-socket = ${uw.run}/${n}.sock\nroute-run = return:200\ndie-on-term = true\ndisable-logging = true\nvacuum = true\n`);
}
const sockOf = { ours: (n) => join(ours.run, 'vassals', n, 'app.sock'), uwsgi: (n) => join(uw.run, `${n}.sock`) };
const cgroupParent = `emperor-bench-${process.pid}`;
const startOurs = () => spawn(EMPEROR, [ours.dir, '--run-dir', ours.run, '--log-dir', join(ROOT, 'ours', 'log'), '--cgroup-parent', cgroupParent], { stdio: ['ignore', 'pipe', 'ignore'] });
const startUwsgi = () => spawn('uwsgi', ['--emperor', uw.dir, '--emperor-use-clone', 'fs,ipc,uts,pid,net', '--disable-logging'], { stdio: 'ignore' });
/** GET /vassals on the emperor's control socket, in this process (a CLI per poll would cost a Node start). */
const vassalsOf = () =>
  new Promise((resolve, reject) => {
    const req = request({ socketPath: join(ours.run, 'control.sock'), path: '/vassals', agent: false }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(body)) : reject(new Error(`HTTP ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end();
  });

/** Requests through every vassal's socket, 16 at a time, until stopped; failures counted. */
const load = (s) => {
  const counts = { ok: 0, failed: 0 };
  let on = true;
  const loop = async (k) => {
    for (let i = k; on; i += 16) counts[(await ping(sockOf[s](names[i % N]), 5000)) ? 'ok' : 'failed']++;
  };
  const loops = Array.from({ length: 16 }, (_, k) => loop(k));
  return { counts, stop: async () => { on = false; await Promise.all(loops); return counts; } };
};

const results = {};
for (const s of ['ours', 'uwsgi']) {
  let proc = s === 'ours' ? startOurs() : startUwsgi();
  const up = await until(() => allAnswer(names.map(sockOf[s])));
  const before = s === 'ours' ? await vassalsOf() : undefined;
  const traffic = load(s);
  await sleep(1000);
  const served = traffic.counts.ok;
  proc.kill('SIGKILL');
  await new Promise((r) => proc.once('exit', r));
  const t0 = now();
  proc = s === 'ours' ? startOurs() : startUwsgi();
  let adopted = Infinity;
  let ready = Infinity;
  if (s === 'ours') {
    let log = '';
    proc.stdout.on('data', (d) => {
      log += d.toString();
      if (ready === Infinity && log.includes('first scan done')) ready = now() - t0;
    });
    // Adopted: the first scan is done (every file's vassal adopted, READY=1), then checked once: every
    // vassal running with the app pid it had. (Polling /vassals meanwhile would load the emperor: each
    // answer reads 500 vassals' cgroup usage.)
    await until(() => ready !== Infinity, 600_000, 2);
    const pids = new Map(before.map((v) => [v.name, v.pid]));
    const vs = await vassalsOf();
    const same = vs.filter((v) => v.state === 'running' && v.pid === pids.get(v.name)).length;
    if (vs.length !== N || same !== N) throw new Error(`after the first scan: ${same} of ${vs.length} vassals running with their app pid, expected ${N}`);
    adopted = ready;
  }
  const answering = await until(() => allAnswer(names.map(sockOf[s])));
  await sleep(1000);
  const counts = await traffic.stop();
  results[s] = { up, adopted, ready, answering: answering === Infinity ? Infinity : now() - t0 - 1000, failed: counts.failed, ok: counts.ok, servedBefore: served };
  if (s === 'ours') {
    const after = await vassalsOf();
    results[s].restarted = after.filter((v) => v.pid !== before.find((b) => b.name === v.name)?.pid).length;
    // Once more without the request load: the adoption alone.
    proc.kill('SIGKILL');
    await new Promise((r) => proc.once('exit', r));
    const t1 = now();
    proc = startOurs();
    let quiet = Infinity;
    let text = '';
    proc.stdout.on('data', (d) => {
      text += d.toString();
      if (quiet === Infinity && text.includes('first scan done')) quiet = now() - t1;
    });
    await until(() => quiet !== Infinity, 600_000, 2);
    results[s].adoptedQuiet = quiet;
  }
  proc.kill(s === 'ours' ? 'SIGTERM' : 'SIGINT');
  await new Promise((r) => proc.once('exit', r));
  await sleep(3000);
}
rmSync(ROOT, { recursive: true, force: true });
const fmt = (v) => (v === Infinity ? '-' : Math.round(v));
console.log(`| ${N} running vassals, the emperor SIGKILLed and started again | ours | uWSGI |`);
console.log('|---|---|---|');
console.log(`| new emperor started -> every vassal adopted (first scan done, READY=1; then checked: all running, same app pids) (ms) | ${fmt(results.ours.adopted)} | (its vassals died with it) |`);
console.log(`| the same without the request load (ms) | ${fmt(results.ours.adoptedQuiet)} | |`);
console.log(`| new emperor started -> every vassal answering (ms) | ${fmt(results.ours.answering)} | ${fmt(results.uwsgi.answering)} |`);
console.log(`| requests failed under load (16 at a time across all ${N}) | ${results.ours.failed} of ${results.ours.failed + results.ours.ok} | ${results.uwsgi.failed} of ${results.uwsgi.failed + results.uwsgi.ok} |`);
console.log(`| apps restarted | ${results.ours.restarted} | ${N} |`);
console.log(JSON.stringify(results));
