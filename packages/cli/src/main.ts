import { ConfigError, formatProblem } from '@emperor/config';
import { statSync } from 'node:fs';
import { isEmperorError } from '@emperor/errors';
import { check } from './commands/check.js';
import { action, logs, status } from './commands/control.js';
import { pty } from './commands/pty.js';
import { router } from './commands/router.js';
import { run } from './commands/run.js';
import { upgrade } from './commands/upgrade.js';
import { EXIT, type Io } from './io.js';
import { USAGE } from './usage.js';
import { version } from './version.js';

const COMMANDS: Record<string, (args: string[], io: Io) => Promise<number>> = {
  run,
  check,
  status,
  reload: action('reload'),
  restart: action('restart'),
  stop: action('stop'),
  start: action('start'),
  logs,
  pty,
  router,
  upgrade,
};

/**
 * Runs the CLI and returns its exit code. A user error prints one line naming what to fix; nothing a user
 * types ever produces a stack trace.
 */
export const main = async (argv: string[], io: Io): Promise<number> => {
  const [first, ...rest] = argv;
  try {
    if (first === undefined || first === '-h' || first === '--help' || first === 'help') {
      io.stdout.write(USAGE);
      return first === undefined ? EXIT.usage : EXIT.ok;
    }
    if (first === '-v' || first === '--version') {
      io.stdout.write(`emperor ${version()}\n`);
      return EXIT.ok;
    }
    // `emperor DIR` (a path, as in the systemd unit) means `emperor run DIR`.
    if (COMMANDS[first] === undefined && (first.includes('/') || first.startsWith('--') || statSync(first, { throwIfNoEntry: false })?.isDirectory())) return await run(argv, io);
    const command = COMMANDS[first];
    if (command === undefined) {
      io.stderr.write(`emperor: expected a command (${Object.keys(COMMANDS).join(', ')}), got ${JSON.stringify(first)}; see emperor --help\n`);
      return EXIT.usage;
    }
    return await command(rest, io);
  } catch (e) {
    if (e instanceof ConfigError) {
      for (const p of e.problems) io.stderr.write(`emperor: ${formatProblem(p)}\n`);
      return EXIT.usage;
    }
    if (isEmperorError(e)) {
      io.stderr.write(`emperor: ${e.describe()}\n`);
      return e.code === 'EMPEROR_ERR_USAGE' ? EXIT.usage : EXIT.problems;
    }
    // node:util parseArgs throws TypeErrors with a code for unknown or malformed options.
    const code = (e as { code?: string }).code;
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) {
      io.stderr.write(`emperor: ${(e as Error).message}; see emperor --help\n`);
      return EXIT.usage;
    }
    io.stderr.write(`emperor: internal error (EMPEROR_ERR_INTERNAL): ${e instanceof Error ? e.message : String(e)}; please report this\n`);
    return EXIT.internal;
  }
};
