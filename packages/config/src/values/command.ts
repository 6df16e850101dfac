import { Invalid, scalarText } from './invalid.js';

/**
 * A command: text runs with `/bin/sh -c` inside the jail; a json/yaml list is exec'd as it is.
 * Returns the argv.
 */
export const parseCommand = (raw: unknown): string[] => {
  const expected = 'a command line, or in json/yaml a non-empty list of strings';
  if (Array.isArray(raw)) {
    if (raw.length === 0) throw new Invalid(expected, { found: 'an empty list' });
    const argv = raw.map((a) => {
      if (typeof a !== 'string' && typeof a !== 'number') throw new Invalid(expected);
      return String(a);
    });
    if (argv[0] === '' || argv.some((a) => a.includes('\0'))) throw new Invalid(expected);
    return argv;
  }
  const s = scalarText(raw, expected);
  if (s === '' || s.includes('\0')) throw new Invalid(expected);
  return ['/bin/sh', '-c', s];
};
