/**
 * The process `tributary chaos <app>` runs (and kills): loads the app module, hands
 * its context the chaos harness (a ManualClock at 0, the run's checkpoint), drives
 * it batch by batch to the end of the stream-time line and reports on stdout, one
 * JSON object a line:
 *
 *   {"type":"zero","time":0}                              started (resumed) at this zero time
 *   {"type":"out","time":..,"output":..,"digest":..}      an output is about to receive a batch
 *   {"type":"batch","time":..}                            a batch completed
 *   {"type":"hold","time":..,"output":..}                 held after that output ran: kill me now
 *   {"type":"state","operator":..,"digest":..}            final state digests, after the last batch
 *   {"type":"done"}                                       stopped gracefully
 *   {"type":"refused","reason":..}                        the app cannot be checked (exit code 4)
 *
 *   node app-child.js <options as JSON>
 */
import { CHAOS_HARNESS, type ChaosHarness } from '../../api/chaos-harness.ts';
import { ManualClock } from '../../base/manual-clock.ts';
import { loadApp } from '../load-app.ts';

/** What the runner tells a child. */
export interface AppChildOptions {
  readonly app: string;
  readonly args: readonly string[];
  readonly checkpoint: string;
  /** Batches of stream time to run (the line ends at zeroTime + batches * batchDuration). */
  readonly batches: number;
  /** Hold after this output (index into the app's outputs, modulo their number) of this batch (1-based). */
  readonly hold?: { readonly batch: number; readonly pick: number };
}

const options = JSON.parse(process.argv[2] ?? '{}') as AppChildOptions;
const say = (message: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(message)}\n`);
const refuse = (reason: string) => {
  say({ type: 'refused', reason });
  process.exit(4);
};

const app = await loadApp(options.app);
const ssc = await app({ args: options.args });
if (ssc.lifecycle !== 'initialized') refuse('the app started its context itself: return it unstarted so that the check can drive it');
const outputs = ssc.graph.outputs.map((o) => o.name);
const holdOutput = options.hold ? outputs[options.hold.pick % Math.max(1, outputs.length)] : undefined;
let holdTime = Number.NaN;
let states: (() => Promise<Map<string, string>>) | undefined;
const harness: ChaosHarness = {
  clock: new ManualClock(0),
  checkpoint: options.checkpoint,
  outputReceived: (time, output, digest) => say({ type: 'out', time, output, digest }),
  outputRan: (time, output) => {
    if (time !== holdTime || output !== holdOutput) return;
    say({ type: 'hold', time, output });
    // The runner SIGKILLs this process now, with the batch in flight.
    return new Promise<void>(() => {});
  },
  started: (read) => {
    states = read;
  },
};
ssc[CHAOS_HARNESS](harness);
let completed = Number.NEGATIVE_INFINITY;
ssc.addStreamingListener({
  onBatchCompleted: (info) => {
    completed = Math.max(completed, info.time);
    say({ type: 'batch', time: info.time });
  },
  onError: (error) => {
    process.stderr.write(`chaos app failed: ${error.message}\n`);
    process.exit(3);
  },
});
try {
  await ssc.start();
} catch (error) {
  const e = error as { code?: string; message: string };
  if (e.code === 'INVALID_CONFIG') refuse(e.message);
  throw error;
}
say({ type: 'zero', time: ssc.zeroTime });
const end = ssc.zeroTime + options.batches * ssc.batchDurationMs;
if (options.hold) holdTime = ssc.zeroTime + options.hold.batch * ssc.batchDurationMs;
// Replayed batches first (runBatches(0) moves the clock to the last journaled batch and waits for it), then
// one batch of stream time at a time.
await ssc.runBatches(0);
completed = Math.max(completed, harness.clock.now());
while (completed < end) await ssc.runBatches(1);
for (const [operator, digest] of (await states?.()) ?? new Map<string, string>()) say({ type: 'state', operator, digest });
await ssc.stop();
say({ type: 'done' });
process.exit(0);
