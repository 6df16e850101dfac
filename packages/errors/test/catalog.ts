import { readFileSync } from 'node:fs';
import t from 'tap';
import { errorCodes } from '../src/index.js';

const doc = readFileSync(new URL('../../../docs/errors.md', import.meta.url), 'utf8');
const documented = [...doc.matchAll(/^\| `(EMPEROR_ERR_[A-Z0-9_]+)` \|/gm)].map((m) => m[1]);

t.test('docs/errors.md lists exactly the codes of the catalog, in the same order', async (t) => {
  t.ok(documented.length > 0, 'the doc has a table of codes');
  t.same(documented, errorCodes());
});

t.test('every documented code says how to fix it', async (t) => {
  for (const row of doc.split('\n').filter((l) => l.startsWith('| `EMPEROR_ERR_'))) {
    const cells = row.split('|').map((c) => c.trim());
    t.ok((cells[3] ?? '').length > 10, `${cells[1]} has a "how to fix" cell`);
  }
});

t.test('codes are prefixed and unique', async (t) => {
  const codes = errorCodes();
  t.equal(new Set(codes).size, codes.length);
  for (const c of codes) t.match(c, /^EMPEROR_ERR_[A-Z0-9_]+$/);
});
