import { request } from 'node:http';
import { join } from 'node:path';
import { EmperorError } from '@emperor/errors';

/** One request to the daemon's control socket; the body parsed as JSON (or the raw text for logs). */
export const callDaemon = (runDir: string, method: 'GET' | 'POST', path: string): Promise<{ status: number; body: string }> =>
  new Promise((resolve, reject) => {
    const socketPath = join(runDir, 'control.sock');
    const req = request({ socketPath, method, path }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', (e: NodeJS.ErrnoException) => {
      reject(new EmperorError('EMPEROR_ERR_CONTROL', `expected the emperor's control socket at ${socketPath}, got ${e.code ?? e.message}`, { hint: 'is the emperor running? pass --run-dir if it uses another run dir' }));
    });
    req.end();
  });

/** Streams a response (logs -f, events) to a writer until the daemon or the user ends it. */
export const streamDaemon = (runDir: string, path: string, write: (s: string) => void): Promise<void> =>
  new Promise((resolve, reject) => {
    const socketPath = join(runDir, 'control.sock');
    const req = request({ socketPath, method: 'GET', path }, (res) => {
      res.setEncoding('utf8');
      res.on('data', (d: string) => write(d));
      res.on('end', () => resolve());
    });
    req.on('error', (e: NodeJS.ErrnoException) => reject(new EmperorError('EMPEROR_ERR_CONTROL', `expected the emperor's control socket at ${socketPath}, got ${e.code ?? e.message}`, { hint: 'is the emperor running?' })));
    req.end();
  });
