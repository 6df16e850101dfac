import { didYouMean } from '../suggest.js';
import { Invalid, scalarText, show } from './invalid.js';

/**
 * uWSGI's key=value list: `k=v,k2=v2`, `\,` for a comma inside a value. In json/yaml the same thing may
 * be a mapping. Unlike uWSGI, an unknown or repeated key is an error, never silently dropped.
 */
export const parseKvList = (raw: unknown, keys: readonly string[], expected: string): Map<string, string> => {
  const pairs: Array<[string, string]> = [];
  if (raw !== null && typeof raw === 'object' && !Array.isArray(raw)) {
    for (const [k, v] of Object.entries(raw)) pairs.push([k, scalarText(v, `${expected}; ${k} takes a single value`)]);
  } else {
    const s = scalarText(raw, expected);
    for (const item of splitUnescaped(s)) {
      if (item.trim() === '') continue;
      const eq = item.indexOf('=');
      if (eq <= 0) throw new Invalid(expected, { found: `${show(item)} (no key=value)` });
      pairs.push([item.slice(0, eq).trim(), item.slice(eq + 1).trim()]);
    }
  }
  const out = new Map<string, string>();
  for (const [k, v] of pairs) {
    const key = k.toLowerCase();
    if (!keys.includes(key)) {
      const dym = didYouMean(key, keys);
      throw new Invalid(expected, { found: `unknown key "${k}"`, hint: dym ?? `known keys: ${keys.join(', ')}` });
    }
    if (out.has(key)) throw new Invalid(expected, { found: `"${k}" given twice` });
    out.set(key, v);
  }
  return out;
};

/** Splits on commas not preceded by a backslash, then unescapes `\,`. */
const splitUnescaped = (s: string): string[] => {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\' && s[i + 1] === ',') {
      cur += ',';
      i++;
    } else if (c === ',') {
      parts.push(cur);
      cur = '';
    } else {
      cur += c;
    }
  }
  parts.push(cur);
  return parts;
};
