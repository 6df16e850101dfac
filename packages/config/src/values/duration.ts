import { Invalid, scalarText } from './invalid.js';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * A duration: `500ms`, `30s`, `2m`, `1h`, or a bare number of seconds (uWSGI's unit), to milliseconds.
 * Bare numbers are seconds everywhere, so `stop-timeout = 30` never means 30 ms (uWSGI's ms/us confusion).
 */
export const parseDuration = (raw: unknown, maxMs: number, minMs = 0): number => {
  const expected = `a duration like 500ms, 30s, 2m or 1h (a bare number is seconds), from ${fmt(minMs)} to ${fmt(maxMs)}`;
  const s = scalarText(raw, expected).toLowerCase();
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/.exec(s);
  if (m === null) throw new Invalid(expected);
  const ms = Math.round(Number(m[1]) * (UNIT_MS[m[2] ?? 's'] ?? 1000));
  if (!Number.isFinite(ms) || ms < minMs || ms > maxMs) throw new Invalid(expected);
  return ms;
};

const fmt = (ms: number): string => (ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`);
