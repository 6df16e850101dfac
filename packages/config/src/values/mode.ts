import { Invalid, scalarText } from './invalid.js';

/** An octal permission mode like `660` or `0660`; no setuid, setgid or sticky bits. */
export const parseMode = (raw: unknown): number => {
  const expected = 'an octal mode like 660 or 0660 (at most 777)';
  // A json/yaml number 660 was written in octal digits by the user; read its decimal digits as octal.
  const s = scalarText(raw, expected);
  if (!/^0?[0-7]{3}$/.test(s)) {
    throw new Invalid(expected, /^[rwx-]{9}$/.test(s) ? { hint: 'write rw-rw---- as 660' } : {});
  }
  return Number.parseInt(s, 8);
};
