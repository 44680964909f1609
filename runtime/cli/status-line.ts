/**
 * The one-line live status of a running app: batch time, records, processing time
 * and scheduling delay of the last batch, and batches waiting.
 */
import type { BatchInfo } from '../../actors/driver.ts';

/**
 * Formats one status line.
 *
 * @example
 * formatStatus({ time: 1000, records: 20, processingMs: 3.2, schedulingDelayMs: 0, queuedBatches: 0 }, 5)
 */
export function formatStatus(info: BatchInfo, batchesDone: number): string {
  const clock = new Date(info.time).toISOString().slice(11, 19);
  return (
    `batch ${clock} (#${batchesDone}) | records ${info.records} | processing ${info.processingMs.toFixed(1)} ms` +
    ` | scheduling delay ${info.schedulingDelayMs} ms | queued ${info.queuedBatches}`
  );
}

/**
 * Shows the status on stderr: rewritten in place on a terminal, one line per
 * `everyBatches` batches otherwise (logs stay readable).
 */
export class StatusLine {
  #done = 0;
  readonly #tty: boolean;
  readonly #everyBatches: number;

  constructor(stream: NodeJS.WriteStream = process.stderr, everyBatches = 5) {
    this.#tty = stream.isTTY === true;
    this.#everyBatches = everyBatches;
  }

  update(info: BatchInfo): void {
    this.#done++;
    const line = formatStatus(info, this.#done);
    if (this.#tty) process.stderr.write(`\r\x1b[2K${line}`);
    else if (this.#done % this.#everyBatches === 0) process.stderr.write(`${line}\n`);
  }

  end(): void {
    if (this.#tty) process.stderr.write('\n');
  }
}
