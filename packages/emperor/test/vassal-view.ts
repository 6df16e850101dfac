import t from 'tap';
import { jailPidOf, redactHostPaths } from '../src/vassal-view.js';

t.test('host paths in an error are replaced by what the customer may know of them', async (t) => {
  const paths = { runDir: '/run/emperor/vassals/shop', file: '/etc/uwsgi/vassals/shop.ini', others: ['/run/emperor', '/var/log/emperor', '/etc/uwsgi/vassals', '/sys/fs/cgroup/memory', '/sys/fs/cgroup/memory/system.slice/emperor.service'] };
  t.equal(redactHostPaths('bind /run/emperor/vassals/shop/sockets/app.sock: EEXIST', paths), 'bind /run/sockets/app.sock: EEXIST', 'the run dir is /run, as the jail sees it');
  t.equal(redactHostPaths('/etc/uwsgi/vassals/shop.ini:3: uid: expected a user', paths), 'shop.ini:3: uid: expected a user', 'the file keeps its name only');
  t.equal(redactHostPaths('cgroup for shop: /sys/fs/cgroup/memory/system.slice/emperor.service/shop: EBUSY', paths), 'cgroup for shop: (host)/shop: EBUSY', 'the emperor\'s cgroup, before its mount point (longest first)');
  t.equal(redactHostPaths('log /var/log/emperor/shop/app.log: ENOSPC', paths), 'log (host)/shop/app.log: ENOSPC');
  t.equal(redactHostPaths('exited with code 1', paths), 'exited with code 1');
});

t.test('a host pid becomes the jail\'s pid; a process of no jail has none', async (t) => {
  t.equal(jailPidOf(process.pid), null, 'this process is in no child pid namespace');
  t.equal(jailPidOf(undefined), null);
  t.equal(jailPidOf(2 ** 22 + 7), null, 'a pid that does not exist');
});
