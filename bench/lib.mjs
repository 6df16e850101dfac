// What the benchmarks share: a clock, a sleep, one HTTP request over a unix socket.
import { request } from 'node:http';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const now = () => performance.now();

/** One GET / over the unix socket `sock`: true for a 200, false for anything else (errors, timeouts). */
export const ping = (sock, timeoutMs = 2000) =>
  new Promise((resolve) => {
    const req = request({ socketPath: sock, path: '/', agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200));
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
