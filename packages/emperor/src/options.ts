import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { EmperorError } from '@emperor/errors';

/** The daemon's settings, from the command line and an optional emperor.ini ([emperor] section). */
export interface DaemonSettings {
  dir: string;
  runDir: string;
  logDir: string;
  tyrant: boolean;
  cgroupParent: string;
}

const INI_KEYS = ['dir', 'run-dir', 'log-dir', 'tyrant', 'cgroup-parent'];

/** Reads `[emperor]` keys from an ini file: one `key = value` per line, `;`/`#` comments. */
const readEmperorIni = (file: string): Record<string, string> => {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new EmperorError('EMPEROR_ERR_USAGE', `--config ${file}: expected a readable file, got ${(e as NodeJS.ErrnoException).code}`);
  }
  const out: Record<string, string> = {};
  let section = '';
  text.split(/\r?\n/).forEach((raw, i) => {
    const l = raw.trim();
    if (l === '' || l.startsWith(';') || l.startsWith('#')) return;
    if (l.startsWith('[')) {
      section = l.slice(1, -1).trim().toLowerCase();
      return;
    }
    const eq = l.indexOf('=');
    const key = l.slice(0, eq).trim().toLowerCase();
    if (section !== 'emperor' || eq <= 0 || !INI_KEYS.includes(key)) {
      throw new EmperorError('EMPEROR_ERR_USAGE', `${file}:${i + 1}: expected one of ${INI_KEYS.join(', ')} in an [emperor] section, got ${JSON.stringify(l)}`);
    }
    out[key] = l.slice(eq + 1).trim();
  });
  return out;
};

/** `emperor [--run-dir D] [--log-dir D] [--tyrant] [--config emperor.ini] DIR`; the command line wins. */
export const parseDaemonArgs = (argv: string[]): DaemonSettings => {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      'run-dir': { type: 'string' },
      'log-dir': { type: 'string' },
      tyrant: { type: 'boolean' },
      config: { type: 'string' },
      'cgroup-parent': { type: 'string' },
    },
  });
  const ini = values.config === undefined ? {} : readEmperorIni(values.config);
  const dir = positionals[0] ?? ini.dir;
  if (dir === undefined || positionals.length > 1) throw new EmperorError('EMPEROR_ERR_USAGE', `expected one vassal directory, got ${positionals.length === 0 ? 'none' : positionals.join(' ')}`, { hint: 'emperor /etc/uwsgi/vassals' });
  const cgroupParent = values['cgroup-parent'] ?? ini['cgroup-parent'] ?? 'emperor';
  if (!/^[A-Za-z0-9_.-]+$/.test(cgroupParent)) throw new EmperorError('EMPEROR_ERR_USAGE', `--cgroup-parent: expected a plain directory name, got ${JSON.stringify(cgroupParent)}`);
  return {
    dir: resolve(dir),
    runDir: resolve(values['run-dir'] ?? ini['run-dir'] ?? '/run/emperor'),
    logDir: resolve(values['log-dir'] ?? ini['log-dir'] ?? '/var/log/emperor'),
    tyrant: values.tyrant ?? ['1', 'true', 'yes', 'on'].includes((ini.tyrant ?? '').toLowerCase()),
    cgroupParent,
  };
};
