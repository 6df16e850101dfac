import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { VassalSpec } from '@emperor/config';

/**
 * What an emperor knows of a vassal only in memory, kept in the run dir so the next emperor (after a
 * crash, a SIGKILL, an upgrade) goes on from it: the spec its jail was built with, its restart and failure
 * counts (so backoff and curse carry on), its last error, when it was born, and cron's last runs (so no job
 * runs twice for one minute).
 */
export interface SavedVassal {
  version: 1;
  /** {@link fingerprint} of `spec`. */
  fingerprint: string;
  /** The spec the vassal runs (a reload changes it without a new jail). */
  spec: VassalSpec;
  /** The label of the jail this state is of (the fingerprint of the spec it was built with), if it had one. */
  jail?: string;
  state: string;
  restarts: number;
  failures: number;
  lastError?: string;
  bornAt?: number;
  lastModAt?: number;
  cronLastRun: Record<string, number>;
  daemonRestarts: number[];
  /** What each touch watcher (`app`, `daemon-N`) saw last of its paths, for the next emperor's. */
  touchSeen?: Record<string, { paths: string[]; seen: string[] }>;
}

/** JSON with the infinities a spec holds (unlimited rlimits), which plain JSON turns into null. */
const INFINITY = '\u0000Infinity';
const encode = (value: unknown): string => JSON.stringify(value, (_k, v: unknown) => (v === Infinity ? INFINITY : v === -Infinity ? `-${INFINITY}` : v));
const decode = (text: string): unknown => JSON.parse(text, (_k, v: unknown) => (v === INFINITY ? Infinity : v === `-${INFINITY}` ? -Infinity : v));

/** The identity of a spec, as its JSON (key order is the parser's, so it is stable for one version). */
export const fingerprint = (spec: VassalSpec): string => createHash('sha256').update(encode(spec)).digest('hex').slice(0, 32);

/** A spec as it comes back from {@link SavedVassal} (undefined keys gone): for comparing a saved spec with a new one. */
export const asSaved = (spec: VassalSpec): VassalSpec => decode(encode(spec)) as VassalSpec;

/**
 * `RUN/state/NAME.json`, root's (0700 directory, 0600 files), outside every jail (a jail sees only its own
 * run dir). Written whole to a temporary file and renamed, so a SIGKILL never leaves half a file.
 */
export class VassalStates {
  readonly dir: string;

  constructor(runDir: string) {
    this.dir = join(runDir, 'state');
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  /** The saved state of `name`, or undefined (none, or one this version cannot read: then it starts afresh). */
  read(name: string): SavedVassal | undefined {
    try {
      const s = decode(readFileSync(join(this.dir, `${name}.json`), 'utf8')) as Partial<SavedVassal>;
      if (s.version !== 1 || typeof s.fingerprint !== 'string' || typeof s.spec !== 'object' || s.spec === null) return undefined;
      return { cronLastRun: {}, daemonRestarts: [], restarts: 0, failures: 0, state: 'stopped', ...s } as SavedVassal;
    } catch {
      return undefined;
    }
  }

  write(name: string, state: SavedVassal): void {
    const file = join(this.dir, `${name}.json`);
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, encode(state), { mode: 0o600 });
    renameSync(tmp, file);
  }

  remove(name: string): void {
    rmSync(join(this.dir, `${name}.json`), { force: true });
  }

  /** Every vassal with a saved state. */
  names(): string[] {
    try {
      return readdirSync(this.dir).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -'.json'.length));
    } catch {
      return [];
    }
  }
}
