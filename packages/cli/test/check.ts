import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const bin = join(root, 'node_modules/.bin/emperor');
const dir = mkdtempSync(join(tmpdir(), 'emperor-cli-test-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

/** Runs the installed `emperor` binary, as a user would. */
const emperor = (...args: string[]) => {
  const r = spawnSync(bin, args, { encoding: 'utf8', cwd: dir, env: { PATH: process.env.PATH ?? '' }, timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
};
const put = (name: string, text: string | Buffer): string => {
  writeFileSync(join(dir, name), text);
  return name;
};
const NO_STACK = /^\s+at |Error: |node:internal|\.ts:\d+:\d+/m;

t.test('--help and --version', async (t) => {
  const h = emperor('--help');
  t.equal(h.code, 0);
  t.match(h.stdout, /Usage: emperor <command>/);
  t.match(h.stdout, /check \[--json\] \[--tyrant\] \[--config emperor\.ini\] FILE\.\.\./);
  const v = emperor('--version');
  t.equal(v.code, 0);
  t.match(v.stdout, /^emperor \d+\.\d+\.\d+\n$/);
  t.equal(emperor().code, 64, 'no command is a usage error');
});

t.test('check exits 0 when every file is good, printing one ok line each', async (t) => {
  put('a.ini', '[uwsgi]\nuid = www-data\ncommand = x\n');
  put('b.yaml', 'uid: www-data\ncommand: x\n');
  const r = emperor('check', 'a.ini', 'b.yaml');
  t.equal(r.code, 0);
  t.equal(r.stdout, 'a.ini: ok (vassal a)\nb.yaml: ok (vassal b)\n');
  t.equal(r.stderr, '');
});

t.test('check exits 1 and prints FILE:LINE: KEY: expected ..., got ... per problem', async (t) => {
  put('bad.ini', '[uwsgi]\nuid = www-data\ncommand = x\nchmod-sockt = 660\nstop-timeout = soon\n');
  put('good.ini', '[uwsgi]\nuid = www-data\ncommand = x\n');
  const r = emperor('check', 'bad.ini', 'good.ini');
  t.equal(r.code, 1);
  t.equal(r.stdout, 'good.ini: ok (vassal good)\n');
  t.equal(r.stderr, [
    'bad.ini:4: chmod-sockt: expected a vassal key, got unknown key "chmod-sockt" (did you mean "chmod-socket"?)',
    'bad.ini:5: stop-timeout: expected a duration like 500ms, 30s, 2m or 1h (a bare number is seconds), from 0s to 3600s, got "soon"',
    '',
  ].join('\n'));
});

t.test('check --json prints the normalized spec, or the problems', async (t) => {
  put('j.json', '{"uwsgi": {"uid": "www-data", "command": ["node", "app.js"], "socket": "app.sock"}}');
  put('k.ini', '[uwsgi]\nuid = www-data\n');
  const r = emperor('check', '--json', 'j.json', 'k.ini');
  t.equal(r.code, 1);
  const out = JSON.parse(r.stdout);
  t.match(out[0], { file: 'j.json', ok: true, spec: { name: 'j', uid: 33, command: ['node', 'app.js'], socket: { path: 'app.sock', mode: 0o660 } } });
  t.match(out[1], { file: 'k.ini', ok: false, problems: [{ code: 'EMPEROR_ERR_CONFIG_MISSING_KEY', key: 'command' }] });
});

t.test('check --tyrant refuses a root-owned file', async (t) => {
  put('t.ini', '[uwsgi]\ncommand = x\n');
  const r = emperor('check', '--tyrant', 't.ini');
  t.equal(r.code, 1);
  t.match(r.stderr, /^t\.ini: expected a file owned by an unprivileged user and group \(tyrant mode\), got owner 0:0/);
});

t.test('no input ever produces a stack trace', async (t) => {
  mkdirSync(join(dir, 'adir.ini'), { recursive: true });
  const cases: Array<[string, string[]]> = [
    ['unknown key', [put('u.ini', '[uwsgi]\nuid = www-data\ncommand = x\nfoo = 1\n')]],
    ['wrong type', [put('w.json', '{"uid": "www-data", "command": "x", "pty": [1]}')]],
    ['out of range', [put('r.ini', '[uwsgi]\nuid = www-data\ncommand = x\ncpu-weight = 99999\n')]],
    ['single key twice', [put('d.ini', '[uwsgi]\nuid = www-data\nuid = nobody\ncommand = x\n')]],
    ['duplicate yaml key', [put('d.yaml', 'uid: a\nuid: b\n')]],
    ['broken json', [put('b.json', '{"uid": ')]],
    ['broken yaml', [put('b.yaml', 'a: [\n')]],
    ['no section', [put('n.ini', 'uid = www-data\n')]],
    ['empty file', [put('e.ini', '')]],
    ['binary garbage', [put('g.ini', Buffer.from([0, 1, 2, 255, 254]))]],
    ['invalid utf-8', [put('i.yaml', Buffer.from([0x61, 0x3a, 0x20, 0xc3, 0x28]))]],
    ['a directory', ['adir.ini']],
    ['a missing file', ['missing.ini']],
    ['a 50 MB file', [put('big.ini', Buffer.alloc(50 * 1024 * 1024, 'x'))]],
    ['a socket path escaping the run dir', [put('s.ini', '[uwsgi]\nuid = www-data\ncommand = x\nsocket = ../../etc/evil.sock\n')]],
    ['a root uid', [put('root.ini', '[uwsgi]\nuid = root\ncommand = x\n')]],
    ['an unknown option', ['--frobnicate', 'x.ini']],
    ['no file', []],
  ];
  for (const [what, args] of cases) {
    const r = emperor('check', ...args);
    t.not(r.code, 0, `${what}: fails`);
    t.ok(r.code === 1 || r.code === 64, `${what}: exit ${r.code} is a user error, not a crash`);
    t.notMatch(r.stderr, NO_STACK, `${what}: no stack trace`);
    t.ok(r.stderr.trim().split('\n').every((l) => l.length > 0 && l.length < 400), `${what}: short lines`);
  }
});

t.test('an unknown command is a usage error', async (t) => {
  const r = emperor('frobnicate');
  t.equal(r.code, 64);
  t.equal(r.stderr, 'emperor: expected a command (run, check, status, reload, restart, stop, start, logs, pty, router, upgrade), got "frobnicate"; see emperor --help\n');
});

t.test('emperor router: bad options are one line naming what to fix, exit 64', async (t) => {
  for (const [args, want] of [
    [['router'], /expected at least one --http HOST:PORT/],
    [['router', '--http', ':0'], /expected at least one --subscription-server HOST:PORT/],
    [['router', '--http', ':0', '--subscription-server', ':0', '--subscription-algo', 'random'], /--subscription-algo: expected one of wrr, lrc, wlrc, iphash, chash, got "random"/],
    [['router', '--http', ':0', '--subscription-server', ':0', '--sign-required'], /--sign-required: expected --sign-check DIGEST:DIR with it/],
    [['router', '--http', ':0', '--subscription-server', '1.2.3.4:notaport'], /--subscription-server: expected HOST:PORT, got "1.2.3.4:notaport"/],
  ] as const) {
    const r = emperor(...args);
    t.equal(r.code, 64, args.join(' '));
    t.match(r.stderr, want);
    t.notMatch(r.stderr, NO_STACK);
  }
});
