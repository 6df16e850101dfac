import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { EmperorError } from '@emperor/errors';
import { callDaemon, streamDaemon } from '../control-client.js';
import { EXIT, type Io } from '../io.js';
import { printable } from '../printable.js';

const runDirOption = { 'run-dir': { type: 'string' } } as const;

/**
 * The emperor's run dir, or, inside a vassal's jail (where /run is the vassal's own run dir), the customer's
 * control socket at /run/control.sock.
 */
const defaultRunDir = (): string =>
  !existsSync('/run/emperor/control.sock') && existsSync('/run/control.sock') ? '/run' : '/run/emperor';

interface View {
  name: string;
  state: string;
  pid: number | null;
  restarts: number;
  lastError: string | null;
  usage: { memoryBytes: number; cpuUsageUsec: number; pids: number; oomKills: number } | null;
  net?: { address: string; txBytes: number; rxBytes: number; refused: number } | null;
}

const size = (bytes: number): string => (bytes < 1024 ? `${bytes}B` : bytes < 1048576 ? `${(bytes / 1024).toFixed(1)}K` : bytes < 1073741824 ? `${(bytes / 1048576).toFixed(1)}M` : `${(bytes / 1073741824).toFixed(2)}G`);

const table = (views: View[]): string => {
  // A NET column (address, bytes sent/received, refused attempts) once any vassal has a network.
  const withNet = views.some((v) => v.net);
  const rows = [['NAME', 'STATE', 'PID', 'RESTARTS', 'MEMORY', 'PIDS', ...(withNet ? ['NET (TX/RX, REFUSED)'] : []), 'LAST ERROR']];
  for (const v of views) {
    const net = v.net ? `${v.net.address} ${size(v.net.txBytes)}/${size(v.net.rxBytes)}, ${v.net.refused}` : '-';
    // The last error can hold what a customer's program printed: never raw to a terminal.
    rows.push([v.name, v.state, String(v.pid ?? '-'), String(v.restarts), v.usage ? `${(v.usage.memoryBytes / 1048576).toFixed(1)}M` : '-', v.usage ? String(v.usage.pids) : '-', ...(withNet ? [net] : []), printable(v.lastError ?? '')]);
  }
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return `${rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd()).join('\n')}\n`;
};

const fail = (status: number, body: string): never => {
  let msg = body.trim();
  try {
    msg = (JSON.parse(body) as { error?: string }).error ?? msg;
  } catch {
    // not JSON: show as is
  }
  throw new EmperorError(status === 404 ? 'EMPEROR_ERR_NO_VASSAL' : 'EMPEROR_ERR_CONTROL', status === 404 || status === 403 ? msg : `the emperor answered ${status}: ${msg}`);
};

/** `emperor status [NAME] [--json] [--run-dir DIR]` */
export const status = async (args: string[], io: Io): Promise<number> => {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { ...runDirOption, json: { type: 'boolean', default: false } } });
  const name = positionals[0];
  const r = await callDaemon((values['run-dir'] ?? defaultRunDir()), 'GET', name === undefined ? '/vassals' : `/vassals/${encodeURIComponent(name)}`);
  if (r.status !== 200) return fail(r.status, r.body);
  const data = JSON.parse(r.body) as View | View[];
  io.stdout.write(values.json ? `${JSON.stringify(data, null, 2)}\n` : table(Array.isArray(data) ? data : [data]));
  return EXIT.ok;
};

/** `emperor reload|restart|stop|start NAME [--run-dir DIR]` */
export const action = (verb: 'reload' | 'restart' | 'stop' | 'start') => async (args: string[], io: Io): Promise<number> => {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: runDirOption });
  const name = positionals[0];
  if (name === undefined || positionals.length > 1) throw new EmperorError('EMPEROR_ERR_USAGE', `${verb}: expected one vassal name, got ${positionals.length}`, { hint: `emperor ${verb} alice` });
  const r = await callDaemon((values['run-dir'] ?? defaultRunDir()), 'POST', `/vassals/${encodeURIComponent(name)}/${verb}`);
  if (r.status !== 200 && r.status !== 202) return fail(r.status, r.body);
  const v = JSON.parse(r.body) as View;
  io.stdout.write(`${v.name}: ${v.state}${v.lastError ? ` (${printable(v.lastError)})` : ''}\n`);
  return EXIT.ok;
};

/** `emperor logs NAME [-f] [--run-dir DIR]` */
export const logs = async (args: string[], io: Io): Promise<number> => {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { ...runDirOption, follow: { type: 'boolean', short: 'f', default: false } } });
  const name = positionals[0];
  if (name === undefined) throw new EmperorError('EMPEROR_ERR_USAGE', 'logs: expected a vassal name, got none', { hint: 'emperor logs alice -f' });
  const path = `/vassals/${encodeURIComponent(name)}/logs${values.follow ? '?follow=1' : ''}`;
  // Logs are the customer's bytes: escaped on a terminal, unchanged into a pipe or a file (grep, less -R).
  const safe = (s: string): string => (io.stdout.isTTY === true ? printable(s, { newlines: true }) : s);
  if (!values.follow) {
    const r = await callDaemon((values['run-dir'] ?? defaultRunDir()), 'GET', path);
    if (r.status !== 200) return fail(r.status, r.body);
    io.stdout.write(safe(r.body));
    return EXIT.ok;
  }
  await streamDaemon((values['run-dir'] ?? defaultRunDir()), path, (s) => io.stdout.write(safe(s)));
  return EXIT.ok;
};
