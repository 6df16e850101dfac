import { isMap, isScalar, isSeq, LineCounter, parseAllDocuments, type Document, type Node, type YAMLMap } from 'yaml';
import type { ConfigProblem } from '../problem.js';
import type { RawEntry, ReadResult } from './entry.js';

const WRAPPERS = ['uwsgi', 'vassal'];

/**
 * json and yaml: an object at the top level or under a `uwsgi` / `vassal` key. Both go through the `yaml`
 * parser, which keeps source positions and refuses duplicate keys; json is first checked by JSON.parse so
 * that yaml-only syntax is not accepted in a .json file.
 */
export const readDocument = (text: string, file: string, format: 'json' | 'yaml'): ReadResult => {
  const lc = new LineCounter();
  const lineOf = (offset: number | undefined): number | undefined => (offset === undefined ? undefined : lc.linePos(offset).line);
  const fail = (message: string, line?: number, code: ConfigProblem['code'] = 'EMPEROR_ERR_CONFIG_SYNTAX', hint?: string, key?: string): ReadResult => ({
    entries: [],
    problems: [{ code, file, line, message, hint, key }],
  });
  if (text.trim() === '') return fail(`expected a ${format} object of vassal keys, got an empty file`, undefined, 'EMPEROR_ERR_CONFIG_SECTION');
  if (format === 'json') {
    try {
      JSON.parse(text);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      const pos = /position (\d+)/.exec(msg);
      const line = pos?.[1] === undefined ? undefined : text.slice(0, Number(pos[1])).split('\n').length;
      return fail(`expected valid JSON, got ${msg.replace(/\s*in JSON at position \d+.*$/, '').replace(/^Unexpected/, 'unexpected')}`, line);
    }
  }
  const docs = parseAllDocuments(text, { lineCounter: lc, uniqueKeys: true, prettyErrors: false });
  if (!Array.isArray(docs)) return fail(`expected one ${format} document, got an empty stream`);
  if (docs.length === 0) return fail(`expected a ${format} object of vassal keys, got an empty document`, undefined, 'EMPEROR_ERR_CONFIG_SECTION');
  if (docs.length !== 1) return fail(`expected one ${format} document, got ${docs.length}`, lineOf(docs[1]?.range[0]), 'EMPEROR_ERR_CONFIG_SYNTAX', 'remove the --- separators');
  const doc = docs[0] as Document.Parsed;
  const err = doc.errors[0];
  if (err !== undefined) {
    const first = err.message.split('\n')[0] ?? err.message;
    if (err.code === 'DUPLICATE_KEY') {
      // The parser points at the second occurrence of the key: name it (json keys come quoted).
      const raw = /^("(?:[^"\\\n]|\\.)*"|'[^'\n]*'|[^:\s]+)/.exec(text.slice(err.pos[0]))?.[1] ?? '';
      const key = raw.replace(/^["']|["']$/g, '').slice(0, 64);
      return fail(`expected each key once, got ${JSON.stringify(key)} a second time`, lineOf(err.pos[0]), 'EMPEROR_ERR_CONFIG_DUPLICATE_KEY', 'give a single-valued key once; use a list for repeatable keys', key);
    }
    return fail(`expected valid ${format}, got ${first.replace(/ at line \d+, column \d+.*$/, '')}`, lineOf(err.pos[0]));
  }
  let root: unknown = doc.contents;
  if (root === null || (isScalar(root) && root.value === null)) return fail(`expected a ${format} object of vassal keys, got an empty document`, undefined, 'EMPEROR_ERR_CONFIG_SECTION');
  if (!isMap(root)) return fail(`expected a ${format} object of vassal keys at the top level, got ${kind(root)}`, lineOf((root as Node).range?.[0]), 'EMPEROR_ERR_CONFIG_SECTION');
  const wrapped = root.items.filter((p) => isScalar(p.key) && WRAPPERS.includes(String(p.key.value)));
  if (wrapped.length > 0) {
    const pair = wrapped[0];
    if (wrapped.length > 1 || root.items.length > 1 || pair === undefined) {
      return fail(`expected either keys at the top level or one "uwsgi"/"vassal" object, got both`, lineOf((pair?.key as Node | undefined)?.range?.[0]), 'EMPEROR_ERR_CONFIG_SECTION', 'move every key under the one "uwsgi" object');
    }
    if (!isMap(pair.value)) return fail(`expected "${String((pair.key as { value: unknown }).value)}" to be an object of vassal keys, got ${kind(pair.value)}`, lineOf((pair.key as Node).range?.[0]), 'EMPEROR_ERR_CONFIG_SECTION');
    root = pair.value;
  }
  const entries: RawEntry[] = [];
  const problems: ConfigProblem[] = [];
  for (const pair of (root as YAMLMap).items) {
    const keyNode = pair.key as Node | null;
    const line = lineOf(keyNode?.range?.[0]);
    if (!isScalar(keyNode) || typeof keyNode.value !== 'string') {
      problems.push({ code: 'EMPEROR_ERR_CONFIG_SYNTAX', file, line, message: `expected a key name, got ${kind(keyNode)}` });
      continue;
    }
    const value = pair.value as Node | null;
    let js: unknown = null;
    try {
      js = value === null ? null : value.toJS(doc, { maxAliasCount: 100 });
    } catch {
      // yaml refuses to expand an alias bomb ("Excessive alias count"); say so instead of crashing.
      problems.push({ code: 'EMPEROR_ERR_CONFIG_SYNTAX', file, line, key: keyNode.value, message: 'expected a value with at most 100 alias expansions, got more', hint: 'write the value out instead of nesting * aliases' });
      continue;
    }
    const entry: RawEntry = { key: keyNode.value.toLowerCase(), value: js, line };
    if (isSeq(value)) entry.itemLines = value.items.map((it) => lineOf((it as Node | null)?.range?.[0]));
    entries.push(entry);
  }
  return { entries, problems };
};

const kind = (n: unknown): string => {
  if (n === null || n === undefined) return 'nothing';
  if (isMap(n)) return 'an object';
  if (isSeq(n)) return 'a list';
  if (isScalar(n)) return n.value === null ? 'nothing' : `the ${typeof n.value} ${JSON.stringify(n.value)}`;
  return 'something else';
};
