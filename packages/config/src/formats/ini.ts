import type { ConfigProblem } from '../problem.js';
import type { ReadResult, RawEntry } from './entry.js';

const SECTIONS = ['uwsgi', 'vassal'];

/**
 * uWSGI-style ini. Only lines that *start* with `;` or `#` are comments; a value is everything after the
 * first `=`, trimmed, and nothing else, so `sh -c "a; b" # c` keeps its `;`, `#` and quotes. Repeated keys
 * make lists. `%(key)` is the last value given to an earlier key, `%n` the vassal name, `%%` a `%`.
 *
 * The npm `ini` package is not used: it strips inline comments and quotes and does not report line numbers,
 * and both matter here (docs/decisions.md).
 */
export const readIni = (text: string, file: string, name: string): ReadResult => {
  const entries: RawEntry[] = [];
  const problems: ConfigProblem[] = [];
  const seen = new Map<string, string>();
  const syntax = (line: number, message: string, hint?: string): void => {
    problems.push({ code: 'EMPEROR_ERR_CONFIG_SYNTAX', file, line, message, hint });
  };
  let section: string | undefined;
  const sectionsSeen = new Set<string>();
  const lines = text.split(/\r?\n/);
  lines.forEach((rawLine, i) => {
    const line = i + 1;
    const t = rawLine.trim();
    if (t === '' || t.startsWith(';') || t.startsWith('#')) return;
    if (t.startsWith('[')) {
      const m = /^\[([^\]]*)\]$/.exec(t);
      if (m === null || m[1] === undefined) return syntax(line, `expected a section header like [uwsgi], got ${JSON.stringify(t)}`);
      section = m[1].trim().toLowerCase();
      if (!SECTIONS.includes(section)) {
        problems.push({ code: 'EMPEROR_ERR_CONFIG_SECTION', file, line, message: `expected a [uwsgi] or [vassal] section, got [${m[1].trim()}]`, hint: 'every key of a vassal file belongs in one [uwsgi] or [vassal] section' });
      }
      sectionsSeen.add(section);
      return;
    }
    const eq = t.indexOf('=');
    if (eq < 0) return syntax(line, `expected KEY = VALUE, got ${JSON.stringify(t.length > 60 ? `${t.slice(0, 60)}...` : t)}`, 'write the key, an equals sign, then its value');
    const key = t.slice(0, eq).trim().toLowerCase();
    if (key === '') return syntax(line, `expected KEY = VALUE, got nothing before "="`);
    if (section === undefined) {
      problems.push({ code: 'EMPEROR_ERR_CONFIG_SECTION', file, line, key, message: 'expected the key inside a [uwsgi] or [vassal] section, got it before any section', hint: 'put [uwsgi] on the first line' });
      return;
    }
    if (!SECTIONS.includes(section)) return;
    const value = expand(t.slice(eq + 1).trim(), seen, name, (msg) => problems.push({ code: 'EMPEROR_ERR_CONFIG_VALUE', file, line, key, message: msg, hint: 'a %(key) reference needs that key earlier in the file; write %% for a literal %' }));
    seen.set(key, value);
    entries.push({ key, value, line });
  });
  if (sectionsSeen.has('uwsgi') && sectionsSeen.has('vassal')) {
    problems.push({ code: 'EMPEROR_ERR_CONFIG_SECTION', file, message: 'expected one [uwsgi] or [vassal] section, got both', hint: 'merge them into one' });
  }
  if (problems.length === 0 && ![...sectionsSeen].some((s) => SECTIONS.includes(s))) {
    problems.push({ code: 'EMPEROR_ERR_CONFIG_SECTION', file, message: text.trim() === '' ? 'expected a [uwsgi] or [vassal] section, got an empty file' : 'expected a [uwsgi] or [vassal] section, got none', hint: 'start the file with [uwsgi]' });
  }
  return { entries, problems };
};

const expand = (value: string, seen: Map<string, string>, name: string, fail: (msg: string) => void): string =>
  value.replace(/%(%|n|\(([^)]*)\))/g, (whole, what: string, ref: string | undefined) => {
    if (what === '%') return '%';
    if (what === 'n') return name;
    const key = (ref ?? '').trim().toLowerCase();
    const v = seen.get(key);
    if (v === undefined) {
      fail(`expected %(${key}) to name a key set earlier in the file, got none`);
      return whole;
    }
    return v;
  });
