import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { emperorBin, startDaemon } from './fixtures/daemon-bin.js';
import { requireJails } from './fixtures/emperor.js';
import { HOST_SERVICE, HOST_UPLINK, INTERNET, netWorld, PRIVATE, PRIVATE_PORT, TCP_ECHO, UDP_ECHO, WHOAMI } from './fixtures/net-world.mjs';
import { bound } from './fixtures/time.js';

const PROBE = fileURLToPath(new URL('./fixtures/net-probe.cjs', import.meta.url));

interface NetView { address: string; txBytes: number; txPackets: number; rxBytes: number; rxPackets: number; refused: number }
interface View { name: string; state: string; pid: number | null; jail: { init: number } | null; net: NetView | null; lastError: string | null; restarts: number }

/**
 * A unix-socket HTTP GET: status and body. A connection of its own each time (agent: false): Node's global
 * agent keeps connections alive, and one the server closes after its 5 s keep-alive timeout can be picked
 * for the next request just then (EPIPE, seen in the slow guest).
 */
const get = (socketPath: string, path: string): Promise<{ status: number; body: string }> =>
  new Promise((resolve, reject) => {
    const req = request({ socketPath, path, agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });

/** The emperor binary in the world's host namespace over vassal files, with emperor.ini `ini`. */
const daemon = async (t: Test, world: Awaited<ReturnType<typeof netWorld>>, vassals: (probe: string) => Record<string, string>, ini: string, reuse: { root?: string; cgroupParent: string; env?: Record<string, string> }) => {
  const root = reuse.root ?? mkdtempSync(join(tmpdir(), 'emperor-test-bin-'));
  // The probe where every jail can read it (the scratch dir's /tmp is not the jail's).
  const probe = join(root, 'probe.cjs');
  const files = vassals(probe);
  copyFileSync(PROBE, probe);
  chmodSync(root, 0o755);
  writeFileSync(join(root, 'emperor.ini'), `[emperor]\n${ini}\n`);
  const d = startDaemon(t, files, { wrap: world.inHost, args: ['--config', join(root, 'emperor.ini')], root, cgroupParent: reuse.cgroupParent, ...(reuse.env ? { env: reuse.env } : {}) });
  const until = async <T>(what: string, f: () => Promise<T | undefined> | T | undefined): Promise<T> => {
    for (let i = 0; i < bound(600); i++) {
      const r = await f();
      if (r !== undefined && r !== false) return r;
      await new Promise((res) => setTimeout(res, 50));
    }
    throw new Error(`timed out waiting for ${what}; daemon output:\n${d.output().slice(-4000)}`);
  };
  const api = async (path: string) => {
    const r = await get(join(d.runDir, 'control.sock'), path);
    return r.body;
  };
  const view = async (name: string): Promise<View | undefined> => {
    if (!existsSync(join(d.runDir, 'control.sock'))) return undefined;
    const r = await get(join(d.runDir, 'control.sock'), `/vassals/${name}`).catch(() => undefined);
    return r?.status === 200 ? (JSON.parse(r.body) as View) : undefined;
  };
  const running = (name: string) => until(`${name} running`, async () => {
    const v = await view(name);
    return v?.state === 'running' ? v : undefined;
  });
  /** Runs a probe in the vassal's jail (as its uid), through its app. */
  const probeIn = async (name: string, path: string): Promise<Record<string, unknown>> => {
    try {
      return JSON.parse((await get(join(d.runDir, 'vassals', name, 'app.sock'), path)).body) as Record<string, unknown>;
    } catch (e) {
      let app = '';
      try {
        app = readFileSync(join(root, 'log', name, 'app.log'), 'utf8').slice(-3000);
      } catch {
        app = '(no app.log)';
      }
      throw new Error(`probe ${name} ${path}: ${String(e)}; view: ${JSON.stringify(await view(name))}; app.log:\n${app}\ndaemon output:\n${d.output().slice(-6000)}`);
    }
  };
  return { ...d, until, api, view, running, probe: probeIn, probePath: probe, root };
};

/** Writes a vassal file as a panel should: whole, then renamed into place. */
const rewrite = (file: string, text: string) => {
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
};
/** Counters a view shows may be up to 100 ms old (NET_FRESH_MS): a read after traffic waits that long. */
const settle = () => new Promise((r) => setTimeout(r, 250));

/** A net = none vassal running the probe. */
const plain = (uid: string, probe: string) => `[uwsgi]\nuid = ${uid}\nsocket = app.sock\nbind-ro = ${probe}:/probe.cjs\ncommand = node /probe.cjs\n`;
const vassal = (uid: string, probe: string, extra = '') => `[uwsgi]\nuid = ${uid}\nsocket = app.sock\nnet = nat\nbind-ro = ${probe}:/probe.cjs\ncommand = node /probe.cjs\n${extra}`;

/** Runs a command as root in a jail's network namespace (what a jail that somehow had CAP_NET_ADMIN could do). */
const inJailNet = (init: number, ...cmd: string[]) => spawnSync('nsenter', [`--net=/proc/${init}/ns/net`, '--', ...cmd], { encoding: 'utf8', timeout: 30_000 });

// One world for every subtest (they run one after another), built before the first: tap ends the root
// test when its queue is empty, so no await may come between subtests (Node 24 ended it during one).
const jails = requireJails(t);
// Every subtest must have run: one that tap refused to start ("cannot create subtest after parent test
// ends") is no failure in its count, so the exit code says so.
let planned = 0;
let ran = 0;
const sub = (name: string, fn: (t: Test) => Promise<void>) => {
  planned++;
  return t.test(name, async (t) => {
    ran++;
    await fn(t);
  });
};
process.once('exit', () => {
  if (ran !== planned) {
    console.error(`network.ts: ${planned - ran} of ${planned} subtests did not run`);
    process.exitCode = 1;
  }
});
const world = jails ? await netWorld('n') : (undefined as never);
if (jails) t.teardown(world.close);

if (jails) {

  sub('a nat jail reaches the internet through NAT and resolves names; a net = none jail reaches nothing', async (t) => {
    const d = await daemon(t, world, (probe) => ({ 'alice.ini': vassal('demo-alice', probe), 'carol.ini': plain('demo-bob', probe) }), `net-dns = ${INTERNET}`, { cgroupParent: `emperor-test-${process.pid}-net1` });
    const alice = await d.running('alice');
    await d.running('carol');
    t.match(alice.net, { address: /^10\.208\.0\.\d+$/ }, 'an address from the built-in pool');
    const tcp = await d.probe('alice', `/tcp?host=${INTERNET}&port=${TCP_ECHO}&bytes=100000`);
    t.same(tcp, { ok: true, received: 100000 }, 'TCP to the internet server and back');
    t.same(await d.probe('alice', `/udp?host=${INTERNET}&port=${UDP_ECHO}`), { ok: true, received: 16 }, 'UDP too');
    t.same(await d.probe('alice', '/resolve?name=svc.example.test'), { ok: true, address: INTERNET }, 'a name resolves through the operator\'s resolver');
    const resolv = await d.probe('alice', '/file?path=/etc/resolv.conf');
    t.match(resolv.text, new RegExp(`^nameserver ${INTERNET.replace(/\./g, '\\.')}$`, 'm'), '/etc/resolv.conf names net-dns');
    const none = await d.probe('carol', `/tcp?host=${INTERNET}&port=${TCP_ECHO}`);
    t.equal(none.ok, false, 'net = none: no route out');
    t.equal((await d.view('carol'))?.net, null, 'and no network in its status');
    t.same(await d.probe('alice', `/read?host=${INTERNET}&port=${WHOAMI}`), { ok: true, text: HOST_UPLINK }, 'the server sees the uplink\'s address (NAT), never the jail\'s');
  });
}

/** The gateway of a jail address (its /30's first host). */
const gatewayOf = (address: string) => address.replace(/\d+$/, (n) => String(Number(n) - 1));
/** A TCP connect from the world's host namespace, as root (to show a service there is up). */
const hostConnect = (world: Awaited<ReturnType<typeof netWorld>>, host: string, port: number) =>
  world.run('host', process.execPath, '-e', `require('net').connect(${port}, '${host}').on('connect', () => process.exit(0)).on('error', () => process.exit(1))`).status === 0;

if (jails) {

  sub('a nat jail reaches no other vassal, nor the host, nor private networks until a rule allows it, and an allow rule applies live', async (t) => {
    const d = await daemon(t, world, (probe) => ({ 'alice.ini': vassal('demo-alice', probe), 'bob.ini': vassal('demo-bob', probe) }),
      `net-dns = ${INTERNET}\n; the operator opens one host service to every jail\nnet-allow = tcp ${HOST_UPLINK}:${HOST_SERVICE}`, { cgroupParent: `emperor-test-${process.pid}-net2` });
    const probe = d.probePath;
    const alice = await d.running('alice');
    const bob = await d.running('bob');
    const bobAddr = bob.net?.address ?? '';
    const gw = gatewayOf(alice.net?.address ?? '');
    t.not(bobAddr, alice.net?.address, 'two addresses');
    t.same(await d.probe('bob', `/tcp?host=${bobAddr}&port=7200`), { ok: true, received: 16 }, 'bob\'s listener is up (from bob)');
    t.match(await d.probe('alice', `/tcp?host=${bobAddr}&port=7200`), { ok: false, error: 'EHOSTUNREACH' }, 'alice cannot reach bob over TCP (refused at once, not a timeout)');
    t.match(await d.probe('alice', `/udp?host=${bobAddr}&port=7201&timeout=1500`), { ok: false }, 'nor over UDP');
    t.equal(inJailNet(alice.jail?.init ?? 0, 'ping', '-c1', '-W1', bobAddr).status === 0, false, 'nor by ICMP (ping as root in alice\'s namespace)');
    t.equal(inJailNet(alice.jail?.init ?? 0, 'ping', '-c1', '-W2', INTERNET).status, 0, 'while ICMP to the internet works');
    t.ok(hostConnect(world, '127.0.0.1', HOST_SERVICE) && hostConnect(world, gw, HOST_SERVICE), 'the host\'s service listens on its loopback and on the jail\'s gateway');
    t.match(await d.probe('alice', `/tcp?host=${gw}&port=${HOST_SERVICE}`), { ok: false }, 'the host\'s service on the gateway address is refused');
    t.match(await d.probe('alice', `/tcp?host=${gw}&port=22`), { ok: false }, 'so is any other port of the host');
    t.same(await d.probe('alice', `/tcp?host=${HOST_UPLINK}&port=${HOST_SERVICE}`), { ok: true, received: 16 }, 'the operator\'s net-allow opens exactly that host service');
    t.match(await d.probe('alice', `/tcp?host=127.0.0.1&port=${HOST_SERVICE}`), { ok: false, error: 'ECONNREFUSED' }, 'the jail\'s loopback is its own');
    t.match(await d.probe('alice', `/tcp?host=${PRIVATE}&port=${PRIVATE_PORT}`), { ok: false, error: 'EHOSTUNREACH' }, 'the private server is refused');
    t.same(await d.probe('bob', `/tcp?host=${INTERNET}&port=${TCP_ECHO}`), { ok: true, received: 16 }, 'bob reaches the internet meanwhile');

    // The panel rewrites alice's file with an allow rule: applied to the running jail, the app not restarted.
    rewrite(join(d.dir, 'alice.ini'), vassal('demo-alice', probe, `net-allow = tcp ${PRIVATE}:${PRIVATE_PORT}\n`));
    await d.until('the allow rule applied', async () => (await d.probe('alice', `/tcp?host=${PRIVATE}&port=${PRIVATE_PORT}&timeout=1000`)).ok === true || undefined);
    const after = await d.view('alice');
    t.equal(after?.pid, alice.pid, 'the same app process');
    t.equal(after?.jail?.init, alice.jail?.init, 'the same jail');
    t.match(d.output(), /"msg":"alice: net-rules"/, 'a net-rules event');
    t.match(await d.probe('bob', `/tcp?host=${PRIVATE}&port=${PRIVATE_PORT}`), { ok: false }, 'bob still cannot reach the private server');
    t.match(await d.probe('alice', `/tcp?host=${PRIVATE}&port=22`), { ok: false }, 'and alice only that port');
    // Refused attempts are counted and reported on the event stream, with the traffic so far.
    await d.until('a net-refused event', () => /"msg":"alice: net-refused"/.test(d.output()) || undefined);
    t.match(d.output(), /"event":"net-refused","refused":\d+,"new":\d+,"net":\{"txBytes":\d+,"txPackets":\d+,"rxBytes":\d+,"rxPackets":\d+,"refused":\d+\}/, 'the event carries the totals');
    t.ok(((await d.view('alice'))?.net?.refused ?? 0) >= 5, 'refused attempts counted');
  });

  sub('counters match the bytes sent and received, in status, metrics and stats, and survive a jail rebuild and an emperor restart', async (t) => {
    const cgroupParent = `emperor-test-${process.pid}-net3`;
    let d = await daemon(t, world, (probe) => ({ 'alice.ini': vassal('demo-alice', probe), 'bob.ini': vassal('demo-bob', probe) }), `net-dns = ${INTERNET}`, { cgroupParent });
    const { root, probePath: probe } = d;
    await d.running('alice');
    await d.running('bob');
    const net = async (name: string) => (await d.view(name))?.net ?? undefined;
    const before = await net('alice');
    const bobBefore = await net('bob');
    // TCP segments each side sent again (the kernel's RetransSegs, in the jail's and in the internet's netns).
    const alicePid = (await d.view('alice'))?.pid;
    const retrans = (snmp: string): number => {
      const [names, values] = snmp.split('\n').filter((l) => l.startsWith('Tcp:')).map((l) => l.split(/\s+/));
      return Number(values?.[names?.indexOf('RetransSegs') ?? -1]);
    };
    const resent = () => ({ jail: retrans(readFileSync(`/proc/${alicePid}/net/snmp`, 'utf8')), internet: retrans(world.run('internet', 'cat', '/proc/net/snmp').stdout) });
    const resentBefore = resent();
    const N = 2_000_000;
    t.same(await d.probe('alice', `/tcp?host=${INTERNET}&port=${TCP_ECHO}&bytes=${N}&timeout=20000`), { ok: true, received: N });
    await settle();
    const mid = await net('alice');
    const resentMid = resent();
    if (before === undefined || mid === undefined || bobBefore === undefined) throw new Error('no net view');
    const tx = mid.txBytes - before.txBytes;
    const rx = mid.rxBytes - before.rxBytes;
    // Each way: the payload, plus IP and TCP headers (52 bytes a packet with timestamps), the handshake, a
    // margin, and every segment TCP sent again (each at most a 1500-byte frame: RetransSegs counts segments of
    // the MSS, however large the GSO packet that carried them).
    const over = (packets: number, again: number) => N + packets * 80 + N * 0.05 + again * 1500;
    const again = { tx: resentMid.jail - resentBefore.jail, rx: resentMid.internet - resentBefore.internet };
    t.ok(Number.isInteger(again.tx) && Number.isInteger(again.rx), `retransmissions read (${again.tx} out, ${again.rx} in)`);
    t.ok(tx >= N && tx <= over(mid.txPackets - before.txPackets, again.tx), `tx ${tx} bytes for ${N} of payload, ${mid.txPackets - before.txPackets} packets, ${again.tx} segments sent again`);
    t.ok(rx >= N && rx <= over(mid.rxPackets - before.rxPackets, again.rx), `rx ${rx} bytes for ${N} of payload, ${mid.rxPackets - before.rxPackets} packets, ${again.rx} segments sent again`);
    const bobMid = await net('bob');
    t.ok((bobMid?.txBytes ?? 0) - bobBefore.txBytes < 10_000, 'bob\'s counters did not take alice\'s traffic');
    const metrics = await d.api('/metrics');
    t.match(metrics, `emperor_vassal_network_transmit_bytes_total{vassal="alice"} ${mid.txBytes}\n`, 'metrics: the same transmit bytes');
    t.match(metrics, `emperor_vassal_network_receive_bytes_total{vassal="alice"} ${mid.rxBytes}\n`, 'metrics: the same receive bytes');
    t.match(metrics, `emperor_vassal_network_transmit_packets_total{vassal="alice"} ${mid.txPackets}\n`);
    t.match(metrics, /# TYPE emperor_vassal_network_refused_total counter/);
    const stats = JSON.parse(await d.api('/stats')) as { vassals: Array<{ id: string; net?: { addr: string; tx: number; rx: number } }> };
    t.match(stats.vassals.find((v) => v.id === 'alice.ini')?.net, { addr: mid.address, tx: mid.txBytes, rx: mid.rxBytes }, 'stats: the same, tuntap-router style');
    const status = spawnSync(emperorBin, ['status', '--run-dir', d.runDir], { encoding: 'utf8' });
    t.match(status.stdout, new RegExp(`alice\\s+running.*${mid.address.replace(/\./g, '\\.')} \\d`), 'emperor status shows the address and traffic');

    // A change that rebuilds the jail (hostname): the counters go on from where they were.
    const first = await d.view('alice');
    t.type(first?.jail?.init, 'number', 'the jail before the change');
    rewrite(join(d.dir, 'alice.ini'), vassal('demo-alice', probe, 'hostname = alice2\n'));
    await d.until('alice rebuilt', async () => {
      const v = await d.view('alice');
      return v?.state === 'running' && typeof v.jail?.init === 'number' && v.jail.init !== first?.jail?.init && existsSync(join(d.runDir, 'vassals', 'alice', 'app.sock')) ? v : undefined;
    });
    const rebuilt = await net('alice');
    t.ok((rebuilt?.txBytes ?? 0) >= mid.txBytes && (rebuilt?.rxBytes ?? 0) >= mid.rxBytes, 'counters carried across the rebuild');
    t.same(await d.probe('alice', `/tcp?host=${INTERNET}&port=${TCP_ECHO}`), { ok: true, received: 16 }, 'the new jail is online');

    // The emperor is SIGKILLed and started again: it adopts the jails, their slots, rules and counters.
    const kept = await net('alice');
    d.proc.kill('SIGKILL');
    await d.exited;
    d = await daemon(t, world, () => ({}), `net-dns = ${INTERNET}`, { root, cgroupParent });
    const adopted = await d.running('alice');
    t.equal(adopted.net?.address, kept?.address, 'the same address');
    t.ok((adopted.net?.txBytes ?? 0) >= (kept?.txBytes ?? Infinity), 'the same counters (kept by the kernel)');
    t.same(await d.probe('alice', `/tcp?host=${INTERNET}&port=${TCP_ECHO}`), { ok: true, received: 16 }, 'still online');
    const bobAddr = (await d.running('bob')).net?.address;
    t.match(bobAddr, /^10\.208\./, 'bob adopted with its address');
    t.match(await d.probe('alice', `/tcp?host=${bobAddr ?? 'none'}&port=7200`), { ok: false, error: 'EHOSTUNREACH' }, 'and still kept from bob');
  });
}

if (jails) {

  sub('a hostile jail cannot change its address, routes or the host\'s rules, spoof a neighbour, or fill the conntrack table', async (t) => {
    const d = await daemon(t, world, (probe) => ({ 'alice.ini': vassal('demo-alice', probe, 'net-connections = 20\n'), 'bob.ini': vassal('demo-bob', probe) }),
      `net-dns = ${INTERNET}\n; an operator rule covering the whole of 10/8, the pool included\nnet-allow = any 10.0.0.0/8`, { cgroupParent: `emperor-test-${process.pid}-net4` });
    const alice = await d.running('alice');
    const bob = await d.running('bob');
    const mine = alice.net?.address ?? '';
    const theirs = bob.net?.address ?? '';
    t.same(await d.probe('alice', `/tcp?host=${PRIVATE}&port=${PRIVATE_PORT}`), { ok: true, received: 16 }, 'the operator\'s any 10.0.0.0/8 opens the private server');
    t.match(await d.probe('alice', `/tcp?host=${theirs}&port=7200`), { ok: false, error: 'EHOSTUNREACH' }, 'but never another vassal, though the rule covers the pool');
    // As the customer's uid, from inside the jail: no capability, so no change to the network at all.
    for (const [what, args] of [
      ['add an address', ['addr', 'add', `${theirs}/32`, 'dev', 'eth0']],
      ['change its address', ['addr', 'del', `${mine}/30`, 'dev', 'eth0']],
      ['add a route', ['route', 'add', '10.99.0.0/24', 'via', gatewayOf(mine)]],
      ['take the link down', ['link', 'set', 'eth0', 'down']],
    ] as const) {
      const r = await d.probe('alice', `/cmd?file=ip&${args.map((a) => `arg=${encodeURIComponent(a)}`).join('&')}`);
      t.match(r, { ok: false, stderr: /Operation not permitted/ }, `cannot ${what}`);
    }
    t.match(await d.probe('alice', '/cmd?file=nft&arg=list&arg=ruleset'), { ok: false }, 'cannot read or change nftables (its own namespace\'s, let alone the host\'s)');
    t.match(await d.probe('alice', `/cmd?file=ping&arg=-c1&arg=-W1&arg=${INTERNET}`), { ok: false }, 'no raw or ICMP sockets (ping)');
    t.same(await d.probe('alice', `/tcp?host=${INTERNET}&port=${TCP_ECHO}`), { ok: true, received: 16 }, 'still online');
    const hostRules = world.run('host', 'nft', 'list', 'table', 'inet', 'emperor').stdout;
    t.match(hostRules, `ip saddr != ${mine}`, 'the host\'s rules are as the emperor wrote them');

    // Even root in alice's network namespace (a jail that somehow had CAP_NET_ADMIN) cannot pass as bob:
    // the host drops what leaves alice's link with any source but hers.
    const init = alice.jail?.init ?? 0;
    t.equal(inJailNet(init, 'ip', 'addr', 'add', `${theirs}/32`, 'dev', 'eth0').status, 0, 'root adds bob\'s address in alice\'s namespace');
    const spoof = (from: string) => inJailNet(init, process.execPath, '-e', `require('net').connect({ host: '${INTERNET}', port: ${WHOAMI}, localAddress: '${from}' }).on('data', (d) => { process.stdout.write(String(d)); process.exit(0); }).on('error', () => process.exit(1)); setTimeout(() => process.exit(2), 2000)`);
    const spoofed = spoof(theirs);
    t.not(spoofed.status, 0, 'a connection from bob\'s address never gets out');
    t.equal(spoof(mine).stdout, HOST_UPLINK, 'one from her own still does');
    inJailNet(init, 'ip', 'addr', 'del', `${theirs}/32`, 'dev', 'eth0');

    // The conntrack table is the host's: one jail holds at most net-connections entries of it.
    const opened = await d.probe('alice', `/many?host=${INTERNET}&port=${TCP_ECHO}&n=60&timeout=3000`);
    t.ok(typeof opened.connected === 'number' && opened.connected <= 20 && opened.connected >= 10, `at most net-connections (20) open at once: ${String(opened.connected)}`);
    const tracked = world.run('host', 'cat', '/proc/net/nf_conntrack').stdout.split('\n').filter((l) => l.includes(`src=${mine} `) && l.includes('ESTABLISHED'));
    t.ok(tracked.length <= 20, `the host tracks at most 20 established connections of alice's: ${tracked.length}`);
    t.same(await d.probe('bob', `/tcp?host=${INTERNET}&port=${TCP_ECHO}`), { ok: true, received: 16 }, 'bob is not limited by alice\'s connections');
    await d.probe('alice', '/release');

    // net-rate, set live: what goes over it is dropped by the kernel (the rule's own counter says how much).
    const limited = () => Number(/limit rate over \d+ bytes\/second burst \d+ bytes counter packets (\d+)/.exec(world.run('host', 'nft', 'list', 'chain', 'inet', 'emperor', `v${(Number(mine.split('.')[3]) - 2) / 4}_out`).stdout)?.[1] ?? -1);
    t.equal(limited(), -1, 'no rate rule without net-rate');
    rewrite(join(d.dir, 'alice.ini'), vassal('demo-alice', d.probePath, 'net-connections = 20\nnet-rate = 1mbit\n'));
    await d.until('the rate rule in place', () => (limited() >= 0 ? true : undefined));
    const slow = await d.probe('alice', `/tcp?host=${INTERNET}&port=${TCP_ECHO}&bytes=400000&timeout=60000`);
    t.same(slow, { ok: true, received: 400000 }, 'TCP still delivers everything under the limit');
    t.ok(limited() > 0, `the kernel dropped what went over 1mbit: ${limited()} packets`);
    t.equal((await d.view('alice'))?.pid, alice.pid, 'set live: the app was not restarted');
    await d.until('alice connects again once hers are closed', async () => (await d.probe('alice', `/tcp?host=${INTERNET}&port=${TCP_ECHO}&timeout=1000`)).ok === true || undefined);
  });

  sub('errors name the vassal and the fix, and touch no other vassal; everything of the network goes with its jail', async (t) => {
    // A /28 holds four jails.
    const files = (probe: string) => Object.fromEntries([['plain.ini', plain('demo-bob', probe)], ...['n1', 'n2', 'n3', 'n4', 'n5'].map((n) => [`${n}.ini`, vassal('demo-alice', probe)])]);
    const d = await daemon(t, world, files, `net-dns = ${INTERNET}\nnet-pool = 10.77.0.0/28`, { cgroupParent: `emperor-test-${process.pid}-net5` });
    await d.running('plain');
    const views = await d.until('four nat jails running and one failed', async () => {
      const vs = await Promise.all(['n1', 'n2', 'n3', 'n4', 'n5'].map((n) => d.view(n)));
      const up = vs.filter((v) => v?.state === 'running');
      const failed = vs.filter((v) => v?.lastError);
      return up.length === 4 && failed.length === 1 ? vs : undefined;
    });
    const failed = views.find((v) => v?.lastError);
    t.match(failed?.lastError, /^n\d: network: expected a free address in net-pool 10\.77\.0\.0\/28 \(.*emperor\.ini:\d+\), got all 4 in use \(give net-pool a larger network/, 'pool exhaustion: the vassal, the pool, where it was set, what to do');
    t.notMatch(failed?.lastError ?? '', /\n\s+at /, 'no stack trace');
    t.match(await d.probe('plain', '/tcp?host=127.0.0.1&port=7200'), { ok: true }, 'the net = none vassal runs on');

    // A removed file: its link, chains, map entries and counters go with its jail; the others stay. (The
    // vassal that found the pool full goes first, or it would take the freed slot at its next try.)
    spawnSync('rm', [join(d.dir, `${failed?.name ?? ''}.ini`)]);
    await d.until('the failed vassal removed', async () => ((await d.view(failed?.name ?? '')) === undefined ? true : undefined));
    const gone = views.find((v) => v?.state === 'running');
    const slot = (Number(gone?.net?.address.split('.')[3]) - 2) / 4;
    const links = () => world.run('host', 'ip', '-o', 'link', 'show').stdout;
    const table = () => world.run('host', 'nft', 'list', 'table', 'inet', 'emperor').stdout;
    t.match(links(), new RegExp(`: emv${slot}@`), 'its link exists while it runs');
    spawnSync('rm', [join(d.dir, `${gone?.name ?? ''}.ini`)]);
    await d.until('its stopped event', () => new RegExp(`"vassal":"${gone?.name ?? ''}","event":"stopped","state":"stopped","net":\\{"txBytes":\\d+`).test(d.output()) || undefined);
    t.pass('its stopped event carries its final traffic');
    await d.until('its network removed', () => (!new RegExp(`: emv${slot}@`).test(links()) && !table().includes(`v${slot}_out`) ? true : undefined));
    t.notMatch(table(), new RegExp(`counter v${slot}_`), 'its counters went too');
    t.match(table(), /chain v\d+_out/, 'the other jails\' chains stay');

    // SIGKILL of the emperor and of a jail: the next emperor removes what nobody holds any more.
    const victim = views.find((v) => v?.state === 'running' && v.name !== gone?.name);
    const vslot = (Number(victim?.net?.address.split('.')[3]) - 2) / 4;
    d.proc.kill('SIGKILL');
    await d.exited;
    spawnSync('kill', ['-KILL', String(victim?.jail?.init ?? 0)]);
    spawnSync('rm', [join(d.dir, `${victim?.name ?? ''}.ini`)]);
    await d.until('the killed jail gone', () => (!new RegExp(`: emv${vslot}@`).test(links()) ? true : undefined));
    t.match(table(), `v${vslot}_out`, 'its chains outlived it');
    const d2 = await daemon(t, world, () => ({}), `net-dns = ${INTERNET}\nnet-pool = 10.77.0.0/28`, { root: d.root, cgroupParent: `emperor-test-${process.pid}-net5` });
    await d2.running('plain');
    // Once the first scan is over, every chain and counter is of a running jail (a new one may have
    // taken the dead one's slot: then they are its own, with its counters).
    const held = async () => {
      const vs = await Promise.all(readdirSync(d2.dir).map((f) => d2.view(f.replace(/\.ini$/, ''))));
      return new Set(vs.filter((v) => v?.net).map((v) => (Number(v?.net?.address.split('.')[3]) - 2) / 4));
    };
    const ours = () => new Set([...table().matchAll(/(?:chain|counter) v(\d+)_/g)].map((m) => Number(m[1])));
    await d2.until('the leftovers swept', async () => {
      const h = await held();
      return [...ours()].every((s) => h.has(s)) && h.size === readdirSync(d2.dir).filter((f) => f !== 'plain.ini').length ? true : undefined;
    }).catch(async (e: Error) => {
      throw new Error(`${e.message}\ntable:\n${table()}\nheld: ${[...(await held())].join(',')}`);
    });
    t.pass('no chain or counter of a slot no running jail holds');
    for (const s of await held()) {
      const c = new RegExp(`counter v${s}_tx \\{\\s+packets (\\d+)`).exec(table());
      t.ok(c !== null, `slot ${s}: counters`);
    }
    // SIGTERM: every jail stops, and the table and every link of the emperor's go.
    d2.proc.kill('SIGTERM');
    t.equal(await d2.exited, 0);
    t.notMatch(links(), /: emv\d+@/, 'no jail link left in the host namespace');
    t.equal(world.run('host', 'nft', 'list', 'tables').stdout.includes('emperor'), false, 'no table left');
  });

  sub('a missing uplink is an error naming it; a net = none vassal is not affected', async (t) => {
    const d = await daemon(t, world, (probe) => ({ 'nat.ini': vassal('demo-alice', probe), 'plain.ini': plain('demo-bob', probe) }), `net-dns = ${INTERNET}\nnet-uplink = wan9`, { cgroupParent: `emperor-test-${process.pid}-net6` });
    await d.running('plain');
    const v = await d.until('nat failed', async () => {
      const x = await d.view('nat');
      return x?.lastError ? x : undefined;
    });
    t.match(v.lastError, /^nat: network: expected the uplink wan9 \(net-uplink, .*emperor\.ini:3\), got no such interface/);
  });

  sub('a host without nftables: the nat vassal says what to install; the others run', async (t) => {
    // /usr/sbin (where nft is) off the PATH; ip, nsenter and node are in /usr/bin.
    const d = await daemon(t, world, (probe) => ({ 'nat.ini': vassal('demo-alice', probe), 'plain.ini': plain('demo-bob', probe) }), `net-dns = ${INTERNET}`, { cgroupParent: `emperor-test-${process.pid}-net7`, env: { PATH: '/usr/local/bin:/usr/bin:/bin' } });
    await d.running('plain');
    const v = await d.until('nat failed', async () => {
      const x = await d.view('nat');
      return x?.lastError ? x : undefined;
    });
    t.match(v.lastError, /^nat: network: expected the nft command, got none on the PATH \(install nftables \(apt-get install nftables\)/);
    t.equal(world.run('host', 'nft', 'list', 'tables').stdout.includes('emperor'), false, 'nothing half made');
  });
}

