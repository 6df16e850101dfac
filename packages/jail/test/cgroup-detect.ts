// The rules of cgroup detection, on the tables a cgroup v2 host under systemd gives (read in the VM guest).
import t from 'tap';
import { detectHierarchies } from '../src/index.js';

const V2_MOUNTINFO = '35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n';
const reader = (table: Record<string, string>) => (dir: string): string => {
  const v = table[dir];
  if (v === undefined) throw Object.assign(new Error(`ENOENT ${dir}`), { code: 'ENOENT' });
  return v;
};

t.test('cgroup v2: the controllers are read from the emperor\'s own cgroup, not the root', async (t) => {
  const hs = detectHierarchies({
    mountinfo: V2_MOUNTINFO,
    selfCgroup: '0::/system.slice/emperor.service\n',
    readControllers: reader({ '/sys/fs/cgroup': 'cpuset cpu io memory hugetlb pids rdma misc', '/sys/fs/cgroup/system.slice/emperor.service': 'cpu memory pids' }),
  });
  t.same(hs, [{ version: 2, controllers: ['memory', 'cpu', 'pids'], mount: '/sys/fs/cgroup', own: '/sys/fs/cgroup/system.slice/emperor.service' }]);
});

t.test('cgroup v2 without Delegate=yes: the exact error, naming the cgroup and the fix', async (t) => {
  // What systemd gives a service without Delegate=: the root passes down only memory and pids.
  t.throws(() => detectHierarchies({
    mountinfo: V2_MOUNTINFO,
    selfCgroup: '0::/system.slice/emperor.service\n',
    readControllers: reader({ '/sys/fs/cgroup': 'cpuset cpu io memory hugetlb pids rdma misc', '/sys/fs/cgroup/system.slice/emperor.service': 'memory pids' }),
  }), {
    code: 'EMPEROR_ERR_JAIL_CGROUP',
    message: 'cpu is not delegated to /system.slice/emperor.service: expected memory, cpu, pids in /sys/fs/cgroup/system.slice/emperor.service/cgroup.controllers, got "memory pids"',
    hint: /set Delegate=yes in the emperor's unit/,
  });
});

t.test('cgroup v2: the supervisor leaf is the emperor\'s own cgroup still (chosen once, never a level deeper)', async (t) => {
  const hs = detectHierarchies({
    mountinfo: V2_MOUNTINFO,
    selfCgroup: '0::/system.slice/emperor.service/supervisor\n',
    readControllers: reader({ '/sys/fs/cgroup/system.slice/emperor.service': 'cpu memory pids' }),
  });
  t.equal(hs[0]?.own, '/sys/fs/cgroup/system.slice/emperor.service');
});

t.test('in a container\'s cgroup namespace with its own cgroup2 mount: its root is the emperor\'s cgroup', async (t) => {
  const hs = detectHierarchies({
    mountinfo: V2_MOUNTINFO,
    selfCgroup: '0::/\n',
    readControllers: reader({ '/sys/fs/cgroup': 'cpu memory pids' }),
  });
  t.same(hs.map((h) => [h.version, h.own]), [[2, '/sys/fs/cgroup']]);
});

t.test('a cgroup mount that does not show the emperor\'s cgroup (the host\'s, seen from a cgroup namespace) is refused, with the fix', async (t) => {
  t.throws(() => detectHierarchies({
    mountinfo: V2_MOUNTINFO.replace(' / /sys/fs/cgroup ', ' /../.. /sys/fs/cgroup '),
    selfCgroup: '0::/\n',
    readControllers: reader({ '/sys/fs/cgroup': 'cpu memory pids' }),
  }), {
    code: 'EMPEROR_ERR_JAIL_CGROUP',
    message: 'the cgroup mount at /sys/fs/cgroup shows /../.., not this process\'s cgroup /: expected a cgroup file system mounted in this cgroup namespace',
    hint: /mount cgroup2 at \/sys\/fs\/cgroup inside it/,
  });
});

t.test('a mount of a subtree (a bind of the emperor\'s own cgroup) maps paths below its root', async (t) => {
  const hs = detectHierarchies({
    mountinfo: V2_MOUNTINFO.replace(' / /sys/fs/cgroup ', ' /system.slice /sys/fs/cgroup '),
    selfCgroup: '0::/system.slice/emperor.service\n',
    readControllers: reader({ '/sys/fs/cgroup/emperor.service': 'cpu memory pids' }),
  });
  t.equal(hs[0]?.own, '/sys/fs/cgroup/emperor.service');
});
