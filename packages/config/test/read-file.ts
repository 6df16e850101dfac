import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { builtinLimits, checkVassalFile, formatProblem, MAX_VASSAL_FILE_BYTES } from '../src/index.js';
import { bad, ini, lines } from './fixtures/check.js';

const dir = mkdtempSync(join(tmpdir(), 'emperor-read-test-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const problemsOf = async (file: string, options = {}) => {
  const r = await checkVassalFile(file, options);
  if (r.ok) throw new Error(`${file} was accepted`);
  return r.problems.map((p) => formatProblem(p).replace(`${dir}/`, ''));
};

t.test('a missing file, a directory, a FIFO and a device are refused without blocking', async (t) => {
  t.same(await problemsOf(join(dir, 'gone.ini')), ['gone.ini: expected a vassal file, got no such file']);
  mkdirSync(join(dir, 'd.ini'));
  t.same(await problemsOf(join(dir, 'd.ini')), ['d.ini: expected a vassal file, got a directory']);
  execFileSync('mkfifo', [join(dir, 'f.ini')]);
  t.same(await problemsOf(join(dir, 'f.ini')), ['f.ini: expected a regular file, got a device, FIFO or socket']);
  symlinkSync('/dev/zero', join(dir, 'z.ini'));
  t.same(await problemsOf(join(dir, 'z.ini')), ['z.ini: expected a regular file, got a device, FIFO or socket']);
});

t.test('a 50 MB file is refused by its size, before it is read', async (t) => {
  const file = join(dir, 'huge.ini');
  writeFileSync(file, Buffer.alloc(50 * 1024 * 1024, 'a'));
  t.same(await problemsOf(file), ['huge.ini: expected at most 1M, got 50.0M (a vassal file is a short list of keys; is this the right file?)']);
  writeFileSync(file, ini('command = x', `env = A=${'a'.repeat(MAX_VASSAL_FILE_BYTES)}`));
  t.match((await problemsOf(file))[0], /expected at most 1M, got 1\.0M/);
});

t.test('binary garbage and invalid UTF-8 are refused, naming the line', async (t) => {
  t.same(lines(await bad('bin.ini', Buffer.from([0x5b, 0x75, 0x0a, 0x7f, 0x45, 0x4c, 0x46, 0x00, 0x01]))), ['bin.ini:2: expected text, got binary data (a NUL byte) (is this the right file?)']);
  t.same(lines(await bad('latin1.ini', Buffer.concat([Buffer.from('[uwsgi]\nuid = www-data\ncommand = caf'), Buffer.from([0xe9]), Buffer.from('\n')]))), ['latin1.ini:3: expected UTF-8 text, got invalid UTF-8 (save the file as UTF-8)']);
  const random = Buffer.alloc(4096);
  for (let i = 0; i < random.length; i++) random[i] = (i * 7919 + 13) % 251;
  const [p] = await bad('noise.yaml', random);
  t.equal(p?.code, 'EMPEROR_ERR_CONFIG_ENCODING');
});

t.test('file names: unknown extensions and unusable names are refused', async (t) => {
  t.same(lines(await bad('alice.conf', ini('command = x'))), ['alice.conf: expected a file ending in .ini, .json, .yaml or .yml, got ".conf"']);
  t.same(lines(await bad('alice', ini('command = x'))), ['alice: expected a file ending in .ini, .json, .yaml or .yml, got no extension']);
  t.same(lines(await bad('-x.ini', ini('command = x'))), ['-x.ini: expected a vassal name of letters, digits, ".", "_" and "-" (at most 64, starting with a letter or digit), got "-x" (the name becomes a directory and a cgroup; rename the file)']);
  t.same(lines(await bad('a b.ini', ini('command = x'))).length, 1);
});

t.test('an unreadable file is refused with permission denied (checked as an unprivileged user)', async (t) => {
  const sub = join(dir, 'perm');
  mkdirSync(sub);
  chmodSync(dir, 0o711);
  chmodSync(sub, 0o711);
  const file = join(sub, 'secret.ini');
  writeFileSync(file, ini('command = x'), { mode: 0o600 });
  // root reads anything: take nobody's effective uid for this one check (glibc applies it to every thread).
  process.setegid(65534);
  process.seteuid(65534);
  try {
    t.same(await problemsOf(file), ['perm/secret.ini: expected a readable file, got permission denied (make the file readable by the emperor)']);
  } finally {
    process.seteuid(0);
    process.setegid(0);
  }
});

t.test('tyrant mode: uid/gid come from the owner; root-owned files and symlinks are refused', async (t) => {
  const file = join(dir, 'tyrant.ini');
  writeFileSync(file, '[uwsgi]\ncommand = x\n');
  t.same(await problemsOf(file, { tyrant: true }), ['tyrant.ini: expected a file owned by an unprivileged user and group (tyrant mode), got owner 0:0 (chown the vassal file to the customer)']);
  chownSync(file, 33, 33);
  t.same(await problemsOf(file, { tyrant: true }), [`tyrant.ini: expected a file owned by a customer, uid ${builtinLimits().tyrantMinUid.value} or above (tyrant-min-uid, set in UID_MIN of /etc/login.defs), got uid 33, a system user (chown the vassal file to the customer's own user)`], 'a system user is no customer');
  // From here on www-data (33) stands for a customer: this machine has no user above UID_MIN to chown to.
  const limits = builtinLimits();
  limits.tyrantMinUid = { value: 1, from: 'the test' };
  const tyrant = { tyrant: true, limits };
  const r = await checkVassalFile(file, tyrant);
  t.ok(r.ok);
  if (r.ok) t.same([r.spec.uid, r.spec.gid], [33, 33]);
  writeFileSync(file, '[uwsgi]\ncommand = x\nsocket = a.sock\nchown-socket = nobody:www-data\n');
  t.same(await problemsOf(file, tyrant), ['tyrant.ini:4: chown-socket: expected the file\'s owner or www-data (tyrant-socket-owners, set in the built-in default), got 65534:33 (in tyrant mode a socket belongs to you or to the web server)'], 'a socket owned by another user is refused');
  writeFileSync(file, '[uwsgi]\ncommand = x\nsocket = a.sock\nchown-socket = www-data:www-data\n');
  t.ok((await checkVassalFile(file, tyrant)).ok, 'the web server may own it');
  writeFileSync(file, '[uwsgi]\ncommand = x\nuid = nobody\n');
  t.same(await problemsOf(file, tyrant), ['tyrant.ini:3: uid: expected the file owner\'s uid 33 (tyrant mode), got 65534 (in tyrant mode the file owner decides; remove uid)']);
  writeFileSync(file, '[uwsgi]\ncommand = x\nbind-ro = /etc:/hostetc\nrootfs = /distros/x\ncgroup-opt = memory.high=1G\nunshare = fs,pid\n');
  t.same(await problemsOf(file, tyrant), [
    'tyrant.ini:3: bind-ro: expected no bind-ro in tyrant mode, got one (the operator sets mounts, namespaces and raw cgroup files; customers cannot)',
    'tyrant.ini:4: rootfs: expected no rootfs in tyrant mode, got one (the operator sets mounts, namespaces and raw cgroup files; customers cannot)',
    'tyrant.ini:5: cgroup-opt: expected no cgroup-opt in tyrant mode, got one (the operator sets mounts, namespaces and raw cgroup files; customers cannot)',
    'tyrant.ini:6: unshare: expected no unshare in tyrant mode, got one (the operator sets mounts, namespaces and raw cgroup files; customers cannot)',
  ], 'what root would mount or write for the customer is refused');
  symlinkSync(file, join(dir, 'link.ini'));
  t.same(await problemsOf(join(dir, 'link.ini'), { tyrant: true, noFollow: true }), ['link.ini: expected a regular file, got a symlink (tyrant mode refuses symlinks; copy the file instead)']);
});
