/**
 * A strict parser of Prometheus's text exposition format (version 0.0.4), for tests
 * that check what `/metrics` serves: it refuses what a Prometheus server would
 * refuse (a malformed name, label or value, a sample before its TYPE, a family
 * split in two, histogram buckets that are not cumulative or lack `+Inf`), so a
 * test that parses the output checks its format, not just its numbers.
 */

export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface Family {
  readonly name: string;
  readonly type: MetricType;
  readonly help: string | undefined;
  readonly samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set<MetricType>(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

/**
 * Parses an exposition; throws an Error naming the line on the first violation.
 *
 * @example
 * const families = parsePrometheusText(await (await fetch(url)).text());
 */
export function parsePrometheusText(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const closed = new Set<string>();
  let current: Family | undefined;
  const lines = text.split('\n');
  if (lines.at(-1) !== '') throw new Error('the exposition must end with a newline');
  lines.forEach((line, i) => {
    const where = `line ${i + 1} (${JSON.stringify(line)})`;
    if (line.trim() === '') return;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (m === null) return; // a plain comment
      const [, kind, name, rest] = m as unknown as [string, string, string, string];
      if (!METRIC_NAME.test(name)) throw new Error(`${where}: bad metric name`);
      if (closed.has(name) && current?.name !== name) throw new Error(`${where}: family ${name} appears twice`);
      let family = families.get(name);
      if (family === undefined) {
        if (current !== undefined) closed.add(current.name);
        family = { name, type: 'untyped', help: undefined, samples: [] };
        families.set(name, family);
        current = family;
      }
      if (kind === 'TYPE') {
        if (!TYPES.has(rest as MetricType)) throw new Error(`${where}: unknown type ${rest}`);
        if (family.samples.length > 0) throw new Error(`${where}: TYPE after samples`);
        (family as { type: MetricType }).type = rest as MetricType;
      } else {
        if (family.help !== undefined) throw new Error(`${where}: second HELP`);
        (family as { help: string | undefined }).help = rest.replace(/\\n/g, '\n').replace(/\\\\/g, '\\');
      }
      return;
    }
    const sample = parseSample(line, where);
    const familyName = familyOf(sample.name, current);
    if (current === undefined || familyName !== current.name) {
      throw new Error(`${where}: sample of ${familyName} outside its family (TYPE first, samples together)`);
    }
    current.samples.push(sample);
  });
  for (const family of families.values()) if (family.type === 'histogram') checkHistogram(family);
  return families;
}

/**
 * The value of the one sample named `name` whose labels include `labels`.
 *
 * @example
 * sampleValue(families, 'tributary_batches_completed_total', { app: 'wc' }); // 3
 */
export function sampleValue(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  const matches = [...families.values()]
    .flatMap((f) => f.samples)
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (matches.length !== 1) throw new Error(`${matches.length} samples of ${name} ${JSON.stringify(labels)}`);
  return (matches[0] as Sample).value;
}

function familyOf(sampleName: string, current: Family | undefined): string {
  if (current?.type === 'histogram' && /_(bucket|sum|count)$/.test(sampleName)) return sampleName.replace(/_(bucket|sum|count)$/, '');
  if (current?.type === 'summary' && /_(sum|count)$/.test(sampleName)) return sampleName.replace(/_(sum|count)$/, '');
  return sampleName;
}

function parseSample(line: string, where: string): Sample {
  const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)( -?\d+)?$/.exec(line);
  if (m === null) throw new Error(`${where}: not a sample`);
  const [, name, labelText, valueText] = m as unknown as [string, string, string | undefined, string];
  return { name, labels: labelText === undefined ? {} : parseLabels(labelText, where), value: parseValue(valueText, where) };
}

function parseLabels(text: string, where: string): Record<string, string> {
  const labels: Record<string, string> = {};
  let rest = text.slice(1, -1);
  while (rest.length > 0) {
    const m = /^([^=]+)="((?:[^"\\\n]|\\["\\n])*)"(,?)/.exec(rest);
    if (m === null) throw new Error(`${where}: bad labels at ${JSON.stringify(rest)}`);
    const [all, name, raw, comma] = m as unknown as [string, string, string, string];
    if (!LABEL_NAME.test(name)) throw new Error(`${where}: bad label name ${name}`);
    if (name in labels) throw new Error(`${where}: label ${name} twice`);
    labels[name] = raw.replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c));
    rest = rest.slice(all.length);
    if (comma === '' && rest.length > 0) throw new Error(`${where}: labels not separated by commas`);
  }
  return labels;
}

function parseValue(text: string, where: string): number {
  if (text === '+Inf') return Number.POSITIVE_INFINITY;
  if (text === '-Inf') return Number.NEGATIVE_INFINITY;
  if (text === 'NaN') return Number.NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) throw new Error(`${where}: bad value ${text}`);
  return Number(text);
}

/** Buckets cumulative by `le`, one `+Inf` bucket equal to `_count`, per label set. */
function checkHistogram(family: Family): void {
  const series = new Map<string, { buckets: [number, number][]; count?: number; sum?: number }>();
  for (const s of family.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    const one = series.get(key) ?? { buckets: [] };
    series.set(key, one);
    if (s.name.endsWith('_bucket')) {
      if (le === undefined) throw new Error(`${family.name}: a bucket without le`);
      one.buckets.push([parseValue(le, `${family.name} le`), s.value]);
    } else if (s.name.endsWith('_count')) one.count = s.value;
    else one.sum = s.value;
  }
  for (const [key, one] of series) {
    const les = one.buckets.map(([le]) => le);
    if (les.some((le, i) => i > 0 && le <= (les[i - 1] as number))) throw new Error(`${family.name}${key}: buckets not in order of le`);
    if (one.buckets.some(([, n], i) => i > 0 && n < (one.buckets[i - 1] as [number, number])[1])) {
      throw new Error(`${family.name}${key}: buckets not cumulative`);
    }
    const inf = one.buckets.at(-1);
    if (inf === undefined || inf[0] !== Number.POSITIVE_INFINITY) throw new Error(`${family.name}${key}: no +Inf bucket`);
    if (one.count === undefined || one.sum === undefined) throw new Error(`${family.name}${key}: _count or _sum missing`);
    if (inf[1] !== one.count) throw new Error(`${family.name}${key}: +Inf bucket ${inf[1]} is not _count ${one.count}`);
  }
}
