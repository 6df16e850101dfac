import { parseArgs } from 'node:util';
import { EmperorError, isEmperorError } from '@emperor/errors';
import pino from 'pino';
import { runRouter, type RouterConfig } from './run.js';
import { ALGOS, type Algo } from './table.js';

const int = (v: string | undefined, name: string, min: number, max: number, dflt: number): number => {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < min || n > max) throw new EmperorError('EMPEROR_ERR_USAGE', `--${name}: expected a whole number from ${min} to ${max}, got ${JSON.stringify(v)}`);
  return n;
};

/** `emperor router ...`: parses the command line (docs/router.md). */
export const parseRouterArgs = (argv: string[], log: RouterConfig['log']): RouterConfig => {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      http: { type: 'string', multiple: true },
      'subscription-server': { type: 'string', multiple: true },
      stats: { type: 'string' },
      'emperor-socket': { type: 'string' },
      'no-bootstrap': { type: 'boolean' },
      'subscription-tolerance': { type: 'string' },
      'subscription-algo': { type: 'string' },
      'subscription-mountpoints': { type: 'string' },
      'fallback-key': { type: 'string' },
      'sign-check': { type: 'string' },
      'sign-required': { type: 'boolean' },
      'sign-tolerance': { type: 'string' },
      'max-keys': { type: 'string' },
      'max-nodes-per-key': { type: 'string' },
      'trust-forwarded': { type: 'boolean' },
      'node-timeout': { type: 'string' },
    },
  });
  if (positionals.length > 0) throw new EmperorError('EMPEROR_ERR_USAGE', `emperor router: expected only --options, got ${JSON.stringify(positionals[0])}`, { hint: 'emperor router --http :80 --subscription-server 127.0.0.1:2626' });
  const http = values.http ?? [];
  const subs = values['subscription-server'] ?? [];
  if (http.length === 0) throw new EmperorError('EMPEROR_ERR_USAGE', 'emperor router: expected at least one --http HOST:PORT (or a unix path), got none');
  if (subs.length === 0) throw new EmperorError('EMPEROR_ERR_USAGE', 'emperor router: expected at least one --subscription-server HOST:PORT, got none');
  const algoText = values['subscription-algo'] ?? 'wrr';
  const algo = ALGOS.find((a) => a === algoText);
  if (algo === undefined) throw new EmperorError('EMPEROR_ERR_USAGE', `--subscription-algo: expected one of ${ALGOS.join(', ')}, got ${JSON.stringify(algoText)}`);
  let sign: RouterConfig['sign'];
  if (values['sign-check'] !== undefined) {
    const m = /^([A-Za-z0-9-]+):(\/.*)$/.exec(values['sign-check']);
    if (m?.[1] === undefined || m[2] === undefined) throw new EmperorError('EMPEROR_ERR_USAGE', `--sign-check: expected DIGEST:/dir like SHA256:/etc/emperor/keys, got ${JSON.stringify(values['sign-check'])}`);
    sign = { digest: m[1], dir: m[2], required: values['sign-required'] ?? false, toleranceS: int(values['sign-tolerance'], 'sign-tolerance', 1, 86_400, 300) };
  } else if (values['sign-required']) {
    throw new EmperorError('EMPEROR_ERR_USAGE', '--sign-required: expected --sign-check DIGEST:DIR with it (where the public keys are), got none');
  }
  return {
    http, subscriptionServers: subs, ...(values.stats ? { stats: values.stats } : {}),
    ...(values['no-bootstrap'] ? {} : { emperorSocket: values['emperor-socket'] ?? '/run/emperor/control.sock' }),
    toleranceMs: int(values['subscription-tolerance'], 'subscription-tolerance', 1, 3_600, 17) * 1000,
    algo: algo as Algo, mountpoints: int(values['subscription-mountpoints'], 'subscription-mountpoints', 0, 16, 0),
    ...(values['fallback-key'] ? { fallbackKey: values['fallback-key'].toLowerCase() } : {}), ...(sign ? { sign } : {}),
    maxKeys: int(values['max-keys'], 'max-keys', 1, 10_000_000, 100_000), maxNodesPerKey: int(values['max-nodes-per-key'], 'max-nodes-per-key', 1, 10_000, 64),
    trustForwarded: values['trust-forwarded'] ?? false, headTimeoutMs: int(values['node-timeout'], 'node-timeout', 1, 3_600, 60) * 1000, log,
  };
};

/** Runs the router until SIGTERM/SIGINT; returns the exit code. */
export const routerMain = async (argv: string[]): Promise<number> => {
  const logger = pino({ base: { component: 'router' } });
  const log: RouterConfig['log'] = (level, msg, detail) => logger[level](detail, msg);
  let config: RouterConfig;
  try {
    config = parseRouterArgs(argv, log);
  } catch (e) {
    if (isEmperorError(e) || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`emperor: ${isEmperorError(e) ? e.describe() : (e as Error).message}\n`);
      return 64;
    }
    throw e;
  }
  let running;
  try {
    running = await runRouter(config);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    process.stderr.write(`emperor: router: ${isEmperorError(e) ? e.describe() : `${err.code ?? ''} ${err.message}`}\n`);
    return isEmperorError(e) && e.code === 'EMPEROR_ERR_USAGE' ? 64 : 1;
  }
  process.on('unhandledRejection', (err) => logger.error({ err }, 'unhandled rejection (a bug in Emperor, please report)'));
  logger.info({ http: config.http, ports: running.httpPorts, subscriptionServers: config.subscriptionServers, udpPorts: running.udpPorts, bootstrapped: running.bootstrapped }, 'router ready');
  return new Promise((resolve) => {
    const stop = (signal: string): void => {
      logger.info({ signal }, 'router stopping');
      void running.close().then(() => resolve(0));
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
};
