// Every example in vassals.example/ runs, not only validates: on this host's hierarchy, and, in the guest of
// scripts/vm/run.sh, on cgroup v2 under systemd (the files must work on both: docs/vassal-file.md).
import { copyFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { detectHierarchies } from '@emperor/jail';
import { get, requireJails, startEmperor } from './fixtures/emperor.js';
import { bound } from './fixtures/time.js';

const EXAMPLES = fileURLToPath(new URL('../../../vassals.example/', import.meta.url));

if (requireJails(t)) {
  t.test(`every example vassal runs on this host's cgroup v${detectHierarchies().some((h) => h.version === 2) ? 2 : 1}, and those with a socket answer`, async (t) => {
    const e = await startEmperor(t);
    const files = readdirSync(EXAMPLES).filter((f) => /\.(ini|json|ya?ml)$/.test(f));
    t.ok(files.length >= 4, `${files.length} examples`);
    for (const f of files) copyFileSync(join(EXAMPLES, f), join(e.dir, f));
    const names = files.map((f) => f.replace(/\.[^.]+$/, ''));
    const deadline = Date.now() + bound(30_000);
    while (!names.every((n) => e.emperor.vassals.get(n)?.state === 'running') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    for (const n of names) t.equal(e.emperor.vassals.get(n)?.state, 'running', `${n} is running`);
    t.same(e.events.filter((x) => ['error', 'invalid', 'cursed', 'backoff'].includes(x.event)).map((x) => `${x.vassal}: ${x.event} ${String(x.error ?? x.problems ?? '')}`), [], 'no error on the way');
    for (const n of names.filter((x) => e.emperor.vassals.get(x)?.spec?.socket !== undefined)) {
      t.match(await get(e.socketOf(n)), new RegExp(`hello from ${n}`), `${n} answers on its socket`);
    }
  });
}
