import { EmperorError, type ErrorCode } from '@emperor/errors';

/** One thing wrong with one vassal file: where, which key, what was expected and found, how to fix it. */
export interface ConfigProblem {
  code: ErrorCode;
  file: string;
  /** 1-based line, where the format allows it. */
  line?: number | undefined;
  key?: string | undefined;
  /** "expected ..., got ..." or a sentence of the same shape. */
  message: string;
  hint?: string | undefined;
}

/** `FILE:LINE: KEY: expected ..., got ... (hint)`: the one line a user sees per problem. */
export const formatProblem = (p: ConfigProblem): string => {
  const where = p.line === undefined ? p.file : `${p.file}:${p.line}`;
  const key = p.key === undefined ? '' : `${p.key}: `;
  const hint = p.hint === undefined ? '' : ` (${p.hint})`;
  return `${where}: ${key}${p.message}${hint}`;
};

/** A vassal file that cannot be used; `problems` lists everything found wrong, not just the first. */
export class ConfigError extends EmperorError {
  readonly file: string;
  readonly problems: readonly ConfigProblem[];

  constructor(file: string, problems: readonly ConfigProblem[], options: { cause?: unknown } = {}) {
    const first = problems[0];
    if (first === undefined) throw new TypeError('ConfigError needs at least one problem');
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : '';
    super(first.code, formatProblem(first) + more, { hint: first.hint, cause: options.cause });
    this.name = 'ConfigError';
    this.file = file;
    this.problems = problems;
  }
}
