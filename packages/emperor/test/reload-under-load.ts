import t from 'tap';
import { get, requireJails, startEmperor } from './fixtures/emperor.js';

// An app that finishes what it accepted when asked to stop (SIGTERM: stop accepting, end in-flight, exit):
// the contract for zero-downtime reloads, as with uWSGI's graceful reload.
const APP = [
  'command = node -e "const s = require(\'http\').createServer((q, r) => setTimeout(() => r.end(process.env.V + \'\\\\n\'), 2)).listen({ fd: 3 }); process.on(\'SIGTERM\', () => s.close(() => process.exit(0)))"',
];

if (requireJails(t)) {
  t.test('under a constant load through the socket, 20 reloads in a row fail zero requests', async (t) => {
    const e = await startEmperor(t);
    // Two CPUs (the default is one): 21 node start-ups in a row within one CPU's quota would measure the
    // quota, not the reloads.
    e.write('busy.ini', '[uwsgi]', 'uid = demo-alice', 'socket = app.sock', 'cpu-limit = 200%', ...APP, 'env = V=0');
    await e.waitFor((x) => x.vassal === 'busy' && x.event === 'spawned');
    const sock = e.socketOf('busy');
    let ok = 0;
    const failures: string[] = [];
    const versions = new Set<string>();
    let running = true;
    // Four clients, each sending requests one after another until the reloads are done (bounded below).
    const client = async () => {
      const deadline = Date.now() + 120_000;
      while (running && Date.now() < deadline) {
        try {
          versions.add((await get(sock)).trim());
          ok++;
        } catch (err) {
          failures.push(String(err));
        }
      }
    };
    const clients = [client(), client(), client(), client()];
    t.teardown(() => {
      running = false;
    });
    const v = e.emperor.vassals.get('busy');
    const pids = new Set<number | undefined>([v?.pid]);
    for (let i = 1; i <= 20; i++) {
      const n = e.events.length;
      e.write('busy.ini', '[uwsgi]', 'uid = demo-alice', 'socket = app.sock', 'cpu-limit = 200%', ...APP, `env = V=${i}`);
      await e.waitFor((x) => x.vassal === 'busy' && x.event === 'reloaded', n).catch((err: Error) => { t.comment(`reload ${i}: state ${v?.state} pid ${v?.pid} ok ${ok} fails ${failures.length}`); throw err; });
      pids.add(v?.pid);
      // At least 5 requests between two reloads, whatever the machine's speed: the load provably
      // interleaves with every reload, and the count below is not a throughput figure.
      const target = ok + 5;
      for (let w = 0; w < 2000 && ok < target; w++) await new Promise((r) => setTimeout(r, 5));
    }
    // Let the last app serve a moment, then stop the load.
    await new Promise((r) => setTimeout(r, 200));
    running = false;
    await Promise.all(clients);
    t.equal(failures.length, 0, `failed requests: ${failures.slice(0, 3).join('; ')}`);
    t.ok(ok >= 100, `requests served during the reloads: ${ok}`);
    t.equal(pids.size, 21, '21 different app processes served in turn');
    t.ok(versions.has('20'), 'the last version answers');
  });
}
