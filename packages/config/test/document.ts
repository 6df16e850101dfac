import t from 'tap';
import { bad, good, lines } from './fixtures/check.js';

t.test('json: keys at the top level or under "uwsgi" / "vassal"', async (t) => {
  for (const text of [
    '{"uid": "www-data", "command": "x"}',
    '{"uwsgi": {"uid": "www-data", "command": "x"}}',
    '{"vassal": {"uid": "www-data", "command": "x"}}',
  ]) {
    t.same((await good('a.json', text)).command, ['/bin/sh', '-c', 'x'], text);
  }
});

t.test('yaml: keys at the top level or under "uwsgi" / "vassal"; .yml too', async (t) => {
  t.same((await good('a.yaml', 'uid: www-data\ncommand: x\n')).command, ['/bin/sh', '-c', 'x']);
  t.same((await good('a.yml', 'vassal:\n  uid: www-data\n  command: [node, app.js]\n')).command, ['node', 'app.js']);
});

t.test('a json/yaml list command is exec\'d directly; lists feed repeatable keys; env may be a mapping', async (t) => {
  const spec = await good('a.yaml', [
    'uid: 33',
    'command: ["/usr/bin/env", "python3", "-m", "http.server"]',
    'env: {A: "1", B: 2}',
    'cron:',
    '  - "*/5 * * * * a"',
    '  - "0 0 * * * b"',
  ].join('\n'));
  t.same(spec.command, ['/usr/bin/env', 'python3', '-m', 'http.server']);
  t.same(spec.env, { A: '1', B: '2' });
  t.equal(spec.cron.length, 2);
});

t.test('yaml 1.2: on/off are strings, and pty accepts them', async (t) => {
  t.equal((await good('a.yaml', 'uid: www-data\ncommand: x\npty: off\n')).pty, false);
  t.equal((await good('a.yaml', 'uid: www-data\ncommand: x\npty: false\n')).pty, false);
});

t.test('a problem in a list item names the item\'s line', async (t) => {
  t.same(lines(await bad('a.yaml', 'uid: www-data\ncommand: x\ncron:\n  - "* * * * * ok"\n  - "99 * * * * bad"\n')), [
    'a.yaml:5: cron: expected a 5-field crontab schedule like */10 * * * *, got "99 * * * *" (Invalid value for minute: 99)',
  ]);
});

t.test('broken json names the line', async (t) => {
  const [p] = await bad('a.json', '{\n  "uid": "www-data",\n  "command": "x",\n}\n');
  t.equal(p?.code, 'EMPEROR_ERR_CONFIG_SYNTAX');
  t.equal(p?.line, 4);
  t.match(p?.message, /^expected valid JSON, got /);
});

t.test('json that is valid yaml but not json is refused', async (t) => {
  const [p] = await bad('a.json', "{uid: 'www-data', command: x}");
  t.equal(p?.code, 'EMPEROR_ERR_CONFIG_SYNTAX');
});

t.test('broken yaml names the line', async (t) => {
  const [p] = await bad('a.yaml', 'uid: www-data\ncommand: [x\n');
  t.equal(p?.code, 'EMPEROR_ERR_CONFIG_SYNTAX');
  t.ok(p?.line !== undefined);
  t.match(p?.message, /^expected valid yaml, got /);
});

t.test('duplicate keys in yaml and json are errors naming the second one', async (t) => {
  t.same(lines(await bad('a.yaml', 'uid: www-data\ncommand: x\nuid: nobody\n')), ['a.yaml:3: uid: expected each key once, got "uid" a second time (give a single-valued key once; use a list for repeatable keys)']);
  const [p] = await bad('a.json', '{"uid": "www-data",\n"command": "x",\n"command": "y"}');
  t.equal(p?.code, 'EMPEROR_ERR_CONFIG_DUPLICATE_KEY');
  t.equal(p?.line, 3);
  t.equal(p?.key, 'command', 'the key is named');
  t.equal(p?.message, 'expected each key once, got "command" a second time');
});

t.test('more than one yaml document is refused', async (t) => {
  t.same(lines(await bad('a.yaml', 'uid: www-data\ncommand: x\n---\nuid: nobody\n')), ['a.yaml:3: expected one yaml document, got 2 (remove the --- separators)']);
});

t.test('top-level shapes that are not an object of keys', async (t) => {
  t.same(lines(await bad('a.json', '[1, 2]')), ['a.json:1: expected a json object of vassal keys at the top level, got a list']);
  t.same(lines(await bad('a.yaml', 'just text')), ['a.yaml:1: expected a yaml object of vassal keys at the top level, got the string "just text"']);
  t.same(lines(await bad('a.yaml', '# nothing\n')), ['a.yaml: expected a yaml object of vassal keys, got an empty document']);
  t.same(lines(await bad('a.json', '   \n')), ['a.json: expected a json object of vassal keys, got an empty file']);
  t.same(lines(await bad('a.json', '{"uwsgi": {"uid": "www-data"}, "command": "x"}')), ['a.json:1: expected either keys at the top level or one "uwsgi"/"vassal" object, got both (move every key under the one "uwsgi" object)']);
  t.same(lines(await bad('a.yaml', 'uwsgi: [1]\n')), ['a.yaml:1: expected "uwsgi" to be an object of vassal keys, got a list']);
});

t.test('yaml alias bombs are refused, not expanded', async (t) => {
  const bomb = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]'];
  for (let i = 0; i < 8; i++) bomb.push(`${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(10).fill(`*${String.fromCharCode(97 + i)}`).join(',')}]`);
  const problems = await bad('a.yaml', `uid: www-data\ncommand: x\n${bomb.join('\n')}\n`);
  t.equal(problems[0]?.code, 'EMPEROR_ERR_CONFIG_SYNTAX');
  t.match(problems[0]?.message, /at most 100 alias expansions/);
});
