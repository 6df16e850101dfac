import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { builtinLimits, builtinNetwork, readEmperorIni, type NetworkSettings, type OperatorLimits } from '@emperor/config';
import { EmperorError } from '@emperor/errors';
import { LOG_FORMATS } from './log-format.js';

/** The daemon's settings, from the command line and an optional emperor.ini ([emperor] section). */
export interface DaemonSettings {
  dir: string;
  runDir: string;
  logDir: string;
  tyrant: boolean;
  cgroupParent: string;
  /** Defaults and ceilings from emperor.ini (built-in ones without it). */
  limits: OperatorLimits;
  /** The network of net = nat jails (emperor.ini net-*; built-in defaults without it). */
  network: NetworkSettings;
  /** How the daemon's own log is written (auto: from where stdout goes). */
  logFormat: (typeof LOG_FORMATS)[number];
  /** Jails built at once (emperor.ini `jail-builds`), if set. */
  jailBuilds?: number;
}

/** `emperor [--run-dir D] [--log-dir D] [--tyrant] [--log-format F] [--config emperor.ini] DIR`; the command line wins. */
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
      'log-format': { type: 'string' },
    },
  });
  const { settings: ini, limits, network } = values.config === undefined ? { settings: {}, limits: builtinLimits(), network: builtinNetwork() } : readEmperorIni(values.config);
  const dir = positionals[0] ?? ini.dir;
  if (dir === undefined || positionals.length > 1) throw new EmperorError('EMPEROR_ERR_USAGE', `expected one vassal directory, got ${positionals.length === 0 ? 'none' : positionals.join(' ')}`, { hint: 'emperor /etc/uwsgi/vassals' });
  const cgroupParent = values['cgroup-parent'] ?? ini['cgroup-parent'] ?? 'emperor';
  if (!/^[A-Za-z0-9_.-]+$/.test(cgroupParent)) throw new EmperorError('EMPEROR_ERR_USAGE', `--cgroup-parent: expected a plain directory name, got ${JSON.stringify(cgroupParent)}`);
  const logFormat = LOG_FORMATS.find((f) => f === (values['log-format'] ?? ini['log-format'] ?? 'auto'));
  if (logFormat === undefined) throw new EmperorError('EMPEROR_ERR_USAGE', `--log-format: expected one of ${LOG_FORMATS.join(', ')}, got ${JSON.stringify(values['log-format'])}`, { hint: 'auto: pretty on a terminal, journal lines under systemd, JSON otherwise' });
  return {
    dir: resolve(dir),
    runDir: resolve(values['run-dir'] ?? ini['run-dir'] ?? '/run/emperor'),
    logDir: resolve(values['log-dir'] ?? ini['log-dir'] ?? '/var/log/emperor'),
    tyrant: values.tyrant ?? ini.tyrant ?? false,
    cgroupParent,
    limits,
    network,
    logFormat,
    ...(ini['jail-builds'] === undefined ? {} : { jailBuilds: ini['jail-builds'] }),
  };
};
