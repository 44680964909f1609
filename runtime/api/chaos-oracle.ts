/**
 * The oracle of a chaos check of an app: compares a run with kills against a
 * reference run of the same app on the same stream-time line (so every batch had
 * the same input) and diagnoses the first difference. Pure: the CLI runner and the
 * in-process test kit both feed it what their runs recorded.
 */
import { canonicalKey } from '../graph/partitioner.ts';

/** One output operation receiving one batch in a run. */
export interface OutputRun {
  readonly time: number;
  readonly output: string;
  /** recordsDigest of what it received. */
  readonly digest: string;
  /** Which process (or in-process start) ran it: 0 before any kill, n after the n-th restart. */
  readonly life: number;
}

/** What one run recorded. */
export interface RunRecord {
  /** Every output execution, in order (a batch in flight at a kill may appear twice). */
  readonly outputs: readonly OutputRun[];
  /** Digest of each stateful operator's state at the end, by operator name. */
  readonly states: ReadonlyMap<string, string>;
  /** Files the app wrote in its run directory, by relative path (when the runner compares them). */
  readonly files?: ReadonlyMap<string, string>;
}

/** How a kill went, for the report. */
export interface KillNote {
  /** The batch time in flight or next when it happened. */
  readonly time: number;
  /** `after-output` (held after an output of the batch ran), `timed` (a random moment), `between-batches`. */
  readonly phase: string;
}

/** What kind of fault the oracle found. */
export type Diagnosis = 'pass' | 'non-deterministic' | 'not-idempotent' | 'recovery-diverged' | 'files-differ';

/** The verdict on a pair of runs. */
export interface OracleVerdict {
  /** `pass`, or the kind of fault found. */
  readonly diagnosis: Diagnosis;
  /** The earliest difference: its batch time, the output or operator, and what differs. */
  readonly firstDifference?: {
    /** The batch time. */
    readonly time: number;
    /** The output or operator. */
    readonly operator: string;
    /** What differs. */
    readonly what: string;
  };
  /** One line per finding, most telling first. */
  readonly findings: readonly string[];
  /** Output digests of the reference compared. */
  readonly outputsCompared: number;
  /** Batch times whose outputs ran twice in the run with kills (in flight at a kill), all with equal digests if fine. */
  readonly rerunBatches: readonly number[];
  /** Stateful operators whose final states were compared. */
  readonly statesCompared: readonly string[];
  /** Files the app wrote that were compared with the reference's. */
  readonly filesCompared: number;
}

const key = (time: number, output: string) => `${time}\u0000${output}`;

interface Difference {
  readonly time: number;
  readonly operator: string;
  readonly what: string;
  readonly life: number;
}

/**
 * Compares the run with kills against the reference.
 *
 * @example
 * const verdict = compareRuns(reference, chaos, kills);
 * if (verdict.diagnosis !== 'pass') console.log(verdict.findings.join('\n'));
 */
export function compareRuns(reference: RunRecord, chaos: RunRecord, kills: readonly KillNote[]): OracleVerdict {
  const expected = new Map<string, OutputRun>();
  for (const o of reference.outputs) if (!expected.has(key(o.time, o.output))) expected.set(key(o.time, o.output), o);
  const seen = new Map<string, OutputRun[]>();
  for (const o of chaos.outputs) {
    const list = seen.get(key(o.time, o.output)) ?? [];
    list.push(o);
    seen.set(key(o.time, o.output), list);
  }
  const diffs: Difference[] = [];
  const rerun = new Set<number>();
  for (const [k, runs] of seen) {
    const first = runs[0] as OutputRun;
    if (runs.length > 1) rerun.add(first.time);
    if (!expected.has(k))
      diffs.push({
        time: first.time,
        operator: first.output,
        what: 'ran in the run with kills but not in the reference',
        life: first.life,
      });
  }
  for (const [k, want] of expected) {
    const runs = seen.get(k);
    if (runs === undefined) {
      diffs.push({
        time: want.time,
        operator: want.output,
        what: 'never ran in the run with kills (a lost batch)',
        life: Number.MAX_SAFE_INTEGER,
      });
      continue;
    }
    const wrong = runs.find((r) => r.digest !== want.digest);
    if (wrong) {
      const where = wrong.life === 0 ? 'before any kill' : `after restart ${wrong.life}`;
      const again = runs[0] !== wrong ? `, ran again with other records than before the kill (which matched)` : '';
      diffs.push({
        time: want.time,
        operator: want.output,
        what: `received ${wrong.digest} (${where}${again}), the reference ${want.digest}`,
        life: wrong.life,
      });
    }
  }
  diffs.sort((a, b) => a.time - b.time || a.operator.localeCompare(b.operator));
  const stateDiffs: string[] = [];
  for (const [op, digest] of reference.states) {
    const got = chaos.states.get(op);
    if (got !== digest) stateDiffs.push(`final state of ${op}: ${got ?? 'missing'}, the reference ${digest}`);
  }
  const base = {
    outputsCompared: expected.size,
    rerunBatches: [...rerun].sort((a, b) => a - b),
    statesCompared: [...reference.states.keys()],
    filesCompared: reference.files?.size ?? 0,
  };
  const first = diffs[0];
  // Before the first kill both runs had the same input, code and history: a difference there is the app's.
  if (first && first.life === 0) {
    return {
      ...base,
      diagnosis: 'non-deterministic',
      firstDifference: { time: first.time, operator: first.operator, what: first.what },
      findings: [
        `non-deterministic: batch ${first.time}, ${first.operator} ${first.what}`,
        'the same batch on the same input gave other records with no kill involved: a user function depends on something besides its input (Math.random, Date.now, a counter outside Tributary, an order-dependent reduce), so its state cannot be exactly-once',
        ...diffs.slice(1, 5).map((d) => `also batch ${d.time}, ${d.operator}: ${d.what}`),
        ...stateDiffs,
      ],
    };
  }
  if (first || stateDiffs.length > 0) {
    const killLine = (life: number) => {
      const kill = kills[life - 1];
      return kill ? ` (restart ${life} followed the kill at batch ${kill.time}, ${kill.phase})` : '';
    };
    const firstDifference = first
      ? { time: first.time, operator: first.operator, what: first.what }
      : { time: Number.NaN, operator: (stateDiffs[0] ?? '').replace(/^final state of (.*?):.*$/, '$1'), what: stateDiffs[0] ?? '' };
    return {
      ...base,
      diagnosis: 'recovery-diverged',
      firstDifference,
      findings: [
        first
          ? `recovery diverged: batch ${first.time}, ${first.operator} ${first.what}${killLine(first.life)}`
          : `recovery diverged: ${stateDiffs[0]}`,
        'every batch before the first kill matched the reference: the restore and replay did not rebuild what the reference had (a lost or doubled batch in recovery, or app state kept outside Tributary)',
        ...diffs.slice(1, 6).map((d) => `also batch ${d.time}, ${d.operator}: ${d.what}`),
        ...stateDiffs,
      ],
    };
  }
  const fileFindings = compareFiles(reference.files, chaos.files);
  if (fileFindings.length > 0) {
    const repeated = fileFindings.every((f) => f.repeatedOnly);
    const batch = base.rerunBatches[0];
    const rerunOutputs =
      batch === undefined ? [] : [...seen.values()].filter((r) => r.length > 1 && r[0]?.time === batch).map((r) => r[0]?.output as string);
    const operator = rerunOutputs.join(', ') || (fileFindings[0] as FileFinding).file;
    return {
      ...base,
      diagnosis: repeated ? 'not-idempotent' : 'files-differ',
      firstDifference: { time: batch ?? Number.NaN, operator, what: (fileFindings[0] as FileFinding).line },
      findings: repeated
        ? [
            `not idempotent: ${fileFindings.map((f) => f.line).join('; ')}`,
            batch === undefined
              ? 'no batch ran its outputs twice, yet a file holds repeats'
              : `batch ${batch} was in flight at a kill and ran ${operator} again after the restart, with the same records (digests equal): an output that appends without regard to the batch time repeats them`,
            'make the output idempotent per batch time: write a file named by the time (saveAsTextFiles), or skip times already written',
          ]
        : [
            `files differ: ${fileFindings.map((f) => f.line).join('; ')}`,
            'outputs and states matched the reference: the app writes something besides what its outputs receive (a time stamp, a random name)',
          ],
    };
  }
  return { ...base, diagnosis: 'pass', findings: [] };
}

interface FileFinding {
  readonly file: string;
  readonly line: string;
  /** The file holds the reference's lines plus repeats of them, nothing else. */
  readonly repeatedOnly: boolean;
}

function lineCounts(text: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const l of text.split('\n')) if (l !== '') counts.set(l, (counts.get(l) ?? 0) + 1);
  return counts;
}

/** Both texts are JSON documents with the same content, whatever the order of object keys. */
function sameJson(a: string, b: string): boolean {
  try {
    return canonicalKey(JSON.parse(a)) === canonicalKey(JSON.parse(b));
  } catch {
    return false;
  }
}

function compareFiles(reference: ReadonlyMap<string, string> | undefined, chaos: ReadonlyMap<string, string> | undefined): FileFinding[] {
  if (reference === undefined || chaos === undefined) return [];
  const out: FileFinding[] = [];
  for (const file of [...new Set([...reference.keys(), ...chaos.keys()])].sort()) {
    const want = reference.get(file);
    const got = chaos.get(file);
    if (want === got) continue;
    if (want === undefined || got === undefined) {
      out.push({ file, line: `${file} ${want === undefined ? 'is not in the reference' : 'is missing'}`, repeatedOnly: false });
      continue;
    }
    if (sameJson(want, got)) continue;
    const w = lineCounts(want);
    const g = lineCounts(got);
    // The same lines in another order are the same output: a restored state may list its keys in another order.
    if (w.size === g.size && [...w].every(([l, n]) => g.get(l) === n)) continue;
    let extra = 0;
    let repeatedOnly = true;
    for (const [l, n] of g) {
      const m = w.get(l) ?? 0;
      if (n > m) extra += n - m;
      if (m === 0 || n < m) repeatedOnly = false;
    }
    for (const l of w.keys()) if (!g.has(l)) repeatedOnly = false;
    out.push({
      file,
      line: repeatedOnly
        ? `${file} holds ${extra} lines more than the reference, each a repeat of one it has`
        : `${file} differs from the reference`,
      repeatedOnly: repeatedOnly && extra > 0,
    });
  }
  return out;
}

/**
 * The lines of a chaos check's report, after its header lines.
 *
 * @example
 * formatVerdict(verdict).join('\n')
 */
export function formatVerdict(v: OracleVerdict): string[] {
  const first = v.firstDifference;
  return [
    `outputs compared:       ${v.outputsCompared} batch digests; ${v.rerunBatches.length} batches ran their outputs twice (in flight at a kill)`,
    `final states compared:  ${v.statesCompared.join(', ') || 'none (no stateful operator)'}`,
    ...(v.filesCompared > 0 ? [`files compared:         ${v.filesCompared}`] : []),
    `first difference:       ${first ? `${Number.isNaN(first.time) ? 'final state' : `batch ${first.time}`}, ${first.operator}: ${first.what}` : 'none'}`,
    `diagnosis:              ${v.diagnosis}`,
    ...v.findings.map((f) => `  ${f}`),
  ];
}
