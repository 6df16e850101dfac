import { existsSync, lstatSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { VassalSpec } from '@emperor/config';
import { EmperorError } from '@emperor/errors';

/** Host directories a `rootfs = host` jail sees read-only (symlinks, as on merged-/usr systems, are copied). */
export const HOST_SYSTEM_DIRS = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32', '/etc', '/opt'];

/** Top-level entries of a distro tree the jail builds itself instead of binding. */
const OWN_DIRS = new Set(['proc', 'dev', 'sys', 'tmp', 'run', 'home', 'mnt', 'media', 'lost+found']);

/** Where the jail's pieces come from on the host. */
export interface LayoutPaths {
  /** The vassal's run dir on the host: /run and /var/run inside. */
  runDir: string;
  /** The vassal's home on the host (bound at the same path), if it has one. */
  home?: string | undefined;
  /** A root-owned file bound read-only over /etc/resolv.conf (net = nat jails). */
  resolvConf?: string | undefined;
}

const entryArgs = (host: string, jail: string): string[] => {
  const st = lstatSync(host);
  if (st.isSymbolicLink()) return ['--symlink', readlinkSync(host), jail];
  return ['--ro-bind', host, jail];
};

const rootfsArgs = (rootfs: string): string[] => {
  if (rootfs === 'host') return HOST_SYSTEM_DIRS.filter((d) => existsSync(d) || isLink(d)).flatMap((d) => entryArgs(d, d));
  let st;
  try {
    st = statSync(rootfs);
  } catch {
    throw new EmperorError('EMPEROR_ERR_JAIL_ROOTFS', `rootfs ${rootfs}: expected a distro tree, got no such directory`, { hint: 'debootstrap a distro there, or use rootfs = host' });
  }
  if (!st.isDirectory()) throw new EmperorError('EMPEROR_ERR_JAIL_ROOTFS', `rootfs ${rootfs}: expected a directory, got a file`);
  for (const own of ['dev', 'proc', 'sys', 'run']) {
    const p = join(rootfs, own);
    if (isLink(p)) {
      throw new EmperorError('EMPEROR_ERR_JAIL_ROOTFS', `rootfs ${rootfs}: expected /${own} to be a plain directory, got a symlink to ${readlinkSync(p)}`, {
        hint: `replace ${p} with an empty directory; a jail never follows symlinks out of its root`,
      });
    }
  }
  return readdirSync(rootfs)
    .filter((e) => !OWN_DIRS.has(e))
    .sort()
    .flatMap((e) => entryArgs(join(rootfs, e), `/${e}`));
};

const isLink = (p: string): boolean => {
  try {
    return lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
};

/**
 * The helper's mount arguments for a vassal: the system tree, then the jail's own /proc, /dev, /tmp and
 * /run, the home, then the vassal file's binds, in that order (later mounts may nest in earlier ones).
 */
export const mountArgs = (spec: VassalSpec, paths: LayoutPaths): string[] => {
  const args = rootfsArgs(spec.rootfs);
  if (paths.resolvConf !== undefined) {
    // The helper binds over a plain file only (it follows no symlink inside the jail: docs/jail.md).
    const etcFile = spec.rootfs === 'host' ? '/etc/resolv.conf' : join(spec.rootfs, 'etc/resolv.conf');
    let plain = false;
    try {
      plain = lstatSync(etcFile).isFile();
    } catch {
      plain = false;
    }
    if (!plain) {
      throw new EmperorError('EMPEROR_ERR_NET', `${spec.name}: network: expected ${etcFile} to be a plain file (net = nat binds the jail's resolvers over it), got ${existsSync(etcFile) || isLink(etcFile) ? 'a symlink or other file' : 'none'}`, {
        hint: isLink(etcFile) ? `replace the symlink with a file (systemd-resolved: ln -sf /run/systemd/resolve/resolv.conf is still a symlink; copy it instead)` : `create ${etcFile}`,
      });
    }
    args.push('--ro-bind', paths.resolvConf, '/etc/resolv.conf');
  }
  args.push('--proc', '/proc', '--dev', '/dev');
  if (spec.unshare.includes('ipc')) args.push('--mqueue', '/dev/mqueue');
  args.push('--tmpfs', String(spec.tmpSizeBytes), '/tmp');
  args.push('--bind', paths.runDir, '/run');
  // A distro brings its own /var (whose run is usually a symlink to /run); the host layout has none.
  if (!args.includes('/var')) args.push('--symlink', '/run', '/var/run');
  // The home and the vassal file's binds are paths whose directories a customer may own: the helper
  // follows no symlink in any of their components and checks where they really lead (docs/jail.md).
  if (paths.home !== undefined && existsSync(paths.home)) args.push('--bind-nofollow', paths.home, paths.home);
  for (const b of spec.binds) args.push(b.readOnly ? '--ro-bind-nofollow' : '--bind-nofollow', b.host, b.jail);
  return args;
};
