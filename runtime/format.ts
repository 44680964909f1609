/**
 * How records are shown by `print()` and written by `saveAsTextFiles()`.
 */

/**
 * One record as text: strings as they are, other values as JSON.
 *
 * @example
 * formatRecord(['a', 1]) // '["a",1]'
 */
export function formatRecord(record: unknown): string {
  if (typeof record === 'string') return record;
  if (record === undefined) return 'undefined';
  if (typeof record === 'bigint') return record.toString();
  return JSON.stringify(record) ?? String(record);
}

/**
 * Spark's `print()` block for one batch: a header with the time, the first `n`
 * records, and `...` when there were more.
 *
 * @example
 * formatPrint(['a', 'b'], 1000, 10)
 */
export function formatPrint(records: readonly unknown[], time: number, n: number): string {
  const rule = '-------------------------------------------';
  const lines = [rule, `Time: ${time} ms`, rule];
  for (const r of records.slice(0, n)) lines.push(formatRecord(r));
  if (records.length > n) lines.push('...');
  return `${lines.join('\n')}\n\n`;
}
