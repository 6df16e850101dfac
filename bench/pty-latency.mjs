#!/usr/bin/env node
// The pty router side by side with uWSGI's forkptyrouter (issue 5), same shell on both sides
// (/bin/bash --norc --noprofile), both reached through the uWSGI urouter framing over a unix socket:
//   prompt: connect -> the shell's prompt arrives;  echo: one keystroke -> its echo comes back.
// Ours enters a full jail (setns, cgroups, caps, seccomp, a pty of the jail's devpts) for every session.
// Usage: node bench/pty-latency.mjs [SESSIONS] [KEYS]
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseVassalText } from '@emperor/config';
import { Jail, removeCgroupParent } from '@emperor/jail';
import { frame, PtyRouter } from '@emperor/pty';

const SESSIONS = Number(process.argv[2] ?? 30);
const KEYS = Number(process.argv[3] ?? 300);
const SHELL = ['/bin/bash', '--norc', '--noprofile'];
const dir = mkdtempSync(join(tmpdir(), 'emperor-bench-pty-'));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ours: a jail for demo-alice and its router
const r = parseVassalText('[uwsgi]\nuid = demo-alice\ncommand = true\n', 'ptybench.ini');
const runDir = join(dir, 'run');
mkdirSync(runDir);
chownSync(runDir, 0, r.spec.gid);
const parent = `emperor-bench-pty-${process.pid}`;
const controlDir = `${runDir}-ctl`;
const jail = await Jail.create(r.spec, { runDir, controlDir, cgroupParent: parent });
const oursSock = join(runDir, 'pty.sock');
const router = new PtyRouter(jail, oursSock, () => {}, { shell: SHELL });
await router.listen();

// uWSGI: forkptyrouter running the same shell
const uwDir = join(dir, 'uwsgi');
mkdirSync(uwDir, { mode: 0o777 });
chmodSync(dir, 0o755);
chmodSync(uwDir, 0o777);
const uwSock = join(uwDir, 'pty.sock');
// the same user as ours (uWSGI drops to it after binding the socket)
const uw = spawn('uwsgi', ['--plugin', 'forkptyrouter', '--master', '--forkpty-urouter', uwSock, '--forkptyrouter-command', SHELL.join(' '), '--uid', 'demo-alice', '--gid', 'demo-alice', '--disable-logging'], { stdio: 'ignore' });
for (let i = 0; i < 200 && !existsSync(uwSock); i++) await sleep(25);

/** One session: time to the prompt, then KEYS keystrokes' echo times. */
const session = (path, keys) =>
  new Promise((resolve, reject) => {
    const s = connect(path);
    // Bounded: a session that stalls fails the benchmark instead of hanging it.
    const guard = setTimeout(() => {
      s.destroy();
      reject(new Error(`session on ${path} stalled; got ${JSON.stringify(buf.slice(-80))}`));
    }, 20_000);
    let buf = '';
    let waiting = null;
    const t0 = performance.now();
    let prompt;
    const echoes = [];
    s.on('data', (d) => {
      buf += d.toString('latin1');
      if (prompt === undefined && /[$#] $/.test(buf)) {
        prompt = performance.now() - t0;
        buf = '';
        void typeLoop();
      } else if (waiting && buf.includes(waiting.ch)) {
        const w = waiting;
        waiting = null;
        buf = '';
        w.done();
      }
    });
    s.on('error', reject);
    s.on('connect', () => s.write(Buffer.concat([frame(100, undefined, 24), frame(101, undefined, 200)])));
    const typeLoop = async () => {
      for (let i = 0; i < keys; i++) {
        const ch = i % 40 === 39 ? '\x15' : 'x'; // Ctrl-U now and then keeps the line short
        if (ch === '\x15') {
          s.write(frame(0, Buffer.from(ch)));
          await sleep(2);
          buf = '';
          continue;
        }
        const t1 = performance.now();
        await new Promise((done) => {
          waiting = { ch, done };
          s.write(frame(0, Buffer.from(ch)));
        });
        echoes.push(performance.now() - t1);
      }
      s.write(frame(0, Buffer.from('\x15exit\r')));
      s.end();
      clearTimeout(guard);
      resolve({ prompt, echoes });
    };
  });

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const res = { ours: { prompt: [], echo: [] }, uwsgi: { prompt: [], echo: [] } };
try {
  await session(oursSock, 5);
  await session(uwSock, 5);
  for (let i = 0; i < SESSIONS; i++) {
    for (const [name, sock] of [['ours', oursSock], ['uwsgi', uwSock]]) {
      const { prompt, echoes } = await session(sock, Math.ceil(KEYS / SESSIONS));
      res[name].prompt.push(prompt);
      res[name].echo.push(...echoes);
      await sleep(20);
    }
  }
} finally {
  await router.close();
  await jail.stop();
  removeCgroupParent(parent);
  rmSync(controlDir, { recursive: true, force: true });
  uw.kill('SIGINT');
  await new Promise((r2) => uw.on('exit', r2));
  rmSync(dir, { recursive: true, force: true });
}
const f = (v) => v.toFixed(3);
console.log(`sessions ${SESSIONS}, keystrokes ${res.ours.echo.length} each side, interleaved`);
console.log('| measure | ours | uWSGI | ours / uWSGI |');
console.log('|---|---|---|---|');
for (const k of ['prompt', 'echo']) console.log(`| ${k} median (ms) | ${f(median(res.ours[k]))} | ${f(median(res.uwsgi[k]))} | ${(median(res.ours[k]) / median(res.uwsgi[k])).toFixed(2)} |`);
