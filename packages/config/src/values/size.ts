import { Invalid, scalarText } from './invalid.js';

const UNIT: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/**
 * A size in bytes: `512K`, `64M`, `1G` (powers of 1024; `64MB` and `64MiB` mean the same), or a bare
 * number of bytes.
 */
export const parseSize = (raw: unknown, minBytes: number, maxBytes: number): number => {
  const expected = `a size like 64M or 1G, from ${human(minBytes)} to ${human(maxBytes)}`;
  const s = scalarText(raw, expected).toLowerCase();
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/.exec(s);
  if (m === null) throw new Invalid(expected);
  const bytes = Math.round(Number(m[1]) * (UNIT[m[2] ?? ''] ?? 1));
  if (!Number.isSafeInteger(bytes) || bytes < minBytes || bytes > maxBytes) throw new Invalid(expected);
  return bytes;
};

/** 1048576 -> "1M"; used in messages. */
export const human = (bytes: number): string => {
  for (const [u, n] of [['T', 1024 ** 4], ['G', 1024 ** 3], ['M', 1024 ** 2], ['K', 1024]] as const) {
    if (bytes >= n && bytes % n === 0) return `${bytes / n}${u}`;
  }
  return `${bytes} bytes`;
};
