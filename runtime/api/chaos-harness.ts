/**
 * The hook a chaos check (the `tributary chaos <app>` runner, or `checkRecovery` in
 * a test) sets on a context before it starts, never set by apps: the context then
 * runs on the check's clock and checkpoint location, reports a digest of what every
 * output received per batch time, may hold a batch after an output ran (where the
 * check kills it), and hands over its operators' final states. Kept out of
 * StreamingContext so that the context only calls in at three points.
 */
import type { Driver } from '../../actors/driver.ts';
import type { Clock } from '../base/clock.ts';
import { InvalidConfigError } from '../base/errors.ts';
import type { GraphNode, OutputOp } from '../graph/graph.ts';
import { recordsDigest, stateDigest } from './chaos-digest.ts';

/**
 * The symbol of StreamingContext's method that installs a harness. `Symbol.for`, so
 * that a runner loaded from dist/ reaches a context an app built from the sources.
 */
export const CHAOS_HARNESS = Symbol.for('tributary.chaos-harness');

/** Inputs whose records exist only once, in a receiver: see {@link replayRefusal}. */
const NOT_REPLAYABLE = new Map([
  ['socket', 'socketTextStream'],
  ['nats', 'natsStream'],
  ['receiver', 'receiverStream'],
]);

/** What a chaos check gives a context and learns from it. */
export interface ChaosHarness {
  /** The stream-time line both runs share (a ManualClock the check advances). */
  readonly clock: Clock;
  /** Where this run keeps its checkpoint (replaces the app's own location). */
  readonly checkpoint: string;
  /** An output is about to receive `records` of batch `time` (`digest`: see recordsDigest). */
  outputReceived(time: number, output: string, digest: string): void;
  /** An output of batch `time` ran; a promise that never settles holds the batch there, to be killed. */
  outputRan(time: number, output: string): void | Promise<void>;
  /** The context started; `states()` reads the digest of every stateful operator's committed state. */
  started(states: () => Promise<Map<string, string>>): void;
}

/**
 * Why a chaos check cannot run the graph, or undefined: an input a reference run
 * cannot read again (a receiver's records are in its write-ahead log, so the app
 * recovers, but a second run would read other records from the source).
 *
 * @example
 * replayRefusal(ssc.graph.nodes) // 'socketTextStream#1 reads a TCP socket ...'
 */
export function replayRefusal(nodes: readonly GraphNode[]): string | undefined {
  for (const node of nodes) {
    if (node.kind !== 'input') continue;
    const api = NOT_REPLAYABLE.get(node.source.kind);
    if (api === undefined) continue;
    return (
      `${node.name} (${api}) cannot be replayed from its source: a receiver's write-ahead log lets the app ` +
      'recover, but a reference run without kills would receive other records, so the two runs cannot be compared. ' +
      'Chaos checks need replayable sources: generatorStream, queueStream, textFileStream, jetstreamStream'
    );
  }
  return undefined;
}

/**
 * Checks that a context can run under a harness and wraps its outputs so that each
 * reports its digest before it runs and may be held after it ran. Throws
 * INVALID_CONFIG when it cannot.
 *
 * @example
 * const outputs = harnessOutputs(harness, graph.nodes, graph.outputs, { checkpoint, cluster: false });
 */
export function harnessOutputs(
  harness: ChaosHarness,
  nodes: readonly GraphNode[],
  outputs: readonly OutputOp[],
  context: { readonly checkpoint: string | undefined; readonly cluster: boolean },
): OutputOp[] {
  const refusal = replayRefusal(nodes);
  if (refusal !== undefined) throw new InvalidConfigError(refusal);
  if (context.checkpoint === undefined) {
    throw new InvalidConfigError(
      'the app sets no checkpoint (getOrCreate(dir, ...) or ssc.checkpoint(dir)): its state cannot survive a kill, so there is nothing to check',
    );
  }
  if (context.cluster) throw new InvalidConfigError('chaos checks of an app run it in one process: remove its cluster(...) setting');
  return outputs.map((op) => ({
    ...op,
    run: async (records: unknown[], time: number) => {
      harness.outputReceived(time, op.name, recordsDigest(records));
      await op.run(records, time);
      await harness.outputRan(time, op.name);
    },
  }));
}

/**
 * The digest of every stateful operator's committed state, by operator name.
 *
 * @example
 * const digests = await stateDigests(driver, plan.stateful);
 */
export async function stateDigests(driver: Driver, stateful: readonly GraphNode[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const node of stateful) out.set(node.name, stateDigest(await driver.stateSnapshots(node.id)));
  return out;
}
