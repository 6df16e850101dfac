import { constants } from 'node:os';
import { Invalid, scalarText } from './invalid.js';

const BY_NAME = constants.signals as Record<string, number>;
const BY_NUMBER = new Map<number, string>();
for (const [name, num] of Object.entries(BY_NAME)) if (!BY_NUMBER.has(num)) BY_NUMBER.set(num, name);

/** A signal, by name (`TERM`, `SIGTERM`, `sigquit`) or number (1-64), to its canonical name or number. */
export const parseSignal = (raw: unknown): string | number => {
  const expected = 'a signal name like TERM, INT, QUIT, HUP or a number from 1 to 64';
  const s = scalarText(raw, expected).toUpperCase();
  if (/^\d+$/.test(s)) {
    const n = Number(s);
    if (n < 1 || n > 64) throw new Invalid(expected);
    return BY_NUMBER.get(n) ?? n;
  }
  const name = s.startsWith('SIG') ? s : `SIG${s}`;
  if (BY_NAME[name] === undefined) throw new Invalid(expected);
  return name;
};
