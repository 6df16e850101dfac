import { Invalid, scalarText } from './invalid.js';

/** The resource limits the jail helper sets before exec (setrlimit names, lower case). */
export const RLIMIT_NAMES = ['nofile', 'nproc', 'core', 'memlock', 'stack', 'fsize', 'as', 'cpu'] as const;
/** One rlimit name. */
export type RlimitName = (typeof RLIMIT_NAMES)[number];
/** A soft and a hard value; `Infinity` is unlimited. */
export type RlimitPair = [soft: number, hard: number];

/** Limits measured in bytes take sizes (`8M`); the others are counts (or seconds, for cpu). */
const BYTES = new Set<RlimitName>(['core', 'memlock', 'stack', 'fsize', 'as']);
const UNIT: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

const amount = (name: RlimitName, s: string, expected: string): number => {
  if (s === 'unlimited' || s === 'infinity') return Infinity;
  const m = BYTES.has(name) ? /^(\d+)\s*([kmgt]?)(?:i?b)?$/.exec(s) : /^(\d+)()$/.exec(s);
  if (m === null) throw new Invalid(expected);
  const n = Number(m[1]) * (UNIT[m[2] ?? ''] ?? 1);
  if (!Number.isSafeInteger(n)) throw new Invalid(expected);
  return n;
};

const expectedOf = (what: string) => `${what} like nofile=1024:4096 or core=0 (NAME=SOFT[:HARD], NAME one of ${RLIMIT_NAMES.join(', ')}; sizes like 8M for core, memlock, stack, fsize and as)`;

/** `NAME=SOFT[:HARD]`: one rlimit of a vassal file or emperor.ini; HARD defaults to SOFT. */
export const parseRlimit = (raw: unknown): { name: RlimitName; value: RlimitPair } => {
  const expected = expectedOf('a resource limit');
  const s = scalarText(raw, expected).toLowerCase().replace(/\s+/g, '');
  const m = /^([a-z]+)[=:](.+)$/.exec(s);
  const name = RLIMIT_NAMES.find((n) => n === m?.[1]);
  if (m === null || m[2] === undefined || name === undefined) throw new Invalid(expected);
  const [softText, hardText, ...rest] = m[2].split(':');
  if (rest.length > 0 || softText === undefined) throw new Invalid(expected);
  const soft = amount(name, softText, expected);
  const hard = hardText === undefined ? soft : amount(name, hardText, expected);
  if (soft > hard) throw new Invalid(expected, { found: JSON.stringify(s), hint: 'the soft limit cannot be above the hard limit' });
  return { name, value: [soft, hard] };
};

/** `NAME=MAX`: the highest hard limit a vassal may ask for (emperor.ini's max-rlimit). */
export const parseRlimitMax = (raw: unknown): { name: RlimitName; max: number } => {
  const expected = expectedOf('a resource limit ceiling');
  const s = scalarText(raw, expected).toLowerCase().replace(/\s+/g, '');
  const m = /^([a-z]+)[=:]([^:]+)$/.exec(s);
  const name = RLIMIT_NAMES.find((n) => n === m?.[1]);
  if (m === null || m[2] === undefined || name === undefined) throw new Invalid(expected);
  return { name, max: amount(name, m[2], expected) };
};

/** How a limit reads in messages: 1024, 8M, unlimited. */
export const showRlimit = (name: RlimitName, n: number): string => {
  if (n === Infinity) return 'unlimited';
  if (!BYTES.has(name)) return String(n);
  for (const [u, f] of [['T', 1024 ** 4], ['G', 1024 ** 3], ['M', 1024 ** 2], ['K', 1024]] as const) if (n >= f && n % f === 0) return `${n / f}${u}`;
  return String(n);
};
