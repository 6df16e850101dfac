import { execFileSync } from 'node:child_process';
import { chownSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { builtinLimits } from '@emperor/config';
import { alive, requireJails, startEmperor } from './fixtures/emperor.js';

// A vassal's name is the file name without its extension, compared without case: one name, one file.

if (requireJails(t)) {
  t.test('a second file for a name in use (other extension, other case) is refused; the first keeps running; removing the second changes nothing', async (t) => {
    const e = await startEmperor(t);
    e.write('shop.ini', '[uwsgi]', 'uid = demo-alice', 'command = sleep 600');
    const first = await e.waitFor((x) => x.vassal === 'shop' && x.event === 'spawned');
    for (const dup of ['shop.yml', 'Shop.JSON']) {
      const n = e.events.length;
      e.write(dup, dup.endsWith('yml') ? 'uid: demo-bob\ncommand: sleep 601\n' : '{"uid": "demo-bob", "command": "sleep 602"}');
      const inv = await e.waitFor((x) => x.vassal === 'shop' && x.event === 'invalid', n);
      t.equal(inv.duplicateOf, join(e.dir, 'shop.ini'), `${dup}: refused, naming the file that holds the name`);
      t.match((inv.problems as string[])[0], new RegExp(`${dup.replace('.', '\\.')}: expected a vassal name no other file uses, got "${dup.split('.')[0]}", which .*shop\\.ini uses`));
      t.equal(e.emperor.vassals.get('shop')?.pid, first.pid, 'the first file\'s app still runs');
      t.ok(e.logs.some((l) => l.code === 'EMPEROR_ERR_CONFIG_NAME' && l.file === join(e.dir, dup)), 'logged with its code');
    }
    e.remove('shop.yml');
    e.remove('Shop.JSON');
    await new Promise((r) => setTimeout(r, 300));
    t.equal(e.emperor.vassals.get('shop')?.state, 'running');
    t.equal(e.emperor.vassals.get('shop')?.pid, first.pid, 'removing the duplicates stopped nothing');
    t.ok(alive(first.pid as number));
  });

  t.test('when the file holding a name goes, a duplicate refused meanwhile takes the name (a panel moving shop.ini to shop.yaml)', async (t) => {
    const e = await startEmperor(t);
    e.write('shop.ini', '[uwsgi]', 'uid = demo-alice', 'command = sleep 600');
    const first = await e.waitFor((x) => x.vassal === 'shop' && x.event === 'spawned');
    e.write('shop.yaml', 'uid: demo-alice\ncommand: sleep 603\n');
    await e.waitFor((x) => x.vassal === 'shop' && x.event === 'invalid');
    const n = e.events.length;
    e.remove('shop.ini');
    const next = await e.waitFor((x) => x.vassal === 'shop' && x.event === 'spawned', n);
    t.not(next.pid, first.pid);
    t.equal(e.emperor.vassals.get('shop')?.spec?.file, join(e.dir, 'shop.yaml'), 'shop.yaml drives it now');
    t.notOk(alive(first.pid as number), 'the old app is gone');
  });

  t.test('tyrant mode: another customer\'s copy of a vassal file cannot take the vassal, its socket or its log', async (t) => {
    const limits = builtinLimits();
    limits.tyrantMinUid = { value: 100, from: 'the test' }; // the demo users are system users
    const e = await startEmperor(t, { tyrant: true, limits });
    const ids = (u: string) => ['-u', '-g'].map((f) => Number(execFileSync('id', [f, u], { encoding: 'utf8' }))) as [number, number];
    const owned = (name: string, user: string, text: string) => {
      const tmp = join(e.root, name);
      writeFileSync(tmp, text);
      chownSync(tmp, ...ids(user));
      renameSync(tmp, join(e.dir, name));
    };
    owned('shop.ini', 'demo-alice', '[uwsgi]\nsocket = app.sock\ncommand = echo victim; sleep 600\n');
    const first = await e.waitFor((x) => x.vassal === 'shop' && x.event === 'spawned');
    await new Promise((r) => setTimeout(r, 200));
    owned('shop.yml', 'demo-bob', 'socket: app.sock\ncommand: echo attacker; sleep 600\n');
    await e.waitFor((x) => x.vassal === 'shop' && x.event === 'invalid');
    t.equal(e.emperor.vassals.get('shop')?.pid, first.pid, 'the victim\'s app still serves');
    t.equal(e.emperor.vassals.get('shop')?.spec?.uid, ids('demo-alice')[0]);
    t.equal(statSync(join(e.root, 'log', 'shop', 'app.log')).gid, ids('demo-alice')[1], 'the victim\'s log still belongs to the victim\'s group');
    e.remove('shop.yml');
    await new Promise((r) => setTimeout(r, 200));
    t.equal(e.emperor.vassals.get('shop')?.pid, first.pid, 'and the attacker removing their copy stops nothing');
  });
}
