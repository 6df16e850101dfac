import { parseArgs } from 'node:util';
import { findPtySocket, runClient } from '@emperor/pty';
import type { Io } from '../io.js';

/**
 * `emperor pty [--run-dir DIR] [--vassal NAME]`: sshd's ForceCommand. Run as the customer; enters that
 * user's vassal: a login shell on a pty, or SSH_ORIGINAL_COMMAND (scp, rsync, git) over plain pipes.
 * Exits with the remote status.
 */
export const pty = async (args: string[], _io: Io): Promise<number> => {
  const { values } = parseArgs({ args, options: { 'run-dir': { type: 'string', default: '/run/emperor' }, vassal: { type: 'string' } } });
  const uid = process.getuid?.() ?? 0;
  const socket = findPtySocket(values['run-dir'], uid, values.vassal ?? process.env.EMPEROR_VASSAL);
  const command = process.env.SSH_ORIGINAL_COMMAND;
  return runClient(socket, command === undefined || command === '' ? undefined : command);
};
