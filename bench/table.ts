/**
 * The one results table: every measurement of the run, side by side, with the ratio
 * that a target is about and whether it is met.
 */

/** One line of the table. A row with a target carries its ratio and verdict. */
export interface Row {
  readonly bench: string;
  readonly measure: string;
  readonly value: string;
  readonly ratio?: string;
  readonly target?: string;
  readonly met?: boolean;
}

/** A target on a ratio: `ratio op limit`. */
export interface Target {
  readonly op: '>=' | '<=';
  readonly limit: number;
  readonly unit?: string;
}

/** True when `value` meets `target` (NaN never does). */
export function meets(value: number, target: Target): boolean {
  if (!Number.isFinite(value)) return false;
  return target.op === '>=' ? value >= target.limit : value <= target.limit;
}

/** A row for a measured value with a target on it. */
export function targetRow(bench: string, measure: string, value: number, target: Target, format: (v: number) => string): Row {
  const unit = target.unit ?? 'x';
  return {
    bench,
    measure,
    value: '',
    ratio: format(value),
    target: `${target.op} ${target.limit}${unit === 'x' ? 'x' : ` ${unit}`}`,
    met: meets(value, target),
  };
}

/** Formats a ratio, e.g. `0.74x`. */
export function ratio(v: number): string {
  return Number.isFinite(v) ? `${v.toFixed(2)}x` : 'n/a';
}

/** Formats a rate with thousands separators, e.g. `1,234,567 rec/s`. */
export function rate(v: number, unit: string): string {
  return `${Math.round(v).toLocaleString('en-US')} ${unit}`;
}

/** Formats milliseconds with sensible precision. */
export function ms(v: number): string {
  if (!Number.isFinite(v)) return 'n/a';
  return v >= 100 ? `${v.toFixed(0)} ms` : v >= 10 ? `${v.toFixed(1)} ms` : `${v.toFixed(2)} ms`;
}

/** Renders the table as aligned plain text. */
export function renderTable(title: string, rows: readonly Row[]): string {
  const header = ['Benchmark', 'Measure', 'Value', 'Ratio', 'Target', 'Result'];
  const cells = rows.map((r) => [
    r.bench,
    r.measure,
    r.value,
    r.ratio ?? '',
    r.target ?? '',
    r.met === undefined ? '' : r.met ? 'met' : 'NOT met',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => (c[i] as string).length)));
  const line = (c: readonly string[]) =>
    `| ${c.map((x, i) => (i === 2 || i === 3 ? x.padStart(widths[i] as number) : x.padEnd(widths[i] as number))).join(' | ')} |`;
  const rule = `+${widths.map((w) => '-'.repeat(w + 2)).join('+')}+`;
  const out = [title, rule, line(header), rule];
  let previous: string | undefined;
  for (let i = 0; i < cells.length; i++) {
    const row = rows[i] as Row;
    if (previous !== undefined && row.bench !== previous) out.push(rule);
    const c = cells[i] as string[];
    // Name the benchmark on its first row only.
    out.push(line(row.bench === previous ? ['', ...c.slice(1)] : c));
    previous = row.bench;
  }
  out.push(rule);
  return out.join('\n');
}
