import { execaSync } from 'execa';
import { Invalid, scalarText } from './invalid.js';

/** A passwd or group entry as getent(1) returns it (so NSS sources such as LDAP count too). */
interface DbEntry {
  name: string;
  id: number;
  /** passwd only: primary gid and home. */
  gid?: number;
  home?: string;
}

const cache = new Map<string, DbEntry | null>();

const getent = (db: 'passwd' | 'group', key: string): DbEntry | null => {
  const k = `${db}:${key}`;
  if (cache.has(k)) return cache.get(k) ?? null;
  // getent exits 2 for "not found"; reject: false keeps that an answer, not an exception.
  const r = execaSync('getent', [db, '--', key], { reject: false, timeout: 5000 }); // '--': a key like --help is a key, not an option
  let entry: DbEntry | null = null;
  if (r.exitCode === 0 && typeof r.stdout === 'string') {
    const f = r.stdout.split('\n')[0]?.split(':') ?? [];
    entry = { name: f[0] ?? key, id: Number(f[2]) };
    if (db === 'passwd') {
      entry.gid = Number(f[3]);
      entry.home = f[5] ?? '/';
    }
  }
  cache.set(k, entry);
  return entry;
};

/** Forget cached lookups (the daemon calls this when it rereads a file; tests when they add users). */
export const clearUserCache = (): void => cache.clear();

/** A resolved user. */
export interface UserRef {
  uid: number;
  name: string | undefined;
  /** Primary gid and home from passwd, when the user has an entry. */
  gid: number | undefined;
  home: string | undefined;
}

/** A resolved group. */
export interface GroupRef {
  gid: number;
  name: string | undefined;
}

const ROOT_HINT = 'a vassal never runs as root; create an unprivileged user for it';
const MAX_ID = 4294967294; // (uid_t)-1 is "no change" in setresuid, never a real id

/** A user name or number; root (0) is refused; a name must exist on this machine. */
export const parseUser = (raw: unknown): UserRef => {
  const expected = 'an existing user name or a uid other than 0';
  const s = scalarText(raw, expected);
  if (s === '') throw new Invalid(expected);
  if (/^\d+$/.test(s)) {
    const uid = Number(s);
    if (uid === 0) throw new Invalid(expected, { hint: ROOT_HINT });
    if (uid > MAX_ID) throw new Invalid(expected);
    const e = getent('passwd', s);
    return { uid, name: e?.name, gid: e?.gid, home: e?.home };
  }
  const e = getent('passwd', s);
  if (e === null) throw new Invalid(expected, { found: `unknown user "${s}"`, hint: `create it (useradd ${s}) or use a uid` });
  if (e.id === 0) throw new Invalid(expected, { found: `"${s}", which is uid 0`, hint: ROOT_HINT });
  return { uid: e.id, name: e.name, gid: e.gid, home: e.home };
};

/** A group name or number; root (0) is refused; a name must exist on this machine. */
export const parseGroup = (raw: unknown): GroupRef => {
  const expected = 'an existing group name or a gid other than 0';
  const s = scalarText(raw, expected);
  if (s === '') throw new Invalid(expected);
  if (/^\d+$/.test(s)) {
    const gid = Number(s);
    if (gid === 0) throw new Invalid(expected, { hint: 'a vassal never runs with group root' });
    if (gid > MAX_ID) throw new Invalid(expected);
    return { gid, name: getent('group', s)?.name };
  }
  const e = getent('group', s);
  if (e === null) throw new Invalid(expected, { found: `unknown group "${s}"`, hint: `create it (groupadd ${s}) or use a gid` });
  if (e.id === 0) throw new Invalid(expected, { found: `"${s}", which is gid 0`, hint: 'a vassal never runs with group root' });
  return { gid: e.id, name: e.name };
};

/** `chown-socket`: `user:group` or `user` (the user's primary group). Root may own a socket. */
export const parseOwner = (raw: unknown): { uid: number; gid: number } => {
  const expected = 'USER:GROUP or USER, both existing on this machine, like www-data:alice';
  const s = scalarText(raw, expected);
  const [u, g, extra] = s.split(':');
  if (u === undefined || u === '' || extra !== undefined) throw new Invalid(expected);
  const user = /^\d+$/.test(u) ? { id: Number(u), gid: getent('passwd', u)?.gid } : getent('passwd', u);
  if (user === null) throw new Invalid(expected, { found: `unknown user "${u}"` });
  let gid = user.gid;
  if (g !== undefined && g !== '') {
    const group = /^\d+$/.test(g) ? { id: Number(g) } : getent('group', g);
    if (group === null) throw new Invalid(expected, { found: `unknown group "${g}"` });
    gid = group.id;
  }
  if (gid === undefined) throw new Invalid(expected, { found: `uid ${u} with no passwd entry and no group` });
  return { uid: user.id, gid };
};
