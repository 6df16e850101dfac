import { accessSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
    // The shim's stderr is /dev/null once it serves: its reports go to files, which must not appear.
    const logs = mkdtempSync(join(tmpdir(), 'emperor-asan-'));
    process.env.ASAN_OPTIONS = `detect_leaks=0:abort_on_error=0:log_path=${logs}/asan`;
    process.env.UBSAN_OPTIONS = `print_stacktrace=1:log_path=${logs}/ubsan`;
    t.teardown(() => {
      if (saved === undefined) delete process.env.EMPEROR_JAIL_HELPER;
      else process.env.EMPEROR_JAIL_HELPER = saved;
      delete process.env.ASAN_OPTIONS;
      delete process.env.UBSAN_OPTIONS;
      rmSync(logs, { recursive: true, force: true });
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
    // The shim's own work: a supervised process, a pty handed over, a refused pty request.
    const started = jail.start('asan', { argv: ['/bin/sh', '-c', 'exit 6'] });
    t.match(await started.exited, { code: 6 });
    const term = await jail.openPty({ argv: ['/bin/sh', '-c', 'tty; exit 2'], rows: 30, cols: 100 });
    t.match(await term.process.exited, { code: 2 });
    term.close();
    await t.rejects(jail.openPty({ argv: ['/bin/sh'], rows: 5000, cols: 80 }));
    await jail.stop();
    t.notMatch(jail.diagnostics(), REPORT, 'create and stop: no sanitizer report');
    const reports = readdirSync(logs).map((f) => `${f}: ${readFileSync(join(logs, f), 'utf8').slice(0, 2000)}`);
    t.same(reports, [], 'no sanitizer report from the shim (start, pty, a refused request, stop)');
  });
}
