/** Respawn policy: the first restart is immediate, then exponential backoff, then a curse. */
export interface BackoffPolicy {
  /** An app that ran at least this long before exiting is "healthy": the failure count starts over. */
  minUptimeMs: number;
  firstDelayMs: number;
  maxDelayMs: number;
  /** Consecutive fast failures after which the vassal is cursed (no more respawns). */
  curseAfter: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { minUptimeMs: 10_000, firstDelayMs: 100, maxDelayMs: 30_000, curseAfter: 6 };

/** The decision after the n-th consecutive fast failure (n from 1). */
export const nextRespawn = (failures: number, policy: BackoffPolicy): { curse: true } | { curse: false; delayMs: number } => {
  if (failures >= policy.curseAfter) return { curse: true };
  if (failures <= 1) return { curse: false, delayMs: 0 };
  return { curse: false, delayMs: Math.min(policy.maxDelayMs, policy.firstDelayMs * 2 ** (failures - 2)) };
};
