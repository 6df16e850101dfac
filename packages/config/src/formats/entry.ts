import type { ConfigProblem } from '../problem.js';

/** One `key = value` as read from a file, before validation. */
export interface RawEntry {
  key: string;
  /** ini: always a string; json/yaml: any JSON value. */
  value: unknown;
  /** 1-based line of the key, where known. */
  line: number | undefined;
  /** For a json/yaml list: the line of each item. */
  itemLines?: Array<number | undefined>;
}

/** What a format reader returns: the entries in file order, or what stopped it. */
export interface ReadResult {
  entries: RawEntry[];
  problems: ConfigProblem[];
}
