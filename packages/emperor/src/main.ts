import { statSync } from 'node:fs';
import { ConfigError, formatProblem } from '@emperor/config';
import { isEmperorError, EmperorError } from '@emperor/errors';
import { pino, transport } from 'pino';
import { Emperor } from './emperor.js';
import { parseDaemonArgs } from './options.js';

/** The daemon's entry: runs in the foreground until SIGTERM/SIGINT; SIGHUP reloads every vassal. */
export const runDaemon = async (argv: string[]): Promise<number> => {
  let settings;
  try {
    settings = parseDaemonArgs(argv);
    if (!statSync(settings.dir, { throwIfNoEntry: false })?.isDirectory()) {
      throw new EmperorError('EMPEROR_ERR_USAGE', `${settings.dir}: expected a directory of vassal files, got ${statSync(settings.dir, { throwIfNoEntry: false }) ? 'a file' : 'nothing'}`, { hint: 'mkdir it, or name the right directory' });
    }
    if (process.getuid?.() !== 0) throw new EmperorError('EMPEROR_ERR_USAGE', 'expected to run as root (jails need it), got an unprivileged user', { hint: 'run it from its systemd unit, or with sudo' });
  } catch (e) {
    if (e instanceof ConfigError) {
      // emperor.ini: every problem, one line each, as `emperor check` prints them.
      for (const p of e.problems) process.stderr.write(`emperor: ${formatProblem(p)}\n`);
      return 64;
    }
    if (isEmperorError(e) || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`emperor: ${isEmperorError(e) ? e.describe() : (e as Error).message}\n`);
      return 64;
    }
    throw e;
  }
  const log = pino(
    { name: 'emperor', base: { pid: process.pid } },
    process.stdout.isTTY ? transport({ target: 'pino-pretty', options: { colorize: true } }) : undefined,
  );
  const emperor = new Emperor({ ...settings, log });
  // A supervisor must not die of one vassal's bad luck: a promise rejection nobody handled is a bug to log,
  // not a reason to drop every other vassal.
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection (a bug in Emperor, please report)'));
  let stopping: Promise<void> | undefined;
  const done = new Promise<number>((resolve) => {
    const stop = (signal: string) => {
      log.info({ signal }, 'stopping every vassal');
      stopping ??= emperor.stop().then(() => resolve(0), (err: unknown) => {
        log.error({ err }, 'stop failed');
        resolve(1);
      });
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => {
      log.info('SIGHUP: reloading every vassal');
      void emperor.reloadAll();
    });
  });
  try {
    await emperor.start();
  } catch (e) {
    log.error({ err: e }, 'emperor failed to start');
    await emperor.stop();
    return 1;
  }
  return done;
};
