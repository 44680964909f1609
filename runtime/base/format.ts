/**
 * How records are shown by `print()` and written by `saveAsTextFiles()`.
 */
import { inspect } from 'node:util';

/** Marks a value written raw (unquoted) in place of a JSON string. */
const RAW = '\u0000raw:';
const RAW_QUOTED = /"\\u0000raw:([^"]*)"/g;

/** JSON.stringify's replacer: values JSON cannot hold are written as JavaScript writes them. */
function replacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return `${RAW}${value}`;
  if (typeof value === 'number' && !Number.isFinite(value)) return `${RAW}${value}`;
  if (value instanceof Map || value instanceof Set) return [...value];
  return value;
}

/**
 * One record as text: strings as they are, numbers and other primitives as
 * `String()` writes them (`NaN`, `12n` as `12`), objects and arrays as JSON (with
 * bigint, NaN and Infinity unquoted, a Map as its entries, a Set as its values).
 * A record JSON cannot encode (a cycle) falls back to `util.inspect`, so that
 * printing never fails a batch.
 *
 * @example
 * formatRecord(['a', 1]) // '["a",1]'
 */
export function formatRecord(record: unknown): string {
  if (typeof record === 'string') return record;
  if (typeof record !== 'object' || record === null) return String(record);
  try {
    const json = JSON.stringify(record, replacer);
    if (json !== undefined) return json.replace(RAW_QUOTED, '$1');
  } catch {
    // A cycle: fall through to inspect.
  }
  return inspect(record, { breakLength: Number.POSITIVE_INFINITY, depth: 4 });
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
