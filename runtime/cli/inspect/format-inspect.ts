/**
 * The human form of an inspect report: a summary of `name  value` lines, then
 * tables with aligned columns (graph, the last checkpoint's snapshots, damage).
 */
import type { InspectReport } from './inspect-report.ts';

/** Pending batch times listed in full before the rest is summed up. */
const PENDING_SHOWN_MAX = 20;

/**
 * Columns padded to their widest cell, two spaces apart.
 *
 * @example
 * formatTable(['KEY', 'UID'], [['totals', 'totals']]) // 'KEY     UID\ntotals  totals'
 */
export function formatTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] as number)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

function bytes(n: number): string {
  return n === 1 ? '1 byte' : `${n} bytes`;
}

/** A batch or checkpoint time: its milliseconds, and the UTC moment they stand for. */
function time(ms: number): string {
  return `${ms} (${new Date(ms).toISOString()})`;
}

function writer(w: InspectReport['writer']): string {
  if (w.epoch === null) return 'none yet';
  const owner =
    w.state === 'held'
      ? `held by process ${w.pid} on ${w.host} (running)`
      : w.state === 'released'
        ? `released by process ${w.pid} on ${w.host} (stopped cleanly)`
        : w.state === 'stale'
          ? `process ${w.pid} on ${w.host} is gone (the next start takes over)`
          : w.state === 'unknown'
            ? `process ${w.pid} on another host, ${w.host}`
            : '';
  return owner === '' ? `epoch ${w.epoch}` : `epoch ${w.epoch}, ${owner}`;
}

function journal(j: InspectReport['journal']): string {
  const where =
    j.stream !== undefined
      ? `stream ${j.stream}: ${j.messages} messages (seq ${j.firstSeq}..${j.lastSeq}${j.replayFromSeq !== undefined ? `, replay from ${j.replayFromSeq}` : ''})`
      : `${j.segments} segment${j.segments === 1 ? '' : 's'}`;
  const torn = j.tornTail
    ? `; torn tail of ${bytes(j.tornTail.bytes)} at ${j.tornTail.file} offset ${j.tornTail.offset} (cut on restart)`
    : '';
  return `${where}, ${bytes(j.bytes)}, ${j.events} events${torn}`;
}

function pending(r: InspectReport): string {
  const p = r.pendingReplay;
  if (p.length === 0) return 'none';
  const shown = p.slice(0, PENDING_SHOWN_MAX).map((b) => `${b.time}${b.outputsDone ? '' : '*'}`);
  const more = p.length > PENDING_SHOWN_MAX ? ` ... and ${p.length - PENDING_SHOWN_MAX} more` : '';
  const rerun = p.some((b) => !b.outputsDone) ? '; * = outputs run again' : '';
  return `${p.length} batch${p.length === 1 ? '' : 'es'}: ${shown.join(', ')}${more}${rerun}`;
}

function resumeFrom(r: InspectReport): string {
  if (!r.recoverable) return 'nothing: a restart fails with CORRUPT_CHECKPOINT (see damage)';
  if (r.resumeFrom !== null) return String(r.resumeFrom);
  return r.app ? 'the start (every batch replayed)' : '-';
}

function summary(r: InspectReport): string {
  const rows: [string, string][] = [
    ['checkpoint', `${r.location} (${r.store})`],
    [
      'app',
      r.app
        ? `${r.app.name} (batch ${r.app.batchDurationMs} ms, zero time ${r.app.zeroTimeMs}${r.app.stoppedCleanly ? ', stopped cleanly' : ''})`
        : 'unknown (no context.started)',
    ],
    ['writer', writer(r.writer)],
    ['journal', journal(r.journal)],
    ['snapshots', `${r.snapshots.count} stored, ${bytes(r.snapshots.bytes)}`],
    [
      'last checkpoint',
      r.lastCheckpoint
        ? `${time(r.lastCheckpoint.time)}, ${r.lastCheckpoint.snapshots.length} snapshots, ${bytes(r.lastCheckpoint.bytes)}`
        : 'none yet',
    ],
    ['checkpoints kept', r.checkpoints.length > 0 ? r.checkpoints.join(', ') : 'none'],
    ['resume from', resumeFrom(r)],
    ['pending replay', pending(r)],
  ];
  if (r.deadLetters) rows.push(['dead letters', `${r.deadLetters.records} records in ${r.deadLetters.files} files`]);
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n');
}

/**
 * The report as text for a terminal.
 *
 * @example
 * process.stdout.write(formatInspectReport(await inspectCheckpoint(dir)));
 */
export function formatInspectReport(r: InspectReport): string {
  const parts = [summary(r)];
  if (r.graph.length > 0) {
    parts.push(
      `graph\n${formatTable(
        ['KEY', 'OPERATOR', 'UID', 'PARTITIONS', 'SLIDE MS'],
        r.graph.map((g) => [g.key, g.operator, g.uid ?? '-', String(g.partitions), String(g.slideMs)]),
      )}`,
    );
  }
  if (r.lastCheckpoint && r.lastCheckpoint.snapshots.length > 0) {
    parts.push(
      `snapshots of checkpoint ${r.lastCheckpoint.time}\n${formatTable(
        ['OPERATOR', 'PARTITION', 'KIND', 'BYTES', 'CHAIN'],
        r.lastCheckpoint.snapshots.map((s) => [s.operator, String(s.partition), s.kind, String(s.bytes), s.chain.join(',')]),
      )}`,
    );
  }
  if (r.verify) {
    const read = `verify: ${r.verify.journalFrames} journal frames, ${r.verify.snapshotsRead} snapshots read`;
    parts.push(r.damage.length === 0 ? `${read}: all good` : `${read}: ${r.damage.length} bad`);
  }
  if (r.damage.length > 0) {
    parts.push(
      `damage\n${formatTable(
        ['KIND', 'WHERE', 'OFFSET', 'REASON'],
        r.damage.map((d) => [d.kind, d.where, String(d.offset), d.reason]),
      )}`,
    );
  }
  return `${parts.join('\n\n')}\n`;
}
