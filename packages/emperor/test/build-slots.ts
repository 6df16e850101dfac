import t from 'tap';
import { request } from 'node:http';
import { requireJails, startEmperor } from './fixtures/emperor.js';

const metrics = (socketPath: string): Promise<string> =>
  new Promise((resolve, reject) => {
    request({ socketPath, path: '/metrics' }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve(body));
    }).on('error', reject).end();
  });

if (requireJails(t)) {
  t.test('a burst of vassal files is built at most jail-builds at once; the rest wait their turn, and every one comes up', async (t) => {
    const e = await startEmperor(t, { jailBuilds: 2 });
    const names = Array.from({ length: 10 }, (_, i) => `burst${i}`);
    let maxRunning = 0;
    let maxWaiting = 0;
    let sampling = true;
    const sample = () => {
      const b = e.emperor.builds();
      maxRunning = Math.max(maxRunning, b.running);
      maxWaiting = Math.max(maxWaiting, b.waiting);
      if (sampling) setImmediate(sample);
    };
    sample();
    for (const n of names) e.write(`${n}.ini`, '[uwsgi]', 'uid = demo-alice', 'command = sleep 600');
    for (const n of names) await e.waitFor((x) => x.vassal === n && x.event === 'spawned');
    sampling = false;
    t.equal(e.emperor.builds().slots, 2);
    t.ok(maxRunning <= 2, `at most 2 builds at once (saw ${maxRunning})`);
    t.ok(maxRunning >= 1 && maxWaiting >= 1, `the others waited (up to ${maxWaiting} at once)`);
    t.same(names.filter((n) => e.emperor.vassals.get(n)?.state !== 'running'), [], 'all ten run');
    const m = await metrics(`${e.root}/run/control.sock`);
    t.match(m, /^emperor_jail_builds_running 0$/m, 'metrics: none building now');
    t.match(m, /^emperor_jail_builds_waiting 0$/m, 'none waiting');
  });
}
