import { parseArgs } from 'node:util';
import { builtinLimits, checkVassalFile, formatProblem, readEmperorIni, type CheckResult } from '@emperor/config';
import { EmperorError } from '@emperor/errors';
import { EXIT, type Io } from '../io.js';

/**
 * `emperor check [--json] [--tyrant] [--config emperor.ini] FILE...`: one line per problem; exit 0 only when
 * all are good. With --config, the operator's defaults and ceilings apply as the daemon would apply them.
 */
export const check = async (args: string[], io: Io): Promise<number> => {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { json: { type: 'boolean', default: false }, tyrant: { type: 'boolean', default: false }, config: { type: 'string' } },
  });
  const ini = values.config === undefined ? undefined : readEmperorIni(values.config);
  const limits = ini?.limits ?? builtinLimits();
  const tyrant = values.tyrant || ini?.settings.tyrant === true;
  if (positionals.length === 0) throw new EmperorError('EMPEROR_ERR_USAGE', 'check: expected at least one vassal file, got none', { hint: 'emperor check /etc/uwsgi/vassals/*' });
  const results: Array<{ file: string; result: CheckResult }> = [];
  for (const file of positionals) {
    results.push({ file, result: await checkVassalFile(file, { tyrant, noFollow: tyrant, limits }) });
  }
  if (values.json) {
    const out = results.map(({ file, result }) =>
      result.ok ? { file, ok: true, spec: result.spec } : { file, ok: false, problems: result.problems.map((p) => ({ ...p, text: formatProblem(p) })) },
    );
    // Infinity (an unlimited rlimit) has no JSON form: it reads "unlimited".
    io.stdout.write(`${JSON.stringify(out, (_k, v: unknown) => (v === Infinity ? 'unlimited' : v), 2)}\n`);
  } else {
    for (const { file, result } of results) {
      if (result.ok) io.stdout.write(`${file}: ok (vassal ${result.spec.name})\n`);
      else for (const p of result.problems) io.stderr.write(`${formatProblem(p)}\n`);
    }
  }
  return results.every((r) => r.result.ok) ? EXIT.ok : EXIT.problems;
};
