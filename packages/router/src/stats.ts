import type { HttpRouter } from './http-router.js';
import type { SubscriptionServer } from './server.js';
import type { SubscriptionTable } from './table.js';

/** uWSGI's corerouter stats (`http-stats`), with the router's and the subscription server's counters beside. */
export const routerStats = (table: SubscriptionTable, router: HttpRouter | undefined, server: SubscriptionServer | undefined, listeners: string[], now = Date.now()): Record<string, unknown> => ({
  version: 'emperor-router',
  pid: process.pid,
  uid: process.getuid?.(),
  gid: process.getgid?.(),
  cwd: process.cwd(),
  active_sessions: router?.counters.activeSessions ?? 0,
  http: listeners,
  subscriptions: [...table.slots()].map((s) => ({
    key: s.key,
    hits: s.hits,
    sni_enabled: 0,
    algo: s.algo,
    nodes: s.nodes.map((n) => ({
      name: n.address, vassal: n.vassal ?? '', modifier1: n.modifier1, modifier2: n.modifier2, last_check: Math.floor(n.lastCheck / 1000),
      last_seen_ms_ago: now - n.lastCheck, requests: n.requests, last_requests: n.lastRequests, tx: n.tx, rx: n.rx, cores: n.cores, load: n.load,
      weight: n.weight, backup: n.backup, proto: n.proto, ref: n.inflight, failcnt: n.failures, death_mark: n.dead ? 1 : 0,
    })),
  })),
  cheap: 0,
  router: router?.counters,
  subscription_server: server?.counters,
});

const label = (s: string): string => s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

/** The same in Prometheus' text format. */
export const routerMetrics = (table: SubscriptionTable, router: HttpRouter | undefined, server: SubscriptionServer | undefined): string => {
  const out: string[] = [];
  const metric = (name: string, type: 'counter' | 'gauge', help: string, rows: Array<[string, number]>): void => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, v] of rows) out.push(`${name}${labels} ${v}`);
  };
  const nodes = [...table.slots()].flatMap((s) => s.nodes.map((n) => ({ l: `{key="${label(s.key)}",node="${label(n.address)}"}`, n })));
  metric('emperor_router_keys', 'gauge', 'Keys in the subscription table.', [['', table.size]]);
  metric('emperor_router_nodes', 'gauge', 'Nodes in the subscription table.', [['', table.nodeCount]]);
  metric('emperor_router_node_requests_total', 'counter', 'Requests sent to a node.', nodes.map(({ l, n }) => [l, n.requests]));
  metric('emperor_router_node_failures_total', 'counter', 'Connections to a node that failed.', nodes.map(({ l, n }) => [l, n.failures]));
  metric('emperor_router_node_inflight', 'gauge', 'Requests in flight to a node.', nodes.map(({ l, n }) => [l, n.inflight]));
  metric('emperor_router_node_dead', 'gauge', '1 while a node is skipped after a failure (until it announces again).', nodes.map(({ l, n }) => [l, n.dead ? 1 : 0]));
  metric('emperor_router_node_last_seen_seconds', 'gauge', 'When the node last announced (unix time).', nodes.map(({ l, n }) => [l, Math.floor(n.lastCheck / 1000)]));
  metric('emperor_router_node_load', 'gauge', 'The load the node announced.', nodes.map(({ l, n }) => [l, n.load]));
  if (router !== undefined) {
    const c = router.counters;
    metric('emperor_router_requests_total', 'counter', 'Requests the router took.', [['', c.requests]]);
    metric('emperor_router_unknown_key_total', 'counter', 'Requests for a key no node serves (502).', [['', c.unknownKey]]);
    metric('emperor_router_no_node_total', 'counter', 'Requests no node of their key answered (502).', [['', c.noNode]]);
    metric('emperor_router_retries_total', 'counter', 'Requests sent to another node after one failed.', [['', c.retried]]);
  }
  if (server !== undefined) {
    const c = server.counters;
    metric('emperor_subscription_packets_total', 'counter', 'Subscription datagrams received.', [['', c.received]]);
    metric('emperor_subscription_accepted_total', 'counter', 'Subscription packets applied.', [['{kind="subscribe"}', c.subscribed], ['{kind="refresh"}', c.refreshed], ['{kind="unsubscribe"}', c.unsubscribed]]);
    metric('emperor_subscription_refused_total', 'counter', 'Subscription packets refused, by reason.', Object.entries(c.refused).map(([k, v]) => [`{reason="${k}"}`, v]));
  }
  return `${out.join('\n')}\n`;
};
