#!/usr/bin/env node
// Fails when a workspace package imports a sibling it does not declare in package.json, when tsconfig.json
// references differ from the declared siblings, or when the declared graph has a cycle.
// Usage: node scripts/check-deps.mjs [ROOT]
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';

const root = resolve(process.argv[2] ?? new URL('..', import.meta.url).pathname);
const rootPkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const dirs = (rootPkg.workspaces ?? []).map((w) => join(root, w));
const pkgs = new Map(); // name -> { dir, deps:Set, refs:Set }
for (const dir of dirs) {
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const deps = new Set(Object.keys({ ...pkg.dependencies, ...pkg.peerDependencies, ...pkg.optionalDependencies }));
  const tsconfig = join(dir, 'tsconfig.json');
  const refs = new Set(existsSync(tsconfig) ? (JSON.parse(readFileSync(tsconfig, 'utf8')).references ?? []).map((r) => resolve(dir, r.path)) : []);
  pkgs.set(pkg.name, { dir, deps, refs });
}
const problems = [];
const files = (d) => readdirSync(d).flatMap((f) => {
  const p = join(d, f);
  if (f === 'node_modules' || f === 'dist') return [];
  return statSync(p).isDirectory() ? files(p) : /\.(ts|mts|js|mjs)$/.test(f) ? [p] : [];
});
const IMPORT = /(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s*['"]([^'"]+)['"]/gm;
for (const [name, { dir, deps, refs }] of pkgs) {
  for (const sub of ['src', 'test', 'bin']) {
    if (!existsSync(join(dir, sub))) continue;
    for (const file of files(join(dir, sub))) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(IMPORT)) {
        const spec = m[1] ?? m[2] ?? m[3];
        const target = [...pkgs.keys()].find((n) => spec === n || spec.startsWith(`${n}/`));
        if (target !== undefined && target !== name && !deps.has(target)) {
          problems.push(`${relative(root, file)}: imports ${target}, which ${name} does not declare in its package.json dependencies`);
        }
        if (spec.startsWith('.')) {
          const abs = resolve(join(file, '..'), spec);
          const other = [...pkgs].find(([n, p]) => n !== name && abs.startsWith(p.dir + '/'));
          if (other) problems.push(`${relative(root, file)}: reaches into ${other[0]} by a relative path; import it by name`);
        }
      }
    }
  }
  const wantRefs = new Set([...deps].filter((d) => pkgs.has(d)).map((d) => pkgs.get(d).dir));
  for (const r of wantRefs) if (!refs.has(r)) problems.push(`${relative(root, dir)}/tsconfig.json: missing reference to ${relative(root, r)} (declared dependency)`);
  for (const r of refs) if (!wantRefs.has(r)) problems.push(`${relative(root, dir)}/tsconfig.json: references ${relative(root, r)}, which package.json does not declare`);
}
// Cycle detection over declared workspace dependencies (depth-first, three colours).
const state = new Map();
const stack = [];
const visit = (n) => {
  state.set(n, 1);
  stack.push(n);
  for (const d of pkgs.get(n).deps) {
    if (!pkgs.has(d)) continue;
    if (state.get(d) === 1) problems.push(`dependency cycle: ${[...stack.slice(stack.indexOf(d)), d].join(' -> ')}`);
    else if (!state.has(d)) visit(d);
  }
  stack.pop();
  state.set(n, 2);
};
for (const n of pkgs.keys()) if (!state.has(n)) visit(n);
if (problems.length > 0) {
  for (const p of problems) console.error(`check-deps: ${p}`);
  process.exit(1);
}
console.log(`check-deps: ${pkgs.size} packages, imports match declared dependencies, no cycle`);
