import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { RunLock, startTime } from '@emperor/emperor/run-lock';
import { EmperorError } from '@emperor/errors';
import { callDaemon } from '../control-client.js';
import { EXIT, type Io } from '../io.js';

/** As long as the daemon gives a new emperor to adopt every jail, and a little more. */
const WAIT_MS = 130_000;

/**
 * `emperor upgrade [--run-dir DIR]`: the running emperor hands every jail over to a newly started one (the
 * code installed now) without stopping any app (SIGUSR2; docs/daemon.md, "Upgrades"). Waits until the new
 * one answers with every vassal, or the old one has taken them back.
 */
export const upgrade = async (args: string[], io: Io): Promise<number> => {
  const { values } = parseArgs({ args, options: { 'run-dir': { type: 'string' } } });
  const runDir = values['run-dir'] ?? '/run/emperor';
  // The lock names the emperor by pid and start time: a pid reused since by another process is never
  // signalled (SIGUSR2 would end it).
  const lock = join(runDir, 'emperor.pid');
  const old = RunLock.holder(lock);
  if (old === undefined) {
    throw new EmperorError('EMPEROR_ERR_CONTROL', `${lock}: expected a running emperor, got ${existsSync(lock) ? 'a lock whose process is gone' : 'none'}`, { hint: 'start it (systemctl start emperor); an upgrade needs one to hand over' });
  }
  const started = startTime(old);
  const alive = (pid: number): boolean => startTime(pid) === started;
  // The old emperor writes how it went to RUN/upgrade.json.
  const result = join(runDir, 'upgrade.json');
  rmSync(result, { force: true });
  process.kill(old, 'SIGUSR2');
  const deadline = Date.now() + WAIT_MS;
  let outcome: { from?: number; ok?: boolean; to?: number; error?: string } | undefined;
  while (Date.now() < deadline && outcome?.from !== old) {
    await new Promise((r) => setTimeout(r, 100));
    try {
      outcome = JSON.parse(readFileSync(result, 'utf8')) as typeof outcome;
    } catch {
      // not written yet
    }
  }
  if (outcome?.from !== old) throw new EmperorError('EMPEROR_ERR_CONTROL', `expected pid ${old} to hand over within ${WAIT_MS / 1000} s, got no outcome`, { hint: 'its log says what it is doing (journalctl -u emperor)' });
  if (outcome.ok !== true) throw new EmperorError('EMPEROR_ERR_CONTROL', `expected a new emperor to take over from pid ${old}, got: ${outcome.error ?? 'a failure'}`, { hint: 'the log says why the new one did not start (journalctl -u emperor); every app runs on under the old one' });
  // The new one answers once the old one is gone (it waits for the old one's word before speaking to systemd).
  while (Date.now() < deadline) {
    const r = alive(old) ? undefined : await callDaemon(runDir, 'GET', '/vassals').catch(() => undefined);
    if (r?.status === 200) {
      const vassals = JSON.parse(r.body) as Array<{ state: string }>;
      io.stdout.write(`emperor: handed over from pid ${old} to pid ${outcome.to ?? RunLock.holder(lock) ?? '?'}: ${vassals.length} vassals, ${vassals.filter((v) => v.state === 'running').length} running, none restarted\n`);
      return EXIT.ok;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new EmperorError('EMPEROR_ERR_CONTROL', `pid ${old} handed over to pid ${outcome.to}, which does not answer on ${join(runDir, 'control.sock')}`, { hint: 'journalctl -u emperor' });
};
