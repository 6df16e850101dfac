import { closest, distance } from 'fastest-levenshtein';

/** `did you mean "x"?` for a near miss (edit distance at most a third of the word, and at most 3). */
export const didYouMean = (word: string, known: readonly string[]): string | undefined => {
  if (known.length === 0) return undefined;
  const best = closest(word.toLowerCase(), [...known]);
  const d = distance(word.toLowerCase(), best);
  return d <= Math.min(3, Math.max(1, Math.floor(word.length / 3))) ? `did you mean "${best}"?` : undefined;
};
