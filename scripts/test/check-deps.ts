import { spawnSync } from 'node:child_process';
import t, { type Test } from 'tap';
import { fileURLToPath } from 'node:url';

const script = fileURLToPath(new URL('../check-deps.mjs', import.meta.url));
const run = (root: string) => spawnSync(process.execPath, [script, root], { encoding: 'utf8' });

/** A tiny workspace: packages a and b, with b's source and manifests given by the test. */
const workspace = (t: Test, b: { deps?: Record<string, string>; refs?: string[]; src: string }, aDeps: Record<string, string> = {}) =>
  t.testdir({
    'package.json': JSON.stringify({ workspaces: ['packages/a', 'packages/b'] }),
    packages: {
      a: {
        'package.json': JSON.stringify({ name: '@x/a', dependencies: aDeps }),
        'tsconfig.json': JSON.stringify({ references: Object.keys(aDeps).length ? [{ path: '../b' }] : [] }),
        src: { 'index.ts': 'export const a = 1;\n' },
      },
      b: {
        'package.json': JSON.stringify({ name: '@x/b', dependencies: b.deps ?? {} }),
        'tsconfig.json': JSON.stringify({ references: (b.refs ?? []).map((path) => ({ path })) }),
        src: { 'index.ts': b.src },
      },
    },
  });

t.test('passes when imports match declared dependencies', async (t) => {
  const r = run(workspace(t, { deps: { '@x/a': '1' }, refs: ['../a'], src: "import { a } from '@x/a';\nexport const b = a;\n" }));
  t.equal(r.status, 0, r.stderr);
});

t.test('fails on an import of an undeclared sibling', async (t) => {
  const r = run(workspace(t, { src: "import { a } from '@x/a';\nexport const b = a;\n" }));
  t.equal(r.status, 1);
  t.match(r.stderr, /packages\/b\/src\/index\.ts: imports @x\/a, which @x\/b does not declare/);
});

t.test('fails on a relative import into a sibling', async (t) => {
  const r = run(workspace(t, { deps: { '@x/a': '1' }, refs: ['../a'], src: "import { a } from '../../a/src/index.js';\nexport const b = a;\n" }));
  t.equal(r.status, 1);
  t.match(r.stderr, /reaches into @x\/a by a relative path/);
});

t.test('fails when tsconfig references disagree with package.json', async (t) => {
  const r = run(workspace(t, { deps: { '@x/a': '1' }, src: 'export const b = 1;\n' }));
  t.equal(r.status, 1);
  t.match(r.stderr, /missing reference to packages\/a/);
});

t.test('fails on a dependency cycle', async (t) => {
  const r = run(workspace(t, { deps: { '@x/a': '1' }, refs: ['../a'], src: 'export const b = 1;\n' }, { '@x/b': '1' }));
  t.equal(r.status, 1);
  t.match(r.stderr, /dependency cycle: @x\/(a|b) -> @x\/(a|b) -> @x\/(a|b)/);
});

t.test('the real workspace passes', async (t) => {
  const r = run(fileURLToPath(new URL('../..', import.meta.url)));
  t.equal(r.status, 0, r.stderr);
});
