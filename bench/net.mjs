#!/usr/bin/env node
// Jail networking (issue 12), side by side in one run, in a world of network namespaces of its own (the
// machine's interfaces are never used; packages/emperor/test/fixtures/net-world.mjs):
//   throughput: one TCP connection sending SIZE MB to a sink in the "internet" namespace, from a net = nat
//               jail (veth, nftables filter and counters, NAT) against the same from the host namespace
//   connect:    sequential TCP connects (connect, then close) to the internet echo server, same two places
//   build:      Jail.create + JailNetwork.attach + stop + detach (net = nat) against Jail.create + stop (none)
// Runs alternate between the cases so that machine noise hits all alike.
// Usage: node bench/net.mjs [ROUNDS] [SIZE_MB] [CONNECTS] [BUILDS]
import { spawn, spawnSync } from 'node:child_process';
import { chownSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { builtinNetwork, ipv4ToNumber, parseVassalText } from '@emperor/config';
import { Jail, JailNetwork, removeCgroupParent, detectHierarchies } from '@emperor/jail';
import { INTERNET, netWorld, SINK, TCP_ECHO } from '../packages/emperor/test/fixtures/net-world.mjs';

const [ROUNDS, SIZE_MB, CONNECTS, BUILDS] = [5, 256, 1000, 30].map((d, i) => Number(process.argv[2 + i] ?? d));
// The jail's cpu-limit. The host-namespace client runs on both cores unbounded; a jail's cgroup is charged
// for the kernel's packet work done in its sender's context (two veth hops, the firewall, NAT), so at the
// default 100% the jail's own quota is what caps it (EMPEROR_BENCH_NET_CPU=100% shows that; benchmarks.md).
const CPU = process.env.EMPEROR_BENCH_NET_CPU ?? '200%';

/** A node program that measures, where it runs, and prints JSON. */
const CLIENT = String.raw`
const net = require('node:net');
const [mode, host, port, n] = process.argv.slice(2);
const now = () => Number(process.hrtime.bigint()) / 1e6;
if (mode === 'send') {
  const total = Number(n) * 1024 * 1024;
  const chunk = Buffer.alloc(1024 * 1024, 97);
  const t0 = now();
  const s = net.connect(Number(port), host, () => {
    let sent = 0;
    const pump = () => { while (sent < total) { sent += chunk.length; if (!s.write(chunk)) return s.once('drain', pump); } s.end(); };
    pump();
  });
  let answer = '';
  s.on('data', (d) => (answer += d));
  s.on('end', () => { const ms = now() - t0; if (Number(answer) !== total) { console.log(JSON.stringify({ error: 'short ' + answer })); process.exit(1); } console.log(JSON.stringify({ ms, mbps: (total * 8) / (ms / 1000) / 1e6 })); });
} else {
  let i = 0; const times = [];
  const one = () => {
    const t0 = now();
    const s = net.connect(Number(port), host, () => { times.push(now() - t0); s.destroy(); if (++i < Number(n)) setImmediate(one); else done(); });
    s.on('error', (e) => { console.log(JSON.stringify({ error: e.code })); process.exit(1); });
  };
  const done = () => { times.sort((a, b) => a - b); console.log(JSON.stringify({ mean: times.reduce((a, b) => a + b, 0) / times.length, median: times[times.length >> 1], p99: times[Math.floor(times.length * 0.99)] })); };
  one();
}
`;

async function inner() {
  const PARENT = `emperor-bench-${process.pid}`;
  const scratch = mkdtempSync(join(tmpdir(), 'emperor-run-bench-'));
  const runDir = join(scratch, 'run');
  const controlDir = join(scratch, 'shims');
  spawnSync('mkdir', ['-p', runDir]);
  const client = join(scratch, 'client.cjs');
  writeFileSync(client, CLIENT);
  spawnSync('chmod', ['755', scratch]);
  const spec = (name, net) => {
    const r = parseVassalText(`[uwsgi]\nuid = demo-alice\ncommand = true\ncpu-limit = ${CPU}\nnet = ${net}\nbind-ro = ${client}:/client.cjs\n`, `${name}.ini`);
    if (!r.ok) throw new Error('bad bench spec');
    return r.spec;
  };
  chownSync(runDir, 0, spec('x', 'none').gid);
  spawnSync('chmod', ['770', runDir]);
  const network = new JailNetwork({ ...builtinNetwork(), dns: [ipv4ToNumber(INTERNET)] }, join(scratch, 'net'));
  const natJail = async (name) => {
    const s = spec(name, 'nat');
    await network.prepare(s);
    const jail = await Jail.create(s, { runDir, controlDir, cgroupParent: PARENT, resolvConf: network.resolvConfOf(name) });
    await network.attach(s, { pid: jail.initPid, start: jail.initStart });
    return jail;
  };
  const results = { throughput: { jail: [], host: [] }, connect: { jail: [], host: [] }, build: { nat: [], none: [] } };
  const inJail = async (jail, args) => {
    const out = join(runDir, 'out.json');
    rmSync(out, { force: true });
    const p = jail.start('bench', { argv: ['/bin/sh', '-c', `node /client.cjs ${args.join(' ')} > /run/out.json 2>&1`] });
    const e = await p.exited;
    if (e.code !== 0) throw new Error(`jail client exited ${e.code}: ${readFileSync(out, 'utf8')}`);
    return JSON.parse(readFileSync(out, 'utf8'));
  };
  const onHost = (args) => new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [client, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`host client exited ${code}: ${out}`))));
  });
  let jail;
  try {
    jail = await natJail('bench-net');
    // Warm-up: the first connections fill ARP and conntrack caches on both paths.
    await inJail(jail, ['connect', INTERNET, TCP_ECHO, 50]);
    await onHost(['connect', INTERNET, TCP_ECHO, 50]);
    for (let r = 0; r < ROUNDS; r++) {
      results.throughput.jail.push((await inJail(jail, ['send', INTERNET, SINK, SIZE_MB])).mbps);
      results.throughput.host.push((await onHost(['send', INTERNET, SINK, SIZE_MB])).mbps);
      results.connect.jail.push((await inJail(jail, ['connect', INTERNET, TCP_ECHO, CONNECTS])).mean);
      results.connect.host.push((await onHost(['connect', INTERNET, TCP_ECHO, CONNECTS])).mean);
    }
    await jail.stop();
    await network.detach('bench-net');
    jail = undefined;
    for (let i = 0; i < BUILDS; i++) {
      let t0 = performance.now();
      const n = await natJail(`bench-nat`);
      results.build.nat.push(performance.now() - t0);
      await n.stop();
      await network.detach('bench-nat');
      t0 = performance.now();
      const p = await Jail.create(spec('bench-none', 'none'), { runDir, controlDir, cgroupParent: PARENT });
      results.build.none.push(performance.now() - t0);
      await p.stop();
    }
  } finally {
    if (jail) {
      await jail.stop();
      await network.detach('bench-net');
    }
    await network.close();
    removeCgroupParent(PARENT, detectHierarchies());
    rmSync(scratch, { recursive: true, force: true });
  }
  const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
  const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
  const t = { jail: median(results.throughput.jail), host: median(results.throughput.host) };
  const c = { jail: median(results.connect.jail), host: median(results.connect.host) };
  const b = { nat: mean(results.build.nat), none: mean(results.build.none) };
  console.log(JSON.stringify({ rounds: ROUNDS, sizeMB: SIZE_MB, connects: CONNECTS, builds: BUILDS, results }, null, 1));
  console.log(`throughput (median of ${ROUNDS} x ${SIZE_MB} MB, one TCP connection, jail cpu-limit ${CPU}): jail ${t.jail.toFixed(0)} Mbit/s, host ${t.host.toFixed(0)} Mbit/s: jail/host ${(t.jail / t.host).toFixed(3)} (target >= 0.90)`);
  console.log(`connect (median of ${ROUNDS} means of ${CONNECTS}): jail ${c.jail.toFixed(3)} ms, host ${c.host.toFixed(3)} ms: jail/host ${(c.jail / c.host).toFixed(3)}x (target <= 1.2x)`);
  console.log(`jail build (mean of ${BUILDS}): net = nat ${b.nat.toFixed(2)} ms, net = none ${b.none.toFixed(2)} ms: ${(b.nat / b.none).toFixed(2)}x, +${(b.nat - b.none).toFixed(2)} ms`);
}

if (process.env.EMPEROR_BENCH_NET_INNER === undefined) {
  // Outside: build the world, run this script again inside its host namespace, then remove the world.
  const world = await netWorld('b');
  try {
    const r = spawnSync(world.inHost[0], [...world.inHost.slice(1), process.execPath, fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit', env: { ...process.env, EMPEROR_BENCH_NET_INNER: '1' } });
    process.exitCode = r.status ?? 1;
  } finally {
    world.close();
  }
} else {
  await inner();
}
