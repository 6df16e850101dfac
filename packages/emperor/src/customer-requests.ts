/** Customer reload/restart requests: a burst of this many, then one per refill interval. */
export const CUSTOMER_BURST = 3;
export const CUSTOMER_REFILL_MS = 10_000;

/** A token bucket for one vassal's customer requests (docs/security.md). */
export class CustomerRequests {
  #tokens = CUSTOMER_BURST;
  #at = Date.now();

  /** Takes a token: 0 when the request may go, else how many ms until one is free. */
  take(now = Date.now()): number {
    const refilled = Math.floor((now - this.#at) / CUSTOMER_REFILL_MS);
    if (refilled > 0) {
      this.#tokens = Math.min(CUSTOMER_BURST, this.#tokens + refilled);
      this.#at = this.#tokens === CUSTOMER_BURST ? now : this.#at + refilled * CUSTOMER_REFILL_MS;
    }
    if (this.#tokens === 0) return Math.max(1, this.#at + CUSTOMER_REFILL_MS - now);
    this.#tokens--;
    return 0;
  }
}
