import t from 'tap';
import { decodePacket, encodePacket, getText, MalformedPacket, SubscriptionTable, subscriptionPacket, type Announcement, type Node } from '../src/index.js';

const ann = (key: string, address: string, extra: Partial<Announcement> = {}): Announcement => ({
  key, address, modifier1: 0, modifier2: 0, cores: 1, load: 0, weight: 1, backup: 0, proto: 'uwsgi', algo: undefined, vassal: undefined, ...extra,
});

const picks = (table: SubscriptionTable, key: string, n: number, client = '192.0.2.7'): string[] => {
  const slot = table.get(key);
  if (slot === undefined) throw new Error(`no ${key}`);
  return Array.from({ length: n }, () => table.pick(slot, client)?.address ?? 'none');
};

t.test('packets: uWSGI\'s layout both ways; a short, long or cut datagram is malformed, never a partial read', async (t) => {
  const p = subscriptionPacket(0, { key: 'example.com', address: '/run/a.sock', modifier1: 0, modifier2: 0, cores: 2, load: 5, weight: 3, backup: 1, proto: 'http', algo: 'lrc', vassal: 'a' });
  t.equal(p[0], 224, 'modifier1 224');
  t.equal(p.readUInt16LE(1), p.length - 4, 'u16le body size');
  t.equal(p[3], 0, 'modifier2 0 = subscribe');
  const d = decodePacket(p);
  t.same(d.pairs.map(([k]) => k), ['key', 'address', 'modifier1', 'modifier2', 'cores', 'load', 'weight', 'backup', 'vassal', 'proto', 'algo'], 'keys in uWSGI\'s order');
  t.equal(getText(d, 'address'), '/run/a.sock');
  // The exact bytes uWSGI's contrib/subscribe.pl writes for key=k address=a: pack('CvC',224,len,0), then pairs.
  const hand = Buffer.from([224, 20, 0, 0, 3, 0, ...Buffer.from('key'), 1, 0, ...Buffer.from('k'), 7, 0, ...Buffer.from('address'), 1, 0, ...Buffer.from('a')]);
  const want = encodePacket(224, 0, [['key', 'k'], ['address', 'a']]);
  t.ok(hand.equals(want), 'byte for byte what uWSGI\'s own client writes');
  t.same(decodePacket(want).pairs.map(([k, v]) => [k, v.toString()]), [['key', 'k'], ['address', 'a']]);
  t.throws(() => decodePacket(Buffer.from([224, 1])), MalformedPacket, 'shorter than a header');
  t.throws(() => decodePacket(Buffer.concat([p, Buffer.from([0])])), MalformedPacket, 'size field does not match the datagram');
  const cut = Buffer.from(p);
  cut.writeUInt16LE(0xfff0, 4); // the first key's length runs past the end
  t.throws(() => decodePacket(cut), MalformedPacket, 'a pair running past the end');
  t.throws(() => decodePacket(Buffer.alloc(5000)), MalformedPacket, 'more than 4096 bytes');
});

t.test('wrr: weights 2:1 give two of A to one of B, smoothly; a weight of 0 counts as 1', async (t) => {
  const table = new SubscriptionTable();
  table.subscribe(ann('w.test', 'A', { weight: 2 }));
  table.subscribe(ann('w.test', 'B', { weight: 1 }));
  const got = picks(table, 'w.test', 30);
  t.equal(got.filter((a) => a === 'A').length, 20);
  t.equal(got.filter((a) => a === 'B').length, 10);
  t.notOk(got.join('').includes('AAA'), 'never three of A in a row (smooth)');
  table.subscribe(ann('z.test', 'A', { weight: 0 }));
  table.subscribe(ann('z.test', 'B', { weight: 1 }));
  const z = picks(table, 'z.test', 10);
  t.equal(z.filter((a) => a === 'A').length, 5, 'weight 0 is 1');
  table.close();
});

t.test('backup levels: level 1 only while no level-0 node lives; a dead node is skipped until it announces', async (t) => {
  const table = new SubscriptionTable();
  table.subscribe(ann('b.test', 'main'));
  table.subscribe(ann('b.test', 'spare', { backup: 1 }));
  t.same([...new Set(picks(table, 'b.test', 10))], ['main']);
  const main = table.node('b.test', 'main') as Node;
  main.dead = true;
  t.same([...new Set(picks(table, 'b.test', 10))], ['spare'], 'the backup takes over');
  table.subscribe(ann('b.test', 'main'));
  t.equal(main.dead, false, 're-announcing clears the mark');
  t.same([...new Set(picks(table, 'b.test', 10))], ['main']);
  (table.node('b.test', 'spare') as Node).dead = true;
  main.dead = true;
  t.equal(table.pick(table.get('b.test')!, 'x'), undefined, 'none alive: no node');
  table.close();
});

t.test('lrc and wlrc: fewest requests in flight (per weight)', async (t) => {
  const table = new SubscriptionTable();
  table.subscribe(ann('l.test', 'A', { algo: 'lrc' }));
  table.subscribe(ann('l.test', 'B'));
  const slot = table.get('l.test')!;
  t.equal(slot.algo, 'lrc', 'the packet\'s algo');
  (table.node('l.test', 'A') as Node).inflight = 3;
  t.equal(table.pick(slot, 'x')?.address, 'B');
  (table.node('l.test', 'B') as Node).inflight = 5;
  t.equal(table.pick(slot, 'x')?.address, 'A');
  slot.algo = 'wlrc';
  (table.node('l.test', 'B') as Node).weight = 4; // 5/4 < 3/1
  t.equal(table.pick(slot, 'x')?.address, 'B');
  table.close();
});

t.test('iphash is uWSGI\'s (in_addr as a native u32, modulo live nodes); chash moves only the clients of a node that left', async (t) => {
  const table = new SubscriptionTable();
  for (const a of ['n0', 'n1', 'n2']) table.subscribe(ann('i.test', a, { algo: 'iphash' }));
  const slot = table.get('i.test')!;
  // 10.0.0.5 in network order read little-endian: 0x0500000a = 83886090; % 3 = 0.
  t.equal(table.pick(slot, '10.0.0.5')?.address, 'n0');
  t.equal(table.pick(slot, '10.0.0.6')?.address, `n${0x0600000a % 3}`);
  t.equal(table.pick(slot, '::ffff:10.0.0.6')?.address, `n${0x0600000a % 3}`, 'v4-mapped v6 as v4');

  for (let i = 0; i < 5; i++) table.subscribe(ann('c.test', `node${i}`, { algo: 'chash' }));
  const cslot = table.get('c.test')!;
  const clients = Array.from({ length: 2000 }, (_, i) => `198.51.${i >> 8}.${i & 255}`);
  const before = new Map(clients.map((c) => [c, table.pick(cslot, c)?.address]));
  const counts = new Map<string, number>();
  for (const a of before.values()) counts.set(a ?? '', (counts.get(a ?? '') ?? 0) + 1);
  for (const [a, n] of counts) t.ok(n > 250 && n < 550, `${a} has a fair share (${n} of 2000)`);
  table.unsubscribe('c.test', 'node2');
  let moved = 0;
  for (const c of clients) {
    const now = table.pick(cslot, c)?.address;
    if (now !== before.get(c)) {
      moved++;
      if (before.get(c) !== 'node2') t.fail(`${c} moved from ${before.get(c)} though its node stayed`);
    }
  }
  t.equal(moved, counts.get('node2'), 'exactly the clients of the node that left moved');
  table.subscribe(ann('c.test', 'node2'));
  t.ok(clients.every((c) => table.pick(cslot, c)?.address === before.get(c)), 'it came back: every client is where it was');
  table.close();
});

t.test('mountpoints: host + N path segments, then fewer, then the host, then the fallback key', async (t) => {
  const table = new SubscriptionTable();
  table.subscribe(ann('m.test', 'root'));
  table.subscribe(ann('m.test/api', 'api'));
  table.subscribe(ann('m.test/api/v2', 'v2'));
  table.subscribe(ann('fallback.test', 'fb'));
  t.equal(table.lookup('m.test', '/api/v2/users?x=1', 2)?.key, 'm.test/api/v2');
  t.equal(table.lookup('m.test', '/api/v1/users', 2)?.key, 'm.test/api');
  t.equal(table.lookup('m.test', '/static/a.css', 2)?.key, 'm.test');
  t.equal(table.lookup('m.test', '/api/v2', 0)?.key, 'm.test', 'mountpoints off: the host');
  t.equal(table.lookup('other.test', '/', 1, 'fallback.test')?.key, 'fallback.test');
  t.equal(table.lookup('other.test', '/', 1), undefined);
  table.close();
});

t.test('expiry is eager: a silent node goes on time without any request; a refresh keeps it', async (t) => {
  const removed: string[] = [];
  const table = new SubscriptionTable({ toleranceMs: 300 }, 'wrr', { removed: (k, n, why) => removed.push(`${k} ${n.address} ${why}`) });
  const t0 = Date.now();
  table.subscribe(ann('e.test', 'quiet'));
  table.subscribe(ann('e.test', 'chatty'));
  const keep = setInterval(() => table.subscribe(ann('e.test', 'chatty')), 100);
  while (table.node('e.test', 'quiet') !== undefined && Date.now() - t0 < 5_000) await new Promise((r) => setTimeout(r, 20));
  const took = Date.now() - t0;
  t.same(removed, ['e.test quiet expired']);
  t.ok(took >= 300, `not before the tolerance (${took} ms)`);
  t.ok(took < 2_000, `without a lookup, soon after it (${took} ms for 300 ms)`);
  t.ok(table.node('e.test', 'chatty'), 'the refreshed node stays');
  clearInterval(keep);
  while (table.size > 0 && Date.now() - t0 < 5_000) await new Promise((r) => setTimeout(r, 20));
  t.equal(table.size, 0, 'the key goes with its last node');
  table.close();
});

t.test('limits: keys and nodes per key are bounded; the known ones keep working', async (t) => {
  const table = new SubscriptionTable({ maxKeys: 3, maxNodesPerKey: 2 });
  for (let i = 0; i < 3; i++) t.equal(table.subscribe(ann(`k${i}.test`, 'a')), 'new');
  t.equal(table.subscribe(ann('k9.test', 'a')), 'too-many-keys');
  t.equal(table.subscribe(ann('k0.test', 'b')), 'new');
  t.equal(table.subscribe(ann('k0.test', 'c')), 'too-many-nodes');
  t.equal(table.subscribe(ann('k0.test', 'a')), 'refresh', 'a known node still refreshes');
  t.equal(table.size, 3);
  table.close();
});
