import { rmSync } from 'node:fs';
import t from 'tap';
import { get, leftovers, prop, requireSystemdGuest, sh, UNIT, unitCgroup, VASSALS } from './fixtures/system.js';

/**
 * The guest's second boot (scripts/vm/run.sh boots it again on the same disk): systemd.ts left
 * emperor.service enabled and running when the guest powered off.
 */
if (requireSystemdGuest(t)) {
  t.test('the shutdown stopped the emperor gracefully: every vassal, then the emperor, exit 0', async (t) => {
    // The last run of the unit in the previous boot: from its last start to the shutdown.
    const all = sh('journalctl', '-b', '-1', '-u', 'emperor.service', '-o', 'cat', '--no-pager');
    const last = all.slice(all.lastIndexOf('Starting emperor.service'));
    t.match(last, /alice: stopped/, 'alice stopped at shutdown');
    t.match(last, /bob: stopped/, 'bob stopped at shutdown');
    t.match(last, /emperor stopped/, 'then the emperor');
    t.notMatch(last, /SIGKILL|timed out|Failed with result/, 'nobody was killed');
  });

  t.test('enabled, the emperor came up at boot with every vassal', async (t) => {
    t.equal(prop('ActiveState'), 'active');
    t.equal(prop('UnitFileState'), 'enabled');
    t.equal(prop('NRestarts'), '0', 'first try');
    t.equal(prop('StatusText'), '2 vassals: 2 running');
    t.match(await get('alice'), /^alice \w+\n$/);
    t.match(await get('bob'), /^bob \w+\n$/);
  });

  t.test('disable --now: stopped, nothing left, the unit removed', async (t) => {
    const cg = unitCgroup();
    sh('systemctl', 'disable', '--now', 'emperor.service');
    t.equal(prop('Result'), 'success');
    t.same(leftovers(cg), []);
    rmSync(UNIT, { force: true });
    rmSync(VASSALS, { recursive: true, force: true });
    sh('systemctl', 'daemon-reload');
  });
}
