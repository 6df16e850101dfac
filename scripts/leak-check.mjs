#!/usr/bin/env node
// Run after the test suite: fails when a test left anything behind on this machine: a helper or jailed
// process, a cgroup directory, a mount, a network namespace, or a scratch directory of the tests.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';

const problems = [];
for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
    const exe = readlinkSync(`/proc/${pid}/exe`);
    if (/emperor-jail/.test(exe) || /emperor-jail (create|exec)/.test(cmd)) problems.push(`process ${pid} still runs: ${cmd}`);
  } catch {
    // gone already, or a kernel thread
  }
}
// Every depth (a cgroup tree has no symlinks; 64 is only a guard): on cgroup v2 under systemd, test cgroups
// sit under system.slice/SCOPE/supervisor/... and were once found 10 levels down.
const walk = (dir, depth) => {
  if (depth > 64) return;
  let entries = [];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) {
    if (!e.isDirectory()) continue;
    const p = join(dir, e.name);
    if (/^emperor-(test|bench)/.test(e.name)) problems.push(`cgroup left behind: ${p}`);
    else walk(p, depth + 1);
  }
};
walk('/sys/fs/cgroup', 0);
for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
  if (/emperor/.test(line)) problems.push(`mount left behind: ${line}`);
}
try {
  const netns = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).trim();
  if (netns !== '') problems.push(`network namespaces left behind: ${netns.replace(/\n/g, ', ')}`);
} catch {
  // no iproute2: nothing to check
}
// The project's network (net = nat): veths named emv*, the nftables table inet emperor. In every network
// namespace a process is in (the machine's own included), each looked at once.
const seenNs = new Set();
for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
  let ns;
  try {
    ns = readlinkSync(`/proc/${pid}/ns/net`);
  } catch {
    continue;
  }
  if (seenNs.has(ns)) continue;
  seenNs.add(ns);
  const inNs = (cmd) => {
    try {
      return execFileSync('nsenter', [`--net=/proc/${pid}/ns/net`, '--', ...cmd], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    } catch {
      return '';
    }
  };
  const links = inNs(['ip', '-o', 'link', 'show']).split('\n').filter((l) => /^\d+: emv\d+[@:]/.test(l));
  if (links.length > 0) problems.push(`jail veths left behind in ${ns} (pid ${pid}): ${links.map((l) => l.split(':')[1].trim()).join(', ')}`);
  if (/table inet emperor\b/.test(inNs(['nft', 'list', 'tables']))) problems.push(`nftables table inet emperor left behind in ${ns} (pid ${pid})`);
}
for (const f of readdirSync('/tmp')) {
  if (/^emperor-(run|test|distro|bind|suid|config-test|read-test|cli-test)/.test(f) && statSync(join('/tmp', f)).isDirectory()) problems.push(`scratch dir left behind: /tmp/${f}`);
}
if (problems.length > 0) {
  for (const p of problems) console.error(`leak-check: ${p}`);
  process.exit(1);
}
console.log('leak-check: no process, cgroup, mount, network namespace, jail veth, nftables table or scratch dir left behind');
