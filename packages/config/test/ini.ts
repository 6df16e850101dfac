import t from 'tap';
import { bad, good, ini, lines } from './fixtures/check.js';

t.test('a value is everything after the first "=", trimmed: quotes, ";" and "#" are kept', async (t) => {
  const spec = await good('a.ini', ini('command = sh -c "a; b" # c', "env = X=y=z 'q' ;#"));
  t.same(spec.command, ['/bin/sh', '-c', 'sh -c "a; b" # c']);
  t.same(spec.env, { X: "y=z 'q' ;#" });
});

t.test('only lines that start with ; or # are comments', async (t) => {
  const spec = await good('a.ini', ['  ; leading comment', '[uwsgi]', '# another', 'uid = www-data', '  ;indented comment', 'command = echo ;not a comment'].join('\n'));
  t.same(spec.command, ['/bin/sh', '-c', 'echo ;not a comment']);
});

t.test('repeated keys make lists, in the order written', async (t) => {
  const spec = await good('a.ini', ini('command = x', 'cron = 0 1 -1 -1 -1 first', 'cron = 0 2 -1 -1 -1 second'));
  t.same(spec.cron.map((c) => c.command[2]), ['first', 'second']);
});

t.test('[vassal] works like [uwsgi]; section and key names are case-insensitive', async (t) => {
  const spec = await good('a.ini', '[Vassal]\nUID = www-data\nCommand = x\n');
  t.same(spec.command, ['/bin/sh', '-c', 'x']);
});

t.test('%(key), %n and %% are expanded; other % signs stay', async (t) => {
  const spec = await good('shop.ini', ini('hostname = shop-1', 'command = echo %(hostname) %n 100%% date +%Y'));
  t.same(spec.command, ['/bin/sh', '-c', 'echo shop-1 shop 100% date +%Y']);
});

t.test('a %(key) with no earlier key is an error naming the line', async (t) => {
  t.same(lines(await bad('a.ini', ini('command = echo %(nope)'))), ['a.ini:3: command: expected %(nope) to name a key set earlier in the file, got none (a %(key) reference needs that key earlier in the file; write %% for a literal %)']);
});

t.test('CRLF line endings and a UTF-8 BOM are accepted', async (t) => {
  const spec = await good('a.ini', '\uFEFF[uwsgi]\r\nuid = www-data\r\ncommand = x\r\n');
  t.same(spec.command, ['/bin/sh', '-c', 'x']);
});

t.test('syntax errors name the line', async (t) => {
  t.same(lines(await bad('a.ini', ini('command = x', 'pty'))), ['a.ini:4: expected KEY = VALUE, got "pty" (write the key, an equals sign, then its value)']);
  t.same(lines(await bad('a.ini', ini('command = x', '= y'))), ['a.ini:4: expected KEY = VALUE, got nothing before "="']);
  t.same(lines(await bad('a.ini', ini('[uwsgi'))), ['a.ini:3: expected a section header like [uwsgi], got "[uwsgi"']);
});

t.test('section problems: none, keys before it, another section, both sections', async (t) => {
  t.same(lines(await bad('a.ini', 'uid = www-data\n')), ['a.ini:1: uid: expected the key inside a [uwsgi] or [vassal] section, got it before any section (put [uwsgi] on the first line)']);
  t.same(lines(await bad('a.ini', '; only a comment\n')), ['a.ini: expected a [uwsgi] or [vassal] section, got none (start the file with [uwsgi])']);
  t.same(lines(await bad('a.ini', '')), ['a.ini: expected a [uwsgi] or [vassal] section, got an empty file (start the file with [uwsgi])']);
  t.same(lines(await bad('a.ini', '[app]\ncommand = x\n')), ['a.ini:1: expected a [uwsgi] or [vassal] section, got [app] (every key of a vassal file belongs in one [uwsgi] or [vassal] section)']);
  t.same(lines(await bad('a.ini', '[uwsgi]\nuid = www-data\n[vassal]\ncommand = x\n')), ['a.ini: expected one [uwsgi] or [vassal] section, got both (merge them into one)']);
});
