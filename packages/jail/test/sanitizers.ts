import { accessSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { cleanupCgroups, makeJail, requireJails, sh, specOf } from './fixtures/jail.js';

// The same helper sources built with -fsanitize=address,undefined (make -C native asan, run by setup.sh),
// driven through create, exec with a socket and a pty, and stop: any report fails the test.
const asan = fileURLToPath(new URL('../../../native/build/emperor-jail-asan', import.meta.url));
const REPORT = /AddressSanitizer|LeakSanitizer|runtime error:|UndefinedBehaviorSanitizer/;

if (requireJails(t)) {
  cleanupCgroups(t);
  t.test('the sanitizer build of the helper builds and runs a jail without a report', async (t) => {
    accessSync(asan);
    const saved = process.env.EMPEROR_JAIL_HELPER;
    process.env.EMPEROR_JAIL_HELPER = asan;
    process.env.ASAN_OPTIONS = 'detect_leaks=0:abort_on_error=0';
    t.teardown(() => {
      if (saved === undefined) delete process.env.EMPEROR_JAIL_HELPER;
      else process.env.EMPEROR_JAIL_HELPER = saved;
      delete process.env.ASAN_OPTIONS;
    });
    const jail = await makeJail(t, specOf('asan', 'memory-limit = 64M', 'pids-limit = 32', 'hostname = asan-jail'));
    const r = await sh(jail, 'hostname; id -u; exit 4');
    t.equal(r.code, 4);
    t.match(r.stdout, /^asan-jail\n\d+\n$/);
    t.notMatch(r.stderr, REPORT, 'exec: no sanitizer report');
    const pty = await sh(jail, 'tty', { pty: true });
    t.match(pty.stdout, /\/dev\/pts\/\d+/);
    t.notMatch(pty.stderr, REPORT);
    const bad = jail.exec({ argv: ['/nope'] });
    let badErr = '';
    bad.subprocess.stderr?.on('data', (d: Buffer) => (badErr += d.toString()));
    t.match(await bad.exited, { code: 127 });
    t.match(badErr, /exec \/nope/);
    t.notMatch(badErr, REPORT, 'a failed exec: no sanitizer report');
    await jail.stop();
    t.notMatch(jail.diagnostics(), REPORT, 'create and stop: no sanitizer report');
  });
}
