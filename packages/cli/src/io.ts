/** Where a command writes; tests pass their own streams. */
export interface Io {
  stdout: { write(s: string): unknown; isTTY?: boolean };
  stderr: { write(s: string): unknown };
}

/** Exit codes of the CLI (sysexits where one fits). */
export const EXIT = { ok: 0, problems: 1, usage: 64, internal: 70 } as const;
