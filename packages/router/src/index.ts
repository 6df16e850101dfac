export { decodePacket, encodePacket, getNumber, getText, MalformedPacket, MAX_PACKET, SUBSCRIPTION_MODIFIER1, type Packet } from './packet.js';
export { subscriptionPacket, type NodeAnnouncement } from './announce.js';
export { KeyDirectory, keyFileName, loadSigner, signedPacket, signedParts, verifyParts, type Signer } from './sign.js';
export { ALGOS, DEFAULT_TABLE_LIMITS, SubscriptionTable, type Algo, type Announcement, type Node, type Slot, type TableLimits } from './table.js';
export { SubscriptionServer, type Refusal, type SignCheck } from './server.js';
export { connectTarget, HttpRouter, type RouterOptions } from './http-router.js';
export { routerMetrics, routerStats } from './stats.js';
export { runRouter, type RouterConfig } from './run.js';
export { parseRouterArgs, routerMain } from './main.js';
