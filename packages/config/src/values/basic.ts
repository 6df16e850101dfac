import { Invalid, nonEmptyText, scalarText } from './invalid.js';

const TRUE = new Set(['on', 'true', 'yes', '1']);
const FALSE = new Set(['off', 'false', 'no', '0']);

/** on/off, true/false, yes/no, 1/0 (case-insensitive). */
export const parseBool = (raw: unknown): boolean => {
  const expected = 'on or off (also true/false, yes/no, 1/0)';
  const s = scalarText(raw, expected).toLowerCase();
  if (TRUE.has(s)) return true;
  if (FALSE.has(s)) return false;
  throw new Invalid(expected);
};

/** A whole number in [min, max]. */
export const parseInteger = (raw: unknown, min: number, max: number, what = 'a whole number'): number => {
  const expected = `${what} from ${min} to ${max}`;
  const s = scalarText(raw, expected);
  if (!/^[+]?\d+$/.test(s)) throw new Invalid(expected);
  const n = Number(s);
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new Invalid(expected);
  return n;
};

/** One of a fixed set of words. */
export const parseEnum = <T extends string>(raw: unknown, words: readonly T[]): T => {
  const expected = `one of ${words.join(', ')}`;
  const s = nonEmptyText(raw, expected).toLowerCase();
  const hit = words.find((w) => w === s);
  if (hit === undefined) throw new Invalid(expected);
  return hit;
};

/** A single line of text with no NUL (NUL cannot cross exec or a file path). */
export const parseText = (raw: unknown, expected = 'a non-empty text'): string => {
  const s = nonEmptyText(raw, expected);
  if (s.includes('\0')) throw new Invalid(expected, { found: 'a value containing a NUL byte' });
  return s;
};

/** A list in one value: comma-separated text, or a json/yaml list of words. */
export const parseWordList = (raw: unknown, expected: string): string[] => {
  const items = Array.isArray(raw) ? raw.map((r) => scalarText(r, expected)) : scalarText(raw, expected).split(',');
  return items.map((s) => s.trim().toLowerCase()).filter((s) => s !== '');
};
