import { connect } from 'node:net';
import t from 'tap';
import { get, nodeApp, requireJails, startEmperor } from './fixtures/emperor.js';
import { asCustomer, fds, PY_FRAME, rss, sampleWhile } from './fixtures/hostile.js';

// Each attack is made by the customer, from inside their own jail, as their uid, on the sockets they can
// reach (/run/pty.sock, /run/control.sock). What must hold: the emperor's memory and fds stay bounded
// (docs/security.md states the bounds), a neighbour keeps answering, the attacker's stream is closed with
// a log line, and everything returns near the baseline afterwards.

const MiB = 1024 * 1024;
/** The emperor's RSS may grow this much during an attack: sessions buffer 1 MiB at most each. */
const RSS_BOUND = 96 * MiB;

/** A vassal to attack from and a neighbour that must keep answering. */
const setup = async (t: Parameters<typeof startEmperor>[0], attacker: string[] = []) => {
  const e = await startEmperor(t, { timeouts: { stallMs: 2000, frameTimeoutMs: 1000 } });
  e.write('mallory.ini', '[uwsgi]', 'uid = demo-alice', 'command = sleep 600', ...attacker);
  e.write('neighbour.ini', '[uwsgi]', 'uid = demo-bob', 'socket = app.sock', nodeApp('neighbour'));
  await e.waitFor((x) => x.vassal === 'mallory' && x.event === 'spawned');
  await e.waitFor((x) => x.vassal === 'neighbour' && x.event === 'spawned');
  const jail = () => e.emperor.vassals.get('mallory')?.jail;
  /** The neighbour answers now. */
  const neighbourAnswers = async () => (await get(e.socketOf('neighbour'))).startsWith('neighbour:');
  return { e, jail, neighbourAnswers };
};

/** Polls the neighbour while `work` runs: every answer must come. */
const neighbourThroughout = async <T>(answers: () => Promise<boolean>, work: Promise<T>): Promise<{ ok: number; failed: number; result: T }> => {
  let ok = 0;
  let failed = 0;
  let done = false;
  const poll = (async () => {
    while (!done) {
      if (await answers().catch(() => false)) ok++;
      else failed++;
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  const result = await work;
  done = true;
  await poll;
  return { ok, failed, result };
};

if (requireJails(t)) {
  t.test('a pty client that asks for 1.5 GB of output and never reads costs the emperor no memory, and is closed with a log line', async (t) => {
    const { e, jail, neighbourAnswers } = await setup(t);
    const before = rss();
    const attack = asCustomer(jail(), `${PY_FRAME}
s = pty({'command': 'head -c 1500M /dev/zero'})
time.sleep(8)
s.settimeout(2)
got = b''
try:
    while True:
        d = s.recv(1 << 20)
        if not d: break
        got += d
except Exception as ex:
    print('recv', ex)
print('closed-after', len(got))
`);
    const { ok, failed, result } = await neighbourThroughout(neighbourAnswers, sampleWhile(attack));
    t.ok(result.maxRss - before < RSS_BOUND, `the emperor's RSS grew ${((result.maxRss - before) / MiB).toFixed(1)} MiB (bound ${RSS_BOUND / MiB})`);
    t.equal(result.result.code, 0, result.result.stderr);
    t.match(result.result.stdout, /closed-after \d+/, 'the router closed the session');
    t.ok(ok > 0 && failed === 0, `the neighbour answered throughout (${ok} ok, ${failed} failed)`);
    t.ok(e.logs.some((l) => l.vassal === 'mallory' && l.event === 'bad-client' && /read no output for 2 s/.test(String(l.error))), 'the stall was logged');
    t.ok(rss() - before < RSS_BOUND, 'and after');
  });

  // In a pty's canonical mode the kernel drops what overflows a line; in raw mode (below) it does not, and
  // only the router's pause keeps the input out of the emperor.
  t.test('stdin flooded into a command that never reads, or a raw-mode shell busy with sleep: the client is paused, not buffered', async (t) => {
    const { jail, neighbourAnswers } = await setup(t);
    const before = rss();
    const flood = (hello: string, first: string) => asCustomer(jail(), `${PY_FRAME}
s = pty(${hello})
def drain():
    try:
        while s.recv(65536): pass
    except Exception:
        pass
threading.Thread(target=drain, daemon=True).start()
${first}
s.settimeout(3)
chunk = frame(0, b'x' * 65535)
sent = 0
try:
    while sent < 300 * 1024 * 1024:
        s.sendall(chunk)
        sent += len(chunk)
except socket.timeout:
    pass
print('sent', sent)
`);
    const cmd = await neighbourThroughout(neighbourAnswers, sampleWhile(flood("{'command': 'sleep 60'}", '')));
    t.equal(cmd.result.result.code, 0, cmd.result.result.stderr);
    const sentCmd = Number(/sent (\d+)/.exec(cmd.result.result.stdout)?.[1]);
    t.ok(sentCmd < 32 * MiB, `the router stopped reading the client after ${(sentCmd / MiB).toFixed(1)} MiB (command mode)`);
    const shell = await neighbourThroughout(neighbourAnswers, sampleWhile(flood('None', "s.sendall(frame(0, b'stty raw -echo; sleep 60\\r')); time.sleep(1)")));
    t.equal(shell.result.result.code, 0, shell.result.result.stderr);
    const sentShell = Number(/sent (\d+)/.exec(shell.result.result.stdout)?.[1]);
    t.ok(sentShell < 32 * MiB, `the router stopped reading the client after ${(sentShell / MiB).toFixed(1)} MiB (pty mode)`);
    const grew = Math.max(cmd.result.maxRss, shell.result.maxRss) - before;
    t.ok(grew < RSS_BOUND, `the emperor's RSS grew ${(grew / MiB).toFixed(1)} MiB (bound ${RSS_BOUND / MiB})`);
    t.ok(cmd.failed + shell.failed === 0, 'the neighbour answered throughout');
  });

  t.test('half a frame, then silence: the session is closed after the frame timeout, with a log line', async (t) => {
    const { e, jail } = await setup(t);
    const r = await asCustomer(jail(), `${PY_FRAME}
s = pty()
s.sendall(b'\\x00\\x10')
print(read_all(s).decode(errors='replace'))
`);
    t.match(r.stdout, /a frame stayed incomplete for 1 s \(2 bytes\); closing/);
    t.ok(e.logs.some((l) => l.event === 'bad-client' && /incomplete/.test(String(l.error))), 'logged');
  });

  t.test('logs?follow clients that never read, with an app logging fast: one fd each while they last, closed after the stall, none left', async (t) => {
    const { e, jail, neighbourAnswers } = await setup(t);
    // A second chatty vassal of the same customer, to follow: ~1 MB/s of log.
    e.write('chatty.ini', '[uwsgi]', 'uid = demo-alice', 'command = while :; do head -c 100000 /dev/urandom | base64; sleep 0.1; done');
    await e.waitFor((x) => x.vassal === 'chatty' && x.event === 'spawned');
    const chatty = () => e.emperor.vassals.get('chatty')?.jail;
    await new Promise((r) => setTimeout(r, 500));
    const base = fds();
    const attack = asCustomer(chatty(), `${PY_FRAME}
conns = [http('/vassals/chatty/logs?follow=1', read=False) for _ in range(3)]
time.sleep(6)
print('alive', sum(1 for c in conns if c.fileno() >= 0))
`);
    const { failed, result } = await neighbourThroughout(neighbourAnswers, sampleWhile(attack));
    t.equal(result.result.code, 0, result.result.stderr);
    t.ok(result.maxFds - base <= 12, `emperor fds ${base} -> at most ${result.maxFds} (3 sockets, 3 log files, watchers)`);
    t.equal(failed, 0, 'the neighbour answered throughout');
    t.equal(e.logs.filter((l) => l.vassal === 'chatty' && /logs\?follow client stopped reading/.test(l.msg)).length, 3, 'each stalled follower was closed with a log line');
    await new Promise((r) => setTimeout(r, 500));
    t.ok(fds() - base <= 2, `back near the baseline after (${base} -> ${fds()})`);
    void jail;
  });

  t.test('many idle connections to the customer control socket: capped per socket and per customer; the others are closed at once', async (t) => {
    const { e, jail, neighbourAnswers } = await setup(t);
    const base = fds();
    const attack = asCustomer(jail(), `${PY_FRAME}
conns = []
for _ in range(200):
    c = socket.socket(socket.AF_UNIX)
    c.connect('/run/control.sock')
    conns.append(c)
time.sleep(1)
open_ = 0
for c in conns:
    c.setblocking(False)
    try:
        d = c.recv(1)
        if d == b'': continue
    except BlockingIOError:
        open_ += 1
        continue
    except ConnectionResetError:
        continue
print('open', open_)
time.sleep(2)
`);
    const { failed, result } = await neighbourThroughout(neighbourAnswers, sampleWhile(attack));
    const open = Number(/open (\d+)/.exec(result.result.stdout)?.[1]);
    t.ok(open <= 8, `at most 8 connections stayed open (${open})`);
    t.ok(result.maxFds - base <= 16 + 4, `emperor fds ${base} -> at most ${result.maxFds}`);
    t.equal(failed, 0, 'the neighbour answered throughout');
    const refusals = e.logs.filter((l) => /connection refused: too many connections/.test(l.msg));
    t.ok(refusals.length >= 1 && refusals.length <= 2, `192 refusals made ${refusals.length} log line(s), not one each`);
    await new Promise((r) => setTimeout(r, 300));
    t.ok(fds() - base <= 2, 'back near the baseline after');
  });

  t.test('a vassal\'s pty sessions are capped: one more connection is told so and closed', async (t) => {
    const { e, jail } = await setup(t, ['pty-sessions = 2']);
    const r = await asCustomer(jail(), `${PY_FRAME}
a = pty({'command': 'sleep 5'})
b = pty({'command': 'sleep 5'})
time.sleep(0.5)
# No hello: the router refuses at connect time, and a send racing its close would die of EPIPE first.
c = pty()
print(read_all(c, 5).decode(errors='replace'))
`);
    t.match(r.stdout, /emperor pty: too many sessions \(2 allowed for this vassal\); closing/);
    t.ok(e.logs.some((l) => l.event === 'refused'), 'logged');
  });

  t.test('reload requests flooded from inside the jail: at most one pending, a burst of three, then 429', async (t) => {
    const { e, jail } = await setup(t);
    const n = e.events.length;
    const request = (times: number) => asCustomer(jail(), `${PY_FRAME}
codes = []
for _ in range(${times}):
    resp = http('/vassals/mallory/reload', 'POST')
    codes.append(resp.split(' ')[1] + ('c' if 'coalesced' in resp else ''))
print(' '.join(codes))
`);
    // A flood, back to back: whatever arrives while one reload is pending joins it (202, coalesced).
    const r = await request(20);
    const flood = r.stdout.trim().split(' ');
    t.equal(flood.length, 20, r.stderr);
    t.ok(flood.filter((c) => c === '202').length <= 3, `at most 3 accepted: ${r.stdout}`);
    t.ok(flood.every((c) => ['202', '202c', '429'].includes(c)), 'each accepted, coalesced or refused');
    // Then one at a time, each once the last has run (nothing pending to join): the burst is spent by the
    // fourth accepted request at the latest, and the next one is refused.
    const vassal = e.emperor.vassals.get('mallory');
    const seq: string[] = [];
    for (let i = 0; i < 4 && !seq.includes('429'); i++) {
      await vassal?.settled();
      seq.push((await request(1)).stdout.trim());
    }
    t.ok(seq.includes('429'), `then rate limited (one at a time: ${seq.join(' ')})`);
    t.ok([...flood, ...seq.slice(0, seq.indexOf('429'))].filter((c) => c === '202').length <= 3, 'three accepted in all before the first 429');
    await vassal?.settled();
    const reloads = e.events.slice(n).filter((x) => x.vassal === 'mallory' && x.event === 'reloaded').length;
    t.ok(reloads >= 1 && reloads <= 3, `the app was reloaded ${reloads} times for ${20 + seq.length} requests`);
  });
}

t.test('the root /events stream: a client that never reads gets a bounded buffer, then is closed with a log line', async (t) => {
  if (!requireJails(t)) return;
  const e = await startEmperor(t);
  const listeners = e.emperor.bus.listenerCount('event');
  const sock = connect(`${e.root}/run/control.sock`);
  await new Promise((r) => sock.once('connect', r));
  sock.write('GET /events HTTP/1.1\r\nHost: x\r\n\r\n');
  await new Promise((r) => setTimeout(r, 200));
  sock.pause(); // never reads again
  const before = rss();
  const big = 'x'.repeat(1024);
  let closed = false;
  sock.on('close', () => (closed = true));
  for (let i = 0; i < 20_000 && !closed; i++) {
    e.emperor.bus.publish('flood', 'error', { error: big });
    if (i % 500 === 0) await new Promise((r) => setImmediate(r));
  }
  await new Promise((r) => setTimeout(r, 200));
  t.ok(rss() - before < RSS_BOUND, `RSS grew ${((rss() - before) / MiB).toFixed(1)} MiB for 20 MB of events`);
  t.ok(e.logs.some((l) => /\/events client is not reading/.test(l.msg)), 'logged');
  t.equal(e.emperor.bus.listenerCount('event'), listeners, 'its listener is gone');
  sock.destroy();
});
