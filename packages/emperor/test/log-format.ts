import { spawn } from 'node:child_process';
import { closeSync, fstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { EmperorError } from '@emperor/errors';
import { chooseLogFormat, createLogger, journalLine } from '../src/log-format.js';
import { emperorBin } from './fixtures/daemon-bin.js';
import { requireJails } from './fixtures/emperor.js';
import { bound } from './fixtures/time.js';


t.test('a journal line: the syslog priority as a prefix, the vassal and event first, details as key=value', async (t) => {
  t.equal(
    journalLine({ level: 30, time: 1, pid: 7, name: 'emperor', vassal: 'alice', event: 'spawned', detail: { time: 'x', vassal: 'alice', event: 'spawned', state: 'running', pid: 1234 }, msg: 'alice: spawned' }),
    '<6>alice: spawned (state=running pid=1234)\n',
  );
  t.match(journalLine({ level: 40, msg: 'alice: oom', vassal: 'alice', detail: { error: 'the kernel killed it' } }), /^<4>alice: oom \(error="the kernel killed it"\)\n$/, 'warnings are priority 4');
  t.match(journalLine({ level: 50, msg: 'x' }), /^<3>x\n$/, 'errors are priority 3');
  t.match(journalLine({ level: 60, msg: 'x' }), /^<2>/, 'fatal is priority 2');
  t.match(journalLine({ level: 20, msg: 'x' }), /^<7>/, 'debug is priority 7');
});

t.test('what a customer wrote (a command, a problem) cannot forge a second journal line or a priority', async (t) => {
  const line = journalLine({ level: 30, vassal: 'mallory', msg: 'mallory: invalid', detail: { problems: ['x\n<0>emperor: kernel panic'], command: 'a\rb' } });
  t.equal(line.split('\n').length, 2, 'one line');
  t.match(line, /^<6>mallory: invalid \(problems=\["x\\n<0>emperor: kernel panic"\] command="a\\rb"\)\n$/);
  t.equal(journalLine({ level: 30, msg: 'a\nb' }), '<6>a\\nb\n', 'not even in the message');
});

t.test('errors keep their message, code and hint; a stack only for what is not an Emperor error (a bug)', async (t) => {
  const lines: string[] = [];
  const log = createLogger('journal', (l) => lines.push(l));
  log.error({ vassal: 'bob', err: new EmperorError('EMPEROR_ERR_JAIL_SETUP', 'jail bob: mount /srv: no such directory', { hint: 'create it' }) }, 'vassal operation failed');
  log.error({ err: new TypeError('undefined is not a function') }, 'unhandled rejection');
  t.match(lines[0], /^<3>bob: vassal operation failed: jail bob: mount \/srv: no such directory \(code=EMPEROR_ERR_JAIL_SETUP hint="create it"\)\n$/);
  t.notMatch(lines[0], /stack=/, 'no stack for a user error');
  t.match(lines[1], /^<3>unhandled rejection: undefined is not a function \(stack="TypeError: undefined is not a function\\n {4}at /, 'a bug keeps its stack, on one line');
});

t.test('auto: journal lines when stdout is the stream JOURNAL_STREAM names, JSON when it is anything else', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'emperor-test-logfmt-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const fd = openSync(join(dir, 'out'), 'w');
  t.teardown(() => closeSync(fd));
  const st = fstatSync(fd, { bigint: true });
  t.equal(chooseLogFormat('auto', { JOURNAL_STREAM: `${st.dev}:${st.ino}` }, fd), 'journal');
  t.equal(chooseLogFormat('auto', { JOURNAL_STREAM: `${st.dev}:${st.ino + 1n}` }, fd), 'json', 'another stream: a pipe the journal stream was once');
  t.equal(chooseLogFormat('auto', {}, fd), 'json');
  t.equal(chooseLogFormat('pretty', {}, fd), 'pretty', 'asked for: as asked');
});

if (requireJails(t)) {
  t.test('the daemon under journald writes priority-prefixed lines; told --log-format json, JSON', async (t) => {
    const root = mkdtempSync(join(tmpdir(), 'emperor-test-logfmt-'));
    t.teardown(() => rmSync(root, { recursive: true, force: true }));
    mkdirSync(join(root, 'vassals'));
    writeFileSync(join(root, 'vassals', 'bad.ini'), '[uwsgi]\nuid = demo-alice\npids-limit = many\ncommand = true\n');
    const runOnce = async (extra: string[]): Promise<string> => {
      const out = join(root, `out${extra.length}`);
      const fd = openSync(out, 'w');
      const st = fstatSync(fd, { bigint: true });
      const proc = spawn(emperorBin, [join(root, 'vassals'), '--run-dir', join(root, 'run'), '--log-dir', join(root, 'log'), '--cgroup-parent', `emperor-test-${process.pid}-logfmt`, ...extra], {
        stdio: ['ignore', fd, 'inherit'],
        env: { ...process.env, JOURNAL_STREAM: `${st.dev}:${st.ino}` },
      });
      closeSync(fd);
      const exited = new Promise<void>((r) => proc.on('exit', () => r()));
      const deadline = Date.now() + bound(30_000);
      while (!/first scan done/.test(readFileSync(out, 'utf8')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      proc.kill('SIGTERM');
      await exited;
      return readFileSync(out, 'utf8');
    };
    const journal = await runOnce([]);
    t.match(journal, /^<4>bad: invalid \(state=invalid problems=\[".*pids-limit: expected/m, 'a bad file is a warning, its problem quoted');
    t.match(journal, /^<6>first scan done \(counts=\{"invalid":1\}\)$/m);
    t.match(journal, /^<6>emperor stopped$/m);
    t.notMatch(journal, /^\{/m, 'no JSON line');
    const json = await runOnce(['--log-format', 'json']);
    t.match(json, /^\{"level":40,.*"msg":"bad: invalid"\}$/m, 'JSON when asked for, whatever stdout is');
  });
}
