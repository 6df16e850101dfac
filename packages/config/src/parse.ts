import { readDocument } from './formats/document.js';
import type { RawEntry, ReadResult } from './formats/entry.js';
import { readIni } from './formats/ini.js';
import { ConfigError, type ConfigProblem } from './problem.js';
import { readVassalText, vassalNameOf, type ReadOptions, type VassalFormat } from './read-file.js';
import { isMultiKey, KEYS, vassalSchema, type VassalInput, type VassalKey } from './schema.js';
import { buildSpec } from './build-spec.js';
import type { OperatorLimits } from './operator-limits.js';
import type { VassalSpec } from './spec.js';
import { didYouMean } from './suggest.js';

/** Options of the vassal file parser. */
export interface ParseOptions extends ReadOptions {
  /** Tyrant mode: uid/gid may be omitted and come from `owner`. */
  tyrant?: boolean;
  /** The file's owner (tyrant mode). */
  owner?: { uid: number; gid: number };
  /** The operator's defaults and ceilings (emperor.ini); the built-in ones when absent. */
  limits?: OperatorLimits;
}

/** The outcome of checking one file: a spec, or every problem found. */
export type CheckResult = { ok: true; spec: VassalSpec } | { ok: false; problems: ConfigProblem[] };

/** Options a uWSGI instance takes that belong to the app's own command line, not to a vassal file. */
const UWSGI_APP_OPTIONS = new Set([
  'master', 'processes', 'workers', 'threads', 'module', 'wsgi-file', 'http', 'http-socket', 'plugin', 'plugins',
  'callable', 'vacuum', 'die-on-term', 'harakiri', 'max-requests', 'virtualenv', 'venv', 'home', 'pythonpath',
  'logto', 'daemonize', 'enable-threads', 'lazy-apps', 'buffer-size', 'static-map',
]);

/** Parses vassal file text (already read) into a spec, or returns every problem. */
export const parseVassalText = (text: string, file: string, options: ParseOptions = {}): CheckResult => {
  const id = vassalNameOf(file);
  if ('code' in id) return { ok: false, problems: [id] };
  const read: ReadResult = id.format === 'ini' ? readIni(text, file, id.name) : readDocument(text, file, id.format as Exclude<VassalFormat, 'ini'>);
  if (read.problems.length > 0) return { ok: false, problems: read.problems };
  const problems: ConfigProblem[] = [];
  const { input, lines } = group(read.entries, file, problems);
  const parsed = vassalSchema.safeParse(input);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const key = String(issue.path[0] ?? '');
      const index = typeof issue.path[1] === 'number' ? issue.path[1] : undefined;
      const params = (issue as { params?: { found?: string; hint?: string } }).params ?? {};
      problems.push({
        code: 'EMPEROR_ERR_CONFIG_VALUE',
        file,
        line: lines.get(key)?.[index ?? 0],
        key: key === '' ? undefined : key,
        message: `expected ${issue.message}, got ${params.found ?? 'something else'}`,
        hint: params.hint,
      });
    }
  }
  if (problems.length > 0) return { ok: false, problems: problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0)) };
  return buildSpec(parsed.data as VassalInput, { name: id.name, file, format: id.format, lines, options });
};

/** Reads and parses one vassal file. Never throws for anything wrong with the file. */
export const checkVassalFile = async (file: string, options: ParseOptions = {}): Promise<CheckResult> => {
  const id = vassalNameOf(file);
  if ('code' in id) return { ok: false, problems: [id] };
  const read = await readVassalText(file, options);
  if ('code' in read) return { ok: false, problems: [read] };
  const owner = options.owner ?? { uid: read.uid, gid: read.gid };
  return parseVassalText(read.text, file, { ...options, owner });
};

/** Reads and parses one vassal file; throws a {@link ConfigError} listing every problem. */
export const loadVassalFile = async (file: string, options: ParseOptions = {}): Promise<VassalSpec> => {
  const r = await checkVassalFile(file, options);
  if (!r.ok) throw new ConfigError(file, r.problems);
  return r.spec;
};

/**
 * Groups entries by key: repeated multi keys (and json/yaml lists) become lists, a repeated single key is an
 * error, an unknown key is an error with a suggestion. Records the line of every value for messages.
 */
const group = (entries: RawEntry[], file: string, problems: ConfigProblem[]) => {
  const input: Record<string, unknown> = {};
  const lines = new Map<string, Array<number | undefined>>();
  const known = Object.keys(KEYS);
  for (const e of entries) {
    if (!(e.key in KEYS)) {
      const hint = UWSGI_APP_OPTIONS.has(e.key)
        ? `"${e.key}" is a uWSGI app option: put it on the app's own command line (command = uwsgi --${e.key} ...)`
        : didYouMean(e.key, known) ?? 'see docs/vassal-file.md for the keys';
      problems.push({ code: 'EMPEROR_ERR_CONFIG_UNKNOWN_KEY', file, line: e.line, key: e.key, message: `expected a vassal key, got unknown key "${e.key}"`, hint });
      continue;
    }
    const key = e.key as VassalKey;
    if (!isMultiKey(key)) {
      if (key in input) {
        problems.push({ code: 'EMPEROR_ERR_CONFIG_DUPLICATE_KEY', file, line: e.line, key, message: `expected one value, got a second one (first at line ${lines.get(key)?.[0] ?? '?'})`, hint: `${key} is single-valued; keep one` });
        continue;
      }
      input[key] = e.value;
      lines.set(key, [e.line]);
      continue;
    }
    const list = (input[key] ??= []) as unknown[];
    const keyLines = lines.get(key) ?? [];
    lines.set(key, keyLines);
    if (Array.isArray(e.value)) {
      e.value.forEach((v, i) => {
        list.push(v);
        keyLines.push(e.itemLines?.[i] ?? e.line);
      });
    } else if (key === 'env' && e.value !== null && typeof e.value === 'object') {
      for (const [k, v] of Object.entries(e.value)) {
        list.push(`${k}=${v === null ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v)}`);
        keyLines.push(e.line);
      }
    } else {
      list.push(e.value);
      keyLines.push(e.line);
    }
  }
  return { input, lines };
};
