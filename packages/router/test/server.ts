import { execFileSync } from 'node:child_process';
import { createPrivateKey, createSign, generateKeyPairSync } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { encodeBody, encodeHeader } from '../src/packet.js';
import { loadSigner, SubscriptionServer, SubscriptionTable, subscriptionPacket, type NodeAnnouncement } from '../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'emperor-sign-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

// Keys made the way uWSGI's docs say: `openssl genrsa`, the public half exported as PEM.
execFileSync('openssl', ['genrsa', '-out', join(dir, 'rsa.key'), '2048'], { stdio: 'ignore' });
execFileSync('openssl', ['rsa', '-in', join(dir, 'rsa.key'), '-pubout', '-out', join(dir, 'keys-rsa.pem')], { stdio: 'ignore' });
const ed = generateKeyPairSync('ed25519');
writeFileSync(join(dir, 'ed.key'), ed.privateKey.export({ type: 'pkcs8', format: 'pem' }));
const keys = join(dir, 'keys');
execFileSync('mkdir', ['-p', keys]);
execFileSync('cp', [join(dir, 'keys-rsa.pem'), join(keys, 'rsa.test.pem')]);
writeFileSync(join(keys, 'ed.test_8080.pem'), ed.publicKey.export({ type: 'spki', format: 'pem' })); // key ed.test:8080

const node = (key: string, address = '/run/n.sock'): NodeAnnouncement => ({ key, address, modifier1: 0, modifier2: 0, cores: 1, load: 0, weight: 1, backup: 0, proto: 'http', algo: undefined, vassal: undefined });
const now = () => Math.floor(Date.now() / 1000);

/** A packet signed as uWSGI's `subscribe-to ...,SHA1:key.pem` signs it: body only, header left out. */
const uwsgiSigned = (cmd: number, pairs: Array<[string, string]>, unix: number, keyFile: string): Buffer => {
  const body = encodeBody([...pairs, ['unix', String(unix)]]);
  const s = createSign('sha1');
  s.update(body);
  const sig = s.sign(createPrivateKey(execFileSync('cat', [keyFile])));
  const all = Buffer.concat([body, encodeBody([['sign', sig]])]);
  return Buffer.concat([encodeHeader(224, all.length, cmd), all]);
};

const setup = (required = false) => {
  const table = new SubscriptionTable();
  const server = new SubscriptionServer({ table, sign: { dir: keys, digest: 'SHA1', required, toleranceS: 300 } });
  return { table, server };
};

t.test('uWSGI-signed (RSA, body only) packets are accepted; tampered, replayed and stale ones refused and counted', async (t) => {
  const { table, server } = setup();
  const pairs: Array<[string, string]> = [['key', 'rsa.test'], ['address', '/run/a.sock'], ['modifier1', '0']];
  const u = now();
  t.equal(server.handle(uwsgiSigned(0, pairs, u, join(dir, 'rsa.key')), 'test'), 'subscribed');
  t.equal(server.handle(uwsgiSigned(0, pairs, u, join(dir, 'rsa.key')), 'test'), 'replayed', 'the same packet again');
  t.equal(server.handle(uwsgiSigned(0, pairs, u + 10, join(dir, 'rsa.key')), 'test'), 'refreshed', 'the next one (a larger unix)');
  const tampered = uwsgiSigned(0, [['key', 'rsa.test'], ['address', '/run/b.sock'], ['modifier1', '0']], u + 20, join(dir, 'rsa.key'));
  tampered[tampered.indexOf('/run/b.sock') + 5] = 'x'.charCodeAt(0); // /run/x.sock: the signature no longer covers it
  t.equal(server.handle(tampered, 'test'), 'bad-signature');
  t.equal(server.handle(uwsgiSigned(0, pairs, u - 3600, join(dir, 'rsa.key')), 'test'), 'stale', 'an hour old');
  t.equal(server.handle(subscriptionPacket(0, node('rsa.test', '/run/evil.sock')), 'test'), 'unsigned', 'a key with a public key must be signed');
  // uWSGI's replay bug: an unsubscribe is checked too here (a captured one cannot be sent again later).
  const unsub = uwsgiSigned(1, pairs, u + 30, join(dir, 'rsa.key'));
  t.equal(server.handle(unsub, 'test'), 'unsubscribed');
  t.equal(table.get('rsa.test'), undefined);
  t.equal(server.handle(uwsgiSigned(0, pairs, u + 31, join(dir, 'rsa.key')), 'test'), 'subscribed');
  t.equal(server.handle(unsub, 'test'), 'replayed', 'the captured unsubscribe replayed: refused, the node stays');
  t.ok(table.node('rsa.test', '/run/a.sock'));
  t.same({ bad: server.counters.refused['bad-signature'], replayed: server.counters.refused.replayed, stale: server.counters.refused.stale, unsigned: server.counters.refused.unsigned }, { bad: 1, replayed: 2, stale: 1, unsigned: 1 });
  table.close();
});

t.test('emperor-signed packets cover the header: a subscribe cannot be turned into an unsubscribe (ed25519 and RSA)', async (t) => {
  const { table, server } = setup();
  for (const [key, file] of [['ed.test:8080', 'ed.key'], ['rsa.test', 'rsa.key']] as const) {
    const signer = loadSigner(join(dir, file), 'SHA1');
    const u = now() + 100;
    const sub = subscriptionPacket(0, node(key), { signer, unix: u });
    t.equal(server.handle(sub, 'test'), 'subscribed', `${key}: signed by the emperor's scheme`);
    // Flip modifier2 to 1 and give it a fresh unix: the attacker cannot, the unix is signed; keep it: replay.
    const flipped = Buffer.from(subscriptionPacket(0, node(key), { signer, unix: u + 1 }));
    flipped[3] = 1;
    t.equal(server.handle(flipped, 'test'), 'bad-signature', `${key}: the header is signed`);
    t.ok(table.node(key, '/run/n.sock'), `${key}: still subscribed`);
    t.equal(server.handle(subscriptionPacket(1, node(key), { signer, unix: u + 2 }), 'test'), 'unsubscribed');
  }
  // ed25519 has no uWSGI scheme: a body-only signature with it is refused.
  const body = encodeBody([['key', 'ed.test:8080'], ['address', '/x'], ['unix', String(now())]]);
  const { sign } = await import('node:crypto');
  const sig = sign(null, body, ed.privateKey);
  const all = Buffer.concat([body, encodeBody([['sign', sig]])]);
  t.equal(server.handle(Buffer.concat([encodeHeader(224, all.length, 0), all]), 'test'), 'bad-signature');
  table.close();
});

t.test('sign required: a key without a public key is refused; without it such keys are open', async (t) => {
  const open = setup(false);
  t.equal(open.server.handle(subscriptionPacket(0, node('nokey.test')), 'test'), 'subscribed');
  const strict = setup(true);
  t.equal(strict.server.handle(subscriptionPacket(0, node('nokey.test')), 'test'), 'unsigned');
  t.equal(strict.table.size, 0);
  open.table.close();
  strict.table.close();
});

t.test('a flood of garbage over real UDP: counted, logged at most once per reason per 10 s, memory bounded, still serving', async (t) => {
  const table = new SubscriptionTable({ maxKeys: 1000 });
  const logs: string[] = [];
  const server = new SubscriptionServer({ table, log: (l, m) => l === 'warn' && logs.push(m) });
  const port = await server.listenUdp('127.0.0.1', 0);
  const client = createSocket('udp4');
  const send = (b: Buffer) => new Promise<void>((r) => client.send(b, port, '127.0.0.1', () => r()));
  server.handle(subscriptionPacket(0, node('real.test')), 'test', Date.now() - 5_000);
  const seenBefore = table.node('real.test', '/run/n.sock')?.lastCheck ?? 0;
  const heapBefore = process.memoryUsage().heapUsed;
  const N = 20_000;
  let x = 12345;
  const rnd = () => (x = (x * 1103515245 + 12345) & 0x7fffffff);
  for (let i = 0; i < N; i++) {
    const kind = i % 4;
    let b: Buffer;
    if (kind === 0) b = Buffer.from(Array.from({ length: rnd() % 200 }, () => rnd() & 255)); // noise
    else if (kind === 1) b = Buffer.concat([encodeHeader(224, 10, 0), Buffer.from([255, 255, 1, 2])]); // lying size
    else if (kind === 2) b = subscriptionPacket(0, node(`flood${i}.test`)); // new keys past the cap
    else b = Buffer.concat([encodeHeader(1, 4, 0), Buffer.from([0, 0, 0, 0])]); // not a subscription
    await send(b);
    if (i % 500 === 0) await new Promise((r) => setImmediate(r));
  }
  // UDP may drop some of the flood (the kernel's buffer): the one that matters is sent until it lands.
  const t0 = Date.now();
  while ((table.node('real.test', '/run/n.sock')?.lastCheck ?? 0) <= seenBefore && Date.now() - t0 < 10_000) {
    await send(subscriptionPacket(0, node('real.test')));
    await new Promise((r) => setTimeout(r, 50));
  }
  const c = server.counters;
  const accounted = c.subscribed + c.refreshed + c.unsubscribed + Object.values(c.refused).reduce((a, b) => a + b, 0);
  t.equal(accounted, c.received, `every datagram received (${c.received}) was applied or counted as refused`);
  t.ok(table.size <= 1000, `the key cap holds (${table.size} keys)`);
  t.ok(c.refused['too-many-keys'] > 0 && c.refused.malformed > 0 && c.refused['not-subscription'] > 0, 'each kind counted');
  t.ok(logs.length < 20, `a handful of log lines, not one each (${logs.length})`);
  t.ok((table.node('real.test', '/run/n.sock')?.lastCheck ?? 0) > seenBefore, 'a known node\'s announcement after the flood is applied');
  const grown = (process.memoryUsage().heapUsed - heapBefore) / 1024 / 1024;
  t.ok(grown < 64, `heap grew ${grown.toFixed(1)} MiB for ${N} datagrams and 1000 keys`);
  client.close();
  server.close();
  table.close();
});
