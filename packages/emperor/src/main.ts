import { spawn } from 'node:child_process';
import { readlinkSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Socket } from 'node:net';
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
  let emperor = new Emperor({ ...settings, log });
  // Started by an emperor handing over to us (SIGUSR2, an upgrade): it waits on fd 3 for our first scan.
  let handedFrom: Socket | undefined;
  if (process.env.EMPEROR_HANDOVER_FD !== undefined) {
    try {
      handedFrom = new Socket({ fd: Number(process.env.EMPEROR_HANDOVER_FD), readable: true, writable: true });
    } catch (err) {
      // Set by hand, or inherited without its fd: a plain start.
      log.warn({ err: (err as Error).message }, `EMPEROR_HANDOVER_FD=${process.env.EMPEROR_HANDOVER_FD}: expected the socket of an emperor handing over, got none; starting on its own`);
    }
  }
  delete process.env.EMPEROR_HANDOVER_FD;
  const previous = handedFrom === undefined ? undefined : handoverPeer(handedFrom);
  // A supervisor must not die of one vassal's bad luck: a promise rejection nobody handled is a bug to log,
  // not a reason to drop every other vassal.
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection (a bug in Emperor, please report)'));
  warnOwnMountNamespace(log);
  // The watchdog from the first moment: a first scan of 500 vassals is async, the loop keeps turning. (Handed
  // over to, we are not the unit's main process before the previous emperor says so: nothing until then.)
  if (previous === undefined) systemd?.startWatchdog();
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
    process.on('SIGUSR2', () => {
      if (!started || stopping !== undefined || handingOver) return void log.info('SIGUSR2: ignored while starting, stopping or handing over');
      handingOver = true;
      void handOver().then((handed) => {
        handingOver = false;
        handedOver = handed;
        if (handed) resolve(0);
      });
    });
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
  let handingOver = false;
  let handedOver = false;
  /**
   * SIGUSR2: an upgrade. This emperor lets every jail run on (Emperor.detach), starts the installed
   * `emperor` again with the same arguments, and waits for its first scan (it adopts every jail); then it
   * tells systemd the new one is the main process (MAINPID=) and exits. A new emperor that fails or does not
   * answer within HANDOVER_TIMEOUT_MS is killed and this one takes every jail back, the same way.
   */
  const handOver = async (): Promise<boolean> => {
    log.info('SIGUSR2: handing every jail over to a new emperor (an upgrade)');
    await emperor.detach();
    const env: NodeJS.ProcessEnv = { ...process.env, EMPEROR_HANDOVER_FD: '3' };
    delete env.WATCHDOG_PID; // the watchdog is the new one's once it is the main process
    const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { stdio: ['ignore', 'inherit', 'inherit', 'pipe'], env });
    const peer = child.stdio[3] as Socket;
    const answer = await new Promise<string>((res) => {
      const timer = setTimeout(() => res(`no answer within ${HANDOVER_TIMEOUT_MS / 1000} s`), HANDOVER_TIMEOUT_MS);
      let text = '';
      peer.on('data', (d: Buffer) => {
        text += d.toString();
        if (text.includes('\n')) {
          clearTimeout(timer);
          res(text.trim());
        }
      });
      peer.on('error', () => {});
      child.on('error', (err) => res(`not started: ${err.message}`));
      child.on('exit', (code, sig) => res(`it exited (${sig ?? `code ${code}`})`));
    });
    // What `emperor upgrade` waits for (RUN/upgrade.json), whatever the outcome.
    const outcome = (o: object) => {
      try {
        writeFileSync(join(settings.runDir, 'upgrade.json'), JSON.stringify({ from: process.pid, ...o }), { mode: 0o644 });
      } catch (err) {
        log.warn({ err }, 'the outcome of the upgrade could not be written');
      }
    };
    if (answer === 'ready' && child.pid !== undefined) {
      systemd?.mainPid(child.pid);
      peer.end('main\n');
      outcome({ ok: true, to: child.pid });
      log.info({ pid: child.pid }, `handed over to the new emperor (pid ${child.pid})`);
      child.unref();
      peer.unref();
      return true;
    }
    log.error({ answer }, `the new emperor did not take over (${answer}); taking every jail back`);
    child.kill('SIGKILL');
    await new Promise((r) => (child.exitCode === null && child.signalCode === null ? child.once('exit', r) : r(undefined)));
    emperor = new Emperor({ ...settings, log });
    watch(emperor);
    await emperor.start();
    await emperor.firstScan();
    systemd?.ready(emperor.counts());
    outcome({ ok: false, error: `the new emperor did not take over (${answer}); this one took every jail back` });
    return false;
  };
  const watch = (e: Emperor) => e.bus.on('event', () => {
    if (started && e === emperor) systemd?.status(e.counts());
  });
  watch(emperor);
  try {
    await emperor.start();
    const stopExtending = previous === undefined ? systemd?.extendWhile(() => JSON.stringify(emperor.counts())) : undefined;
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
    if (previous !== undefined) {
      // The previous emperor names us the main process, then exits; only then do we speak to systemd.
      await previous.ready();
      systemd?.startWatchdog();
    }
    systemd?.ready(emperor.counts());
    log.info({ counts: emperor.counts() }, 'first scan done');
  }
  const code = await done;
  systemd?.close();
  // Handed over: nothing of ours is left to wait for; what could still hold the loop (a socket the new
  // emperor inherited) must not keep this process, whose exit systemd may be waiting for.
  if (handedOver) setTimeout(() => process.exit(code), 200);
  return code;
};

/** How long a new emperor has to adopt every jail in an upgrade before the old one takes them back. */
const HANDOVER_TIMEOUT_MS = 120_000;

/**
 * The emperor that handed over to us, on `sock`: we say `ready` after our first scan; it answers `main`
 * once systemd knows we are the main process (or it is gone: then there is nobody else anyway).
 */
const handoverPeer = (sock: Socket) => ({
  ready: () => new Promise<void>((resolve) => {
    sock.on('data', (d: Buffer) => {
      if (d.toString().includes('main')) resolve();
    });
    sock.on('close', () => resolve());
    sock.on('error', () => resolve());
    sock.write('ready\n');
  }).finally(() => sock.destroy()),
});

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
