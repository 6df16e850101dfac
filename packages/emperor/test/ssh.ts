import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { requireJails, startEmperor } from './fixtures/emperor.js';
import { publicCheckout } from './fixtures/public-checkout.js';
import { run } from './fixtures/run.js';


const freePort = (): Promise<number> =>
  new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

/** A real OpenSSH server on a loopback port, with its own host key and config, stopped after the test. */
const startSshd = async (t: Test, runDir: string) => {
  const dir = mkdtempSync(join(tmpdir(), 'emperor-test-sshd-'));
  chmodSync(dir, 0o755);
  mkdirSync(join(dir, 'auth'));
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'hostkey')]);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'id')]);
  const pub = readFileSync(join(dir, 'id.pub'), 'utf8');
  for (const u of ['demo-alice', 'demo-bob']) writeFileSync(join(dir, 'auth', u), pub, { mode: 0o644 });
  const port = await freePort();
  const emperor = `${publicCheckout(t)}/node_modules/.bin/emperor`;
  writeFileSync(join(dir, 'sshd_config'), [
    `Port ${port}`, 'ListenAddress 127.0.0.1', `HostKey ${join(dir, 'hostkey')}`, `PidFile ${join(dir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${join(dir, 'auth')}/%u`, 'PasswordAuthentication no', 'KbdInteractiveAuthentication no',
    'UsePAM no', 'StrictModes no', 'PermitRootLogin no', 'LogLevel ERROR', 'Subsystem sftp /usr/lib/openssh/sftp-server',
    'AllowUsers demo-alice demo-bob',
    // what docs/deploy/sshd-emperor.conf sets, with this test's run dir
    `ForceCommand ${emperor} pty --run-dir ${runDir}`,
    '',
  ].join('\n'));
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 }); // sshd's privilege separation directory
  const sshd = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', join(dir, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  sshd.stderr.on('data', (d: Buffer) => (log += d.toString()));
  const gone = new Promise((r) => sshd.on('exit', r));
  t.teardown(async () => {
    sshd.kill('SIGTERM');
    await gone;
    rmSync(dir, { recursive: true, force: true });
  });
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = createServer().listen(port, '127.0.0.1', () => c.close(() => resolve(false)));
      c.on('error', () => resolve(true));
    });
    if (ok) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const sshArgs = (user: string) => ['-p', String(port), '-i', join(dir, 'id'), '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR', `${user}@127.0.0.1`];
  return { port, dir, sshArgs, log: () => log };
};

if (requireJails(t)) {
  t.test('a customer logs in with a key and lands in the jail: commands, exit status, an interactive shell, scp, rsync', async (t) => {
    const e = await startEmperor(t);
    e.write('alice.ini', '[uwsgi]', 'uid = demo-alice', 'command = sleep 300', 'hostname = alice-jail');
    e.write('bob.ini', '[uwsgi]', 'uid = demo-bob', 'command = sleep 300', 'hostname = bob-jail');
    await e.waitFor((x) => x.vassal === 'alice' && x.event === 'spawned');
    await e.waitFor((x) => x.vassal === 'bob' && x.event === 'spawned');
    const s = await startSshd(t, `${e.root}/run`);

    const cmd = await run('ssh', [...s.sshArgs('demo-alice'), 'id -un; hostname; ps -e -o comm= | sort | tr "\\n" " "; exit 3']);
    t.equal(cmd.status, 3, `the exit status comes back through ssh (${cmd.stderr}${s.log()})`);
    const [who, host, procs] = cmd.stdout.split('\n');
    t.equal(who, 'demo-alice');
    t.equal(host, 'alice-jail', 'inside alice\'s jail');
    t.match(procs, /^bash init ps sh sleep sort tr $/, 'seeing only her jail\'s processes (the init under a neutral name)');

    const bob = await run('ssh', [...s.sshArgs('demo-bob'), 'hostname; ls /run; cat /proc/1/cmdline >/dev/null && echo has-init']);
    t.match(bob.stdout, /^bob-jail\n/, 'bob lands in his own jail');

    const shell = await run('ssh', ['-tt', ...s.sshArgs('demo-alice')], { input: 'echo INTERACTIVE-$((20+22)); tty; exit 5\n' });
    t.match(shell.stdout, /INTERACTIVE-42/);
    t.match(shell.stdout, /\/dev\/pts\/\d+/, 'a pty of the jail');
    t.equal(shell.status, 5, 'the shell\'s exit status');

    const file = join(s.dir, 'payload.txt');
    writeFileSync(file, 'copied into the jail\n');
    chmodSync(file, 0o644);
    const scp = await run('scp', ['-P', String(s.port), '-i', join(s.dir, 'id'), '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR', file, 'demo-alice@127.0.0.1:/tmp/via-scp.txt']);
    t.equal(scp.status, 0, `scp works (sftp-server in the jail): ${scp.stderr}`);
    const rsync = await run('rsync', ['-e', `ssh ${s.sshArgs('x').slice(0, -1).join(' ')}`, file, 'demo-alice@127.0.0.1:/tmp/via-rsync.txt']);
    t.equal(rsync.status, 0, `rsync works: ${rsync.stderr}`);
    const check = await run('ssh', [...s.sshArgs('demo-alice'), 'cat /tmp/via-scp.txt /tmp/via-rsync.txt']);
    t.equal(check.stdout, 'copied into the jail\ncopied into the jail\n', 'both files landed in the jail\'s /tmp');
    t.throws(() => readFileSync('/tmp/via-scp.txt'), 'and not on the host');
  });
}
