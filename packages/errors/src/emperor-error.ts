import type { ErrorCode } from './codes.js';

/** Options of an {@link EmperorError}. */
export interface EmperorErrorOptions {
  /** One sentence that tells the user how to fix it. */
  hint?: string | undefined;
  /** The underlying error, kept for logs; never printed to a user as a stack trace. */
  cause?: unknown;
}

/**
 * The one error base of Emperor. Callers branch on `code`, never on the message.
 * A message names the thing, what was expected and what was found; `hint` says how to fix it.
 */
export class EmperorError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, options: EmperorErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'EmperorError';
    this.code = code;
    this.hint = options.hint;
  }

  /** The message and its hint, as a user sees them (no stack). */
  describe(): string {
    return this.hint === undefined ? this.message : `${this.message} (${this.hint})`;
  }
}

/** True when `value` is an {@link EmperorError}, optionally of one code. */
export const isEmperorError = (value: unknown, code?: ErrorCode): value is EmperorError =>
  value instanceof EmperorError && (code === undefined || value.code === code);
