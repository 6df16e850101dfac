import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { ServiceManager, statusLine } from '../src/service-manager.js';
import { startDaemon } from './fixtures/daemon-bin.js';
import { get, requireJails } from './fixtures/emperor.js';
import { bound } from './fixtures/time.js';


/**
 * systemd's side of sd_notify(3), for real: a datagram socket that receives with SO_PASSCRED, so each
 * message comes with the pid the kernel says sent it (what NotifyAccess=main checks).
 */
const LISTENER = `
import json, socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
print(json.dumps({'listening': True}), flush=True)
while True:
    msg, anc, _, _ = s.recvmsg(65536, socket.CMSG_SPACE(12))
    pid = None
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack('iII', data[:12])[0]
    print(json.dumps({'pid': pid, 'msg': msg.decode()}), flush=True)
`;

interface Message {
  pid: number;
  msg: string;
}

/** A notify socket, the real `emperor` binary told about it, and the messages as they arrive. */
const underNotify = async (t: Test, files: Record<string, string>, env: Record<string, string> = {}) => {
  const sockDir = mkdtempSync(join(tmpdir(), 'emperor-test-notify-'));
  t.teardown(() => rmSync(sockDir, { recursive: true, force: true }));
  const socket = join(sockDir, 'notify.sock');
  const listener = spawn('python3', ['-c', LISTENER, socket], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => void listener.kill());
  const messages: Message[] = [];
  const waiters: Array<() => void> = [];
  await new Promise<void>((resolve) => {
    createInterface({ input: listener.stdout }).on('line', (line) => {
      const m = JSON.parse(line) as Message & { listening?: boolean };
      if (m.listening) return resolve();
      messages.push(m);
      for (const w of waiters.splice(0)) w();
    });
  });
  const { proc, exited, dir, runDir, output } = startDaemon(t, files, { env: { NOTIFY_SOCKET: socket, ...env } });
  /** The first message (from index `from`) that matches, within a bound. */
  const next = async (pred: (m: Message) => boolean, from = 0): Promise<Message & { index: number }> => {
    const deadline = Date.now() + bound(30_000);
    for (;;) {
      const index = messages.findIndex((m, i) => i >= from && pred(m));
      if (index >= 0) return { ...(messages[index] as Message), index };
      if (Date.now() > deadline) throw new Error(`no such notify message; got ${JSON.stringify(messages)}; daemon output:\n${output()}`);
      await new Promise<void>((r) => {
        waiters.push(r);
        setTimeout(r, 200);
      });
    }
  };
  return { proc, exited, messages, next, dir, sock: (name: string) => join(runDir, 'vassals', name, 'app.sock'), output };
};

const APP = 'command = node -e "require(\'http\').createServer((q, s) => s.end(\'up\\\\n\')).listen({ fd: 3 })"';

t.test('the status line counts vassals by state, in a fixed order', async (t) => {
  t.equal(statusLine({}), 'no vassals');
  t.equal(statusLine({ running: 1 }), '1 vassal: 1 running');
  t.equal(statusLine({ invalid: 1, cursed: 2, running: 10, stopped: 0 }), '13 vassals: 10 running, 2 cursed, 1 invalid');
});

t.test('an sd-notify addon that does not load (built for another Node.js) is a clear error at start, only under systemd', async (t) => {
  const broken = () => {
    throw new Error('The module \'/x/notify.node\' was compiled against a different Node.js version using NODE_MODULE_VERSION 115.\nThis version requires 137.');
  };
  t.throws(() => ServiceManager.fromEnvironment({ NOTIFY_SOCKET: '/run/systemd/notify' }, broken), {
    code: 'EMPEROR_ERR_SYSTEMD',
    message: 'NOTIFY_SOCKET is set (Type=notify): expected the sd-notify addon to load, got The module \'/x/notify.node\' was compiled against a different Node.js version using NODE_MODULE_VERSION 115.',
    hint: /npm rebuild sd-notify/,
  });
  t.equal(ServiceManager.fromEnvironment({}, broken), undefined, 'without NOTIFY_SOCKET it is never loaded');
});

if (requireJails(t)) {
  t.test('under Type=notify: READY=1 from the emperor\'s own pid once every vassal has started or failed, STATUS= counts, RELOADING=1 on SIGHUP, STOPPING=1, WATCHDOG=1', async (t) => {
    const n = await underNotify(t, {
      'one.ini': `[uwsgi]\nuid = demo-alice\nsocket = app.sock\n${APP}\n`,
      'two.ini': `[uwsgi]\nuid = demo-bob\nsocket = app.sock\n${APP}\n`,
      'bad.ini': '[uwsgi]\nuid = demo-alice\nmemory-limit = lots\ncommand = true\n',
    }, { WATCHDOG_USEC: '600000' });
    const ready = await n.next((m) => m.msg.includes('READY=1'));
    // Nothing is polled for: READY=1 means started, so both apps answer the moment it arrives.
    t.same(await Promise.all([get(n.sock('one')), get(n.sock('two'))]), ['up\n', 'up\n'], 'every good vassal answers as soon as READY=1 is sent');
    t.equal(ready.pid, n.proc.pid, 'sent by the process systemd started (MAINPID): NotifyAccess=main accepts it');
    t.match(ready.msg, /STATUS=3 vassals: 2 running, 1 invalid/, 'with the counts');
    const pings = await n.next((m) => m.msg === 'WATCHDOG=1', ready.index + 1);
    t.equal(pings.pid, n.proc.pid, 'WATCHDOG=1 every half WATCHDOG_USEC, from the emperor itself');
    n.proc.kill('SIGHUP');
    const reloading = await n.next((m) => m.msg.startsWith('RELOADING=1'), ready.index + 1);
    t.match(reloading.msg, /MONOTONIC_USEC=\d+/, 'RELOADING=1 carries the time systemd 253+ wants');
    const again = await n.next((m) => m.msg.includes('READY=1'), reloading.index + 1);
    t.match(again.msg, /STATUS=3 vassals: 2 running, 1 invalid/, 'READY=1 again once every vassal reloaded');
    n.proc.kill('SIGTERM');
    const stopping = await n.next((m) => m.msg.startsWith('STOPPING=1'), again.index + 1);
    t.match(stopping.msg, /STATUS=stopping 3 vassals/);
    t.equal(await n.exited, 0);
    t.notOk(n.messages.some((m) => m.pid !== n.proc.pid), 'no message from any other process');
  });

  t.test('a watchdog meant for another pid (WATCHDOG_PID) is not pinged; a status change is sent as STATUS=', async (t) => {
    const n = await underNotify(t, { 'one.ini': `[uwsgi]\nuid = demo-alice\nsocket = app.sock\n${APP}\n` }, { WATCHDOG_USEC: '200000', WATCHDOG_PID: '1' });
    const ready = await n.next((m) => m.msg.includes('READY=1'));
    t.match(ready.msg, /STATUS=1 vassal: 1 running/);
    writeFileSync(join(n.dir, 'two.ini'), `[uwsgi]\nuid = demo-bob\nsocket = app.sock\n${APP}\n`);
    const status = await n.next((m) => /^STATUS=2 vassals: 2 running$/.test(m.msg), ready.index + 1);
    t.ok(status, 'the new vassal shows in STATUS= once it runs');
    t.notOk(n.messages.some((m) => m.msg.includes('WATCHDOG=1')), 'no WATCHDOG=1: the watchdog is for pid 1');
  });
}
