/**
 * Connections one customer (uid) may hold at once across all the sockets the emperor serves them (each of
 * their vassals' control and pty sockets): a customer with many vassals gets no more than one with one.
 */
export class CustomerBudget {
  readonly max: number;
  readonly #used = new Map<number, number>();

  constructor(max: number) {
    this.max = max;
  }

  /** One more connection for `uid`: a function that gives it back (once), or undefined when none is left. */
  admit(uid: number): (() => void) | undefined {
    const n = this.#used.get(uid) ?? 0;
    if (n >= this.max) return undefined;
    this.#used.set(uid, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.#used.get(uid) ?? 1) - 1;
      if (left <= 0) this.#used.delete(uid);
      else this.#used.set(uid, left);
    };
  }

  /** Connections `uid` holds now. */
  used(uid: number): number {
    return this.#used.get(uid) ?? 0;
  }
}
