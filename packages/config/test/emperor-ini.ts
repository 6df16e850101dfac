import t from 'tap';
import { ConfigError, formatProblem, parseEmperorIni } from '../src/index.js';
import { bad, good, ini, lines } from './fixtures/check.js';

const problemsOf = (text: string): string[] => {
  try {
    parseEmperorIni(text, 'emperor.ini');
  } catch (e) {
    if (e instanceof ConfigError) return e.problems.map(formatProblem);
    throw e;
  }
  return [];
};

t.test('emperor.ini sets defaults and ceilings; a vassal gets the default and may ask for less, never more', async (t) => {
  const { settings, limits } = parseEmperorIni(['[emperor]', 'tyrant = yes', 'run-dir = /run/emp', 'memory-limit = 256M', 'max-memory-limit = 1G', 'pids-limit = 100', 'max-pids-limit = 200',
    'rlimit = nofile=512:2048', 'max-rlimit = nofile=8192', 'rlimit = core=0', 'max-pty-sessions = 2', 'pty-sessions = 1', 'tyrant-vassals-per-uid = 3'].join('\n'), '/etc/emperor/emperor.ini');
  t.same(settings, { tyrant: true, 'run-dir': '/run/emp' });
  t.same([limits.memory.default, limits.memory.max, limits.memory.maxFrom], [256 * 1024 ** 2, 1024 ** 3, '/etc/emperor/emperor.ini:5']);
  t.same(limits.vassalsPerUid, { value: 3, from: '/etc/emperor/emperor.ini:13' });
  const spec = await good('lim.ini', ini('command = x'), { limits });
  t.same([spec.memoryLimitBytes, spec.pidsLimit, spec.rlimits.nofile, spec.ptySessions], [256 * 1024 ** 2, 100, [512, 2048], 1], 'the operator\'s defaults');
  const less = await good('lim.ini', ini('command = x', 'memory-limit = 64M', 'rlimit = nofile=100:200'), { limits });
  t.same([less.memoryLimitBytes, less.rlimits.nofile], [64 * 1024 ** 2, [100, 200]], 'less than a ceiling is fine');
  t.same(lines(await bad('lim.ini', ini('command = x', 'memory-limit = 2G', 'pids-limit = 201', 'rlimit = nofile=9000', 'pty-sessions = 3'), { limits })), [
    'lim.ini:4: memory-limit: expected at most 1G (max-memory-limit, set in /etc/emperor/emperor.ini:5), got 2G (ask for 1G or less, or have the operator raise max-memory-limit in emperor.ini)',
    'lim.ini:5: pids-limit: expected at most 200 (max-pids-limit, set in /etc/emperor/emperor.ini:7), got 201 (ask for 200 or less, or have the operator raise max-pids-limit in emperor.ini)',
    'lim.ini:6: rlimit: expected nofile at most 8192 (max-rlimit nofile, set in /etc/emperor/emperor.ini:9), got 9000 (ask for nofile=8192 or less, or have the operator raise max-rlimit = nofile=... in emperor.ini)',
    'lim.ini:7: pty-sessions: expected at most 2 (max-pty-sessions, set in /etc/emperor/emperor.ini:11), got 3 (ask for 2 or less, or have the operator raise max-pty-sessions in emperor.ini)',
  ]);
});

t.test('a bad emperor.ini names the line, the key, what was expected and what was found, all at once', async (t) => {
  t.same(problemsOf(['[emperor]', 'memory-limit = lots', 'max-cpu-limit = 0', 'rlimit = files=3', 'colour = blue', 'tyrant = maybe', 'pids-limit = 5', 'pids-limit = 6'].join('\n')), [
    'emperor.ini:2: memory-limit: expected a size like 64M or 1G, from 4M to 1T, got "lots"',
    'emperor.ini:3: max-cpu-limit: expected a percent of one CPU from 1 to 100000, got "0"',
    `emperor.ini:4: rlimit: expected a resource limit like nofile=1024:4096 or core=0 (NAME=SOFT[:HARD], NAME one of nofile, nproc, core, memlock, stack, fsize, as, cpu; sizes like 8M for core, memlock, stack, fsize and as), got "files=3"`,
    `emperor.ini:5: colour: expected one of dir, run-dir, log-dir, tyrant, cgroup-parent, log-format, jail-builds, tyrant-vassals-per-uid, tyrant-min-uid, tyrant-socket-owners, rlimit, max-rlimit, net-pool, net-uplink, net-dns, net-allow, subscription-servers, memory-limit, max-memory-limit, cpu-limit, max-cpu-limit, pids-limit, max-pids-limit, tmp-size, max-tmp-size, run-dir-size, max-run-dir-size, pty-sessions, max-pty-sessions, stop-timeout, max-stop-timeout, net-rate, max-net-rate, net-connections, max-net-connections, got "colour"`,
    'emperor.ini:6: tyrant: expected on or off (also true/false, yes/no, 1/0), got "maybe"',
    'emperor.ini:8: pids-limit: expected it once, got it a second time (keep one)',
  ]);
});

t.test('a default above its own ceiling is refused, since every vassal that sets nothing would be invalid', async (t) => {
  t.same(problemsOf(['[emperor]', 'memory-limit = 2G', 'max-memory-limit = 1G', 'max-rlimit = nofile=1000'].join('\n')), [
    'emperor.ini: memory-limit: expected memory-limit (2G, emperor.ini:2) at most max-memory-limit (1G, emperor.ini:3), got more (lower memory-limit or raise max-memory-limit)',
    'emperor.ini: rlimit: expected the hard nofile limit (4096, the built-in default) at most max-rlimit nofile (1000, emperor.ini:4), got more (lower rlimit = nofile=... or raise max-rlimit = nofile=...)',
  ]);
  t.same(problemsOf('memory-limit = 1G'), ['emperor.ini:1: memory-limit: expected the key inside an [emperor] section, got it outside (put [emperor] on the first line)']);
});

t.test('tyrant policy: tyrant-min-uid and tyrant-socket-owners, with where they are set', async (t) => {
  const { limits } = parseEmperorIni('[emperor]\ntyrant-min-uid = 5000\ntyrant-socket-owners = www-data, nobody\n', 'e.ini');
  t.same(limits.tyrantMinUid, { value: 5000, from: 'e.ini:2' });
  t.same(limits.socketOwners, { names: ['www-data', 'nobody'], from: 'e.ini:3' });
  t.same(problemsOf('[emperor]\ntyrant-min-uid = 0\n'), ['emperor.ini:2: tyrant-min-uid: expected a uid from 1 to 4294967294, got "0"'], 'uid 0 can never be a customer');
  t.same(problemsOf('[emperor]\ntyrant-socket-owners = www-data, ngnix\n'), ['emperor.ini:2: tyrant-socket-owners: expected an existing user name or a uid other than 0, got unknown user "ngnix" (create it (useradd ngnix) or use a uid)'], 'a misspelt user is named, not dropped');
});

t.test('log-format: auto, pretty, journal or json; anything else names the choices', async (t) => {
  t.same(parseEmperorIni('[emperor]\nlog-format = Journal\n', 'e.ini').settings, { 'log-format': 'journal' });
  t.same(problemsOf('[emperor]\nlog-format = syslog\n'), ['emperor.ini:2: log-format: expected one of auto, pretty, journal, json, got "syslog" (auto: pretty on a terminal, journal lines under systemd, JSON otherwise)']);
});

t.test('jail-builds: how many jails are built at once, from 1 to 1024', async (t) => {
  t.same(parseEmperorIni('[emperor]\njail-builds = 8\n', 'e.ini').settings, { 'jail-builds': 8 });
  t.same(problemsOf('[emperor]\njail-builds = 0\n'), ['emperor.ini:2: jail-builds: expected a number of jails built at once from 1 to 1024, got "0"']);
});

t.test('emperor.ini: the network of net = nat jails, its rate and connection ceilings', async (t) => {
  const { network, limits } = parseEmperorIni(['[emperor]', 'net-pool = 10.50.0.0/20', 'net-uplink = eth0, bond0', 'net-dns = 192.0.2.53,192.0.2.54', 'net-allow = tcp 10.0.0.5:5432', 'net-allow = udp 10.0.0.53:53', 'max-net-rate = 100mbit', 'net-rate = 20mbit', 'net-connections = 256'].join('\n'), '/etc/emperor/emperor.ini');
  t.same([network.pool, network.uplinks, network.dns.length, network.allow.map((r) => r.text)], [{ addr: 0x0a320000, bits: 20 }, ['eth0', 'bond0'], 2, ['tcp 10.0.0.5:5432', 'udp 10.0.0.53:53']]);
  t.equal(network.from.pool, '/etc/emperor/emperor.ini:2');
  const spec = await good('n.ini', ini('command = x', 'net = nat'), { limits });
  t.same([spec.netRate, spec.netConnections], [20e6, 256], 'the operator\'s defaults');
  t.same(lines(await bad('n.ini', ini('command = x', 'net = nat', 'net-rate = 1gbit'), { limits })), ['n.ini:5: net-rate: expected at most 100mbit (max-net-rate, set in /etc/emperor/emperor.ini:7), got 1gbit (ask for 100mbit or less, or have the operator raise max-net-rate in emperor.ini)']);
  t.same(problemsOf(['[emperor]', 'net-pool = 10.50.0.1/16', 'net-pool = 10.0.0.0/30', 'net-dns = resolver', 'net-uplink = eth 0', 'net-allow = tcp 10.0.0.5:99999', 'net-rate = 10M'].join('\n')), [
    'emperor.ini:2: net-pool: expected an IPv4 network like 10.208.0.0/16, from /8 to /28 (one /30 per jail), got "10.50.0.1/16" (the network is 10.50.0.0/16)',
    'emperor.ini:3: net-pool: expected it once, got it a second time (keep one)',
    'emperor.ini:4: net-dns: expected an IPv4 address like 192.0.2.53, got "resolver"',
    'emperor.ini:5: net-uplink: expected an interface name like eth0 (at most 15 characters, no "/" or space), got "eth 0"',
    'emperor.ini:6: net-allow: expected PROTO ADDRESS[/BITS][:PORT[-PORT]] with PROTO one of tcp, udp, icmp, any, like "tcp 10.0.0.5:5432", got "tcp 10.0.0.5:99999" (ports are 1 to 65535, low-high)',
    'emperor.ini:7: net-rate: expected a rate like 500kbit, 20mbit or 1gbit (bits per second), from 64kbit to 100gbit, got "10M" (say the unit: 20mbit)',
  ]);
});

t.test('subscription-servers: the routers tyrant-mode vassals may announce themselves to', async (t) => {
  const { limits } = parseEmperorIni(['[emperor]', 'subscription-servers = 127.0.0.1:2626, /run/emperor/sub.sock'].join('\n'), '/etc/emperor/emperor.ini');
  t.same(limits.subscriptionServers, { list: ['127.0.0.1:2626', '/run/emperor/sub.sock'], from: '/etc/emperor/emperor.ini:2' });
  t.same(problemsOf(['[emperor]', 'subscription-servers = 127.0.0.1:2626 router.example'].join('\n')), [
    'emperor.ini:2: subscription-servers: expected a router address HOST:PORT or an absolute unix socket path, got "router.example"',
  ]);
});
