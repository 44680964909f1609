/**
 * A deterministic text generator: line `seq` of seed `seed` is a pure function of
 * the two, so a demo, a benchmark and an oracle computing the expected counts all
 * see the same words, and a replay regenerates the same lines.
 */

/** splitmix32: a small, well-mixed PRNG step. */
function mix(x: number): number {
  let z = (x + 0x9e3779b9) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/**
 * A safe integer as 32 bits: its low word, mixed with its high word when it has
 * one, so that values 2^32 apart (seeds such as `Date.now()`, sequence numbers of a
 * long run) do not collapse onto the same lines. Values below 2^32 map to themselves.
 */
function fold(v: number): number {
  const high = Math.floor(v / 0x100000000);
  const low = v >>> 0;
  return high === 0 ? low : (low ^ mix(high)) >>> 0;
}

/** Options of the word-line generator. */
export interface TextLineOptions {
  /** Number of distinct words (default 1000). */
  readonly vocabulary?: number;
  /** Words per line (default 8). */
  readonly wordsPerLine?: number;
}

const SYLLABLES = ['ka', 'lo', 'mi', 're', 'su', 'ta', 'vo', 'ne', 'pi', 'da', 'go', 'ru', 'se', 'ti', 'wa', 'zo'];

/**
 * The word with index `i`: distinct for distinct `i`, readable, stable.
 *
 * @example
 * wordOf(0) // 'ka'
 */
export function wordOf(i: number): string {
  let word = '';
  let n = i;
  do {
    word += SYLLABLES[n % 16];
    n = Math.floor(n / 16);
  } while (n > 0);
  return word;
}

/**
 * Line number `seq` of the stream seeded with `seed`. Word frequencies are skewed
 * (small indexes are common), as in real text.
 *
 * @example
 * textLine(42, 7) // 'kalo mi ka ...'
 */
export function textLine(seq: number, seed: number, options: TextLineOptions = {}): string {
  const vocabulary = options.vocabulary ?? 1000;
  const words = options.wordsPerLine ?? 8;
  let state = mix(fold(seed) ^ mix(fold(seq)));
  let line = '';
  for (let w = 0; w < words; w++) {
    state = mix(state);
    const u = state / 0x100000000;
    // Squaring a uniform draw skews it towards small indexes.
    const index = Math.floor(u * u * vocabulary);
    line += w === 0 ? wordOf(index) : ` ${wordOf(index)}`;
  }
  return line;
}
