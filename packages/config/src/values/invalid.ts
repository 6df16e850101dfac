/**
 * Thrown by a value parser: `expected` says what the key takes; the caller adds what was found,
 * the file, the line and the key.
 */
export class Invalid extends Error {
  readonly expected: string;
  readonly hint: string | undefined;
  /** Overrides the default "got <value>" when the parser knows better what was wrong. */
  readonly found: string | undefined;

  constructor(expected: string, options: { hint?: string; found?: string } = {}) {
    super(expected);
    this.expected = expected;
    this.hint = options.hint;
    this.found = options.found;
  }
}

const MAX_SHOWN = 60;

/** How a raw value is named in "got ..." messages: short, quoted, never the whole of a huge value. */
export const show = (raw: unknown): string => {
  if (raw === null || raw === undefined) return 'nothing';
  if (typeof raw === 'string') {
    if (raw === '') return 'an empty value';
    const s = JSON.stringify(raw.length > MAX_SHOWN ? `${raw.slice(0, MAX_SHOWN)}...` : raw);
    return s;
  }
  if (typeof raw === 'number' || typeof raw === 'boolean') return String(raw);
  if (Array.isArray(raw)) return `a list of ${raw.length}`;
  if (typeof raw === 'object') return 'a mapping';
  return typeof raw;
};

/** A scalar as text: ini gives strings, json/yaml may give numbers or booleans. */
export const scalarText = (raw: unknown, expected: string): string => {
  if (typeof raw === 'string') return raw.trim();
  if (typeof raw === 'number' && Number.isFinite(raw)) return String(raw);
  if (typeof raw === 'boolean') return String(raw);
  throw new Invalid(expected);
};

/** A non-empty scalar as text. */
export const nonEmptyText = (raw: unknown, expected: string): string => {
  const s = scalarText(raw, expected);
  if (s === '') throw new Invalid(expected);
  return s;
};
