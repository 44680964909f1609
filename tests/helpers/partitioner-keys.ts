/**
 * Keys whose hashes must be identical in every process: shared by
 * tests/runtime/graph/partitioner.test.ts and the child process it spawns.
 */

/** Keys of every kind a DStream may be keyed by. */
export const KEYS: readonly unknown[] = [
  '',
  'a',
  'word',
  'The quick brown fox',
  'é',
  'e\u0301',
  '日本語',
  '🙂 emoji',
  '\ud800',
  'a,sb',
  '"quoted"',
  0,
  -0,
  1,
  -1,
  1.5,
  2 ** 53,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  1n,
  true,
  false,
  null,
  undefined,
  new Date(86_400_000),
  [],
  ['a', 1],
  ['a,sb'],
  ['a', 'b'],
  [1, [2, [3, 'x']]],
  { a: 1, b: 'two' },
  { b: 'two', a: 1 },
  { nested: { y: [1, 2], x: { q: null, p: true } }, list: [{ k: 'v', j: 'w' }] },
  { '': 0, 'key with "quotes"': 'v' },
];

/**
 * A deep copy of `key` whose objects list their properties in reverse order, so the
 * other process builds structurally equal keys that were never created the same way.
 */
export function reordered(key: unknown): unknown {
  if (Array.isArray(key)) return key.map(reordered);
  if (key !== null && typeof key === 'object' && !(key instanceof Date)) {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(key).reverse()) out[k] = reordered((key as Record<string, unknown>)[k]);
    return out;
  }
  if (key instanceof Date) return new Date(key.getTime());
  return key;
}
