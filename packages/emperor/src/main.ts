import { readlinkSync, statSync } from 'node:fs';
import { ConfigError, formatProblem } from '@emperor/config';
import { isEmperorError, EmperorError } from '@emperor/errors';
import { Emperor } from './emperor.js';
import { chooseLogFormat, createLogger } from './log-format.js';
import { parseDaemonArgs } from './options.js';
import { ServiceManager } from './service-manager.js';

/**
 * The daemon's entry: runs in the foreground until SIGTERM/SIGINT; SIGHUP reloads every vassal. Under
 * systemd (`Type=notify`) it says READY=1 once the first scan has started or failed every vassal, keeps
 * STATUS= current, and pings the watchdog (docs/daemon.md).
 */
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
  const log = createLogger(chooseLogFormat(settings.logFormat));
  let systemd: ServiceManager | undefined;
  try {
    systemd = ServiceManager.fromEnvironment();
  } catch (e) {
    if (!isEmperorError(e)) throw e;
    log.error({ code: e.code, hint: e.hint }, `emperor failed to start: ${e.message}`);
    return 1;
  }
  const emperor = new Emperor({ ...settings, log });
  // A supervisor must not die of one vassal's bad luck: a promise rejection nobody handled is a bug to log,
  // not a reason to drop every other vassal.
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection (a bug in Emperor, please report)'));
  warnOwnMountNamespace(log);
  // The watchdog from the first moment: a first scan of 500 vassals is async, the loop keeps turning.
  systemd?.startWatchdog();
  let started = false;
  let stopping: Promise<void> | undefined;
  const done = new Promise<number>((resolve) => {
    const stop = (signal: string) => {
      log.info({ signal }, 'stopping every vassal');
      systemd?.stopping(emperor.vassals.size);
      stopping ??= emperor.stop().then(() => resolve(0), (err: unknown) => {
        log.error({ err }, 'stop failed');
        resolve(1);
      });
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    let reloading: Promise<void> | undefined;
    process.on('SIGHUP', () => {
      if (!started || stopping !== undefined) return void log.info('SIGHUP: ignored while starting or stopping');
      log.info('SIGHUP: reloading every vassal');
      systemd?.reloading();
      // A second SIGHUP while one runs is the same reload (systemd sends one per `systemctl reload`).
      reloading ??= emperor.reloadAll().finally(() => {
        reloading = undefined;
        if (stopping === undefined) systemd?.ready(emperor.counts());
      });
    });
  });
  emperor.bus.on('event', () => {
    if (started) systemd?.status(emperor.counts());
  });
  try {
    await emperor.start();
    const stopExtending = systemd?.extendWhile(() => JSON.stringify(emperor.counts()));
    await emperor.firstScan().finally(stopExtending);
  } catch (e) {
    if (isEmperorError(e)) log.error({ code: e.code, hint: e.hint }, `emperor failed to start: ${e.message}`);
    else log.error({ err: e }, 'emperor failed to start');
    await emperor.stop();
    systemd?.close();
    return 1;
  }
  started = true;
  if (stopping === undefined) {
    systemd?.ready(emperor.counts());
    log.info({ counts: emperor.counts() }, 'first scan done');
  }
  const code = await done;
  systemd?.close();
  return code;
};

/**
 * The vassals' run dirs are tmpfs mounts the emperor makes: in a mount namespace of its own (a unit with
 * ProtectSystem=, PrivateTmp=, ProtectHome= and the like sets one up), they, and the apps' sockets in them,
 * are not seen outside it, so a web server outside cannot reach any app. Said once at start, loudly.
 */
const warnOwnMountNamespace = (log: { error: (o: object, m: string) => void }): void => {
  let ours: string;
  let init: string;
  try {
    ours = readlinkSync('/proc/self/ns/mnt');
    init = readlinkSync('/proc/1/ns/mnt');
  } catch {
    return; // no /proc/1 to compare with (a pid namespace of ours): nothing to say
  }
  if (ours === init) return;
  log.error({ ours, init }, 'the emperor runs in a mount namespace of its own, not PID 1\'s: the run dirs it mounts (and every app socket in them) are invisible outside it, so a web server outside cannot reach the apps; remove ProtectSystem=, ProtectHome=, PrivateTmp=, ProtectKernel*= and other mount options from its unit (docs/operations.md)');
};
