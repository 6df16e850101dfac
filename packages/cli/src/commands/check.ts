import { parseArgs } from 'node:util';
import { checkVassalFile, formatProblem, type CheckResult } from '@emperor/config';
import { EmperorError } from '@emperor/errors';
import { EXIT, type Io } from '../io.js';

/** `emperor check [--json] [--tyrant] FILE...`: one line per problem; exit 0 only when all are good. */
export const check = async (args: string[], io: Io): Promise<number> => {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { json: { type: 'boolean', default: false }, tyrant: { type: 'boolean', default: false } },
  });
  if (positionals.length === 0) throw new EmperorError('EMPEROR_ERR_USAGE', 'check: expected at least one vassal file, got none', { hint: 'emperor check /etc/uwsgi/vassals/*' });
  const results: Array<{ file: string; result: CheckResult }> = [];
  for (const file of positionals) {
    results.push({ file, result: await checkVassalFile(file, { tyrant: values.tyrant, noFollow: values.tyrant }) });
  }
  if (values.json) {
    const out = results.map(({ file, result }) =>
      result.ok ? { file, ok: true, spec: result.spec } : { file, ok: false, problems: result.problems.map((p) => ({ ...p, text: formatProblem(p) })) },
    );
    io.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  } else {
    for (const { file, result } of results) {
      if (result.ok) io.stdout.write(`${file}: ok (vassal ${result.spec.name})\n`);
      else for (const p of result.problems) io.stderr.write(`${formatProblem(p)}\n`);
    }
  }
  return results.every((r) => r.result.ok) ? EXIT.ok : EXIT.problems;
};
