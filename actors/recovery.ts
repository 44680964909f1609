/**
 * Opening a checkpoint directory: takes the writer lock, reads the journal and,
 * when the app ran before, checks the graph, restores the states of the newest
 * readable checkpoint and lists the batches to replay. A damaged or missing
 * snapshot falls back to the previous checkpoint (a longer replay, nothing lost).
 */

import type { JournalEvent } from '../journal/events.ts';
import { FileJournal } from '../journal/file-journal.ts';
import { JetStreamJournal } from '../journal/jetstream-journal.ts';
import type { Journal, JournalContents } from '../journal/journal.ts';
import { blockIdsOf, foldJournal, type JournalState, missingAllocation, pendingBlocks } from '../journal/recovery-plan.ts';
import { CorruptCheckpointError, IncompatibleCheckpointError } from '../runtime/base/errors.ts';
import type { Logger } from '../runtime/base/logger.ts';
import { compareFingerprints, fingerprintOf } from '../runtime/graph/fingerprint.ts';
import type { GraphNode, OutputOp, PartitionState } from '../runtime/graph/graph.ts';
import type { InputRecovery } from '../runtime/graph/input-source.ts';
import type { Plan } from '../runtime/graph/plan.ts';
import type { Allocation, ReceivedBlock, SnapshotData } from '../runtime/graph/wire.ts';
import { checkNatsServerFor, connectNats, isNatsUrl, type NatsOptions, parseNatsUrl } from '../runtime/nats/nats-connection.ts';
import { FileSnapshotStore } from '../snapshots/file-snapshot-store.ts';
import { JetStreamSnapshotStore } from '../snapshots/jetstream-snapshot-store.ts';
import type { SnapshotStore } from '../snapshots/snapshot-store.ts';
import { Checkpointer, type CheckpointSettings } from './checkpointer.ts';
import type { ReplayJob } from './driver.ts';

type Checkpoint = Extract<JournalEvent, { type: 'checkpoint.completed' }>;

/** What opening needs to know about the app. */
export interface OpenCheckpointArgs {
  /** A directory, or a NATS URL for JetStream. */
  readonly dir: string;
  readonly nats?: NatsOptions | undefined;
  readonly appName: string;
  readonly batchDurationMs: number;
  readonly nowMs: number;
  readonly nodes: readonly GraphNode[];
  readonly outputs: readonly OutputOp[];
  readonly plan: Plan;
  readonly keys: ReadonlyMap<number, string>;
  readonly settings: CheckpointSettings;
  readonly logger: Logger;
  /**
   * False on a cluster: the workers read their own partitions' snapshots, so the
   * driver only picks the newest checkpoint (default true).
   */
  readonly loadStates?: boolean;
}

/** An opened checkpoint, ready for the driver. */
export interface OpenedCheckpoint {
  readonly journal: Journal;
  readonly checkpointer: Checkpointer;
  readonly zeroTimeMs: number;
  readonly restored: Map<number, PartitionState[]>;
  readonly replay: ReplayJob[];
  readonly inputs: Map<number, InputRecovery>;
  /** The newest batch time the journal knows of (the zero time for a new app). */
  readonly lastBatchMs: number;
  /** The checkpoint the states come from, if any. */
  readonly resumedFrom: number | undefined;
  /** Its snapshot chains by `operator/partition` (what cluster workers restore from). */
  readonly resumedChains: Readonly<Record<string, readonly number[]>>;
  /** The assignment journaled last (cluster runs). */
  readonly assignment: JournalState['assignment'];
}

async function loadStates(cp: Checkpoint, args: OpenCheckpointArgs, store: SnapshotStore): Promise<Map<number, PartitionState[]>> {
  const restored = new Map<number, PartitionState[]>();
  for (const node of args.plan.stateful) {
    if (node.kind !== 'stateful') continue;
    const key = args.keys.get(node.id) as string;
    const refs = cp.snapshots.filter((r) => r.operator === key);
    // An operator added (with a uid) since the checkpoint starts empty.
    if (refs.length === 0) continue;
    // Every snapshot of every partition is read at once: on JetStream each read is a round trip or more.
    const chains = await Promise.all(
      Array.from({ length: node.partitions }, (_, q) => {
        const ref = refs.find((r) => r.partition === q);
        if (ref === undefined) throw new CorruptCheckpointError(`checkpoint ${cp.time} has no snapshot of ${key} partition ${q}`);
        return Promise.all(ref.chain.map((time) => store.read({ operator: key, partition: q, time })));
      }),
    );
    restored.set(
      node.id,
      await Promise.all(chains.map((chain: SnapshotData[], q) => node.stateful.restoreChain(chain, q, node.partitions))),
    );
  }
  return restored;
}

function inputRecoveries(
  args: OpenCheckpointArgs,
  folded: JournalState,
  cp: Checkpoint | undefined,
  replayTimes: number[],
): Map<number, InputRecovery> {
  const out = new Map<number, InputRecovery>();
  for (const node of args.plan.inputs) {
    const key = args.keys.get(node.id) as string;
    const allocations: Allocation[] = [];
    for (const t of replayTimes) {
      const a = folded.allocations.get(t)?.[key];
      if (a !== undefined) allocations.push(a);
    }
    const blocks = new Map<string, ReceivedBlock>();
    for (const { stream, block } of folded.blocks.values()) if (stream === key) blocks.set(block.id, block);
    out.set(node.id, { position: cp?.positions[key], allocations, blocks, pending: pendingBlocks(folded, key) });
  }
  return out;
}

/** Whether a replay from `fromMs` has every batch it needs; else a reason. */
function replayGap(folded: JournalState, fromMs: number, args: OpenCheckpointArgs): string | undefined {
  const missing = missingAllocation(folded, fromMs, args.batchDurationMs);
  return missing === undefined ? undefined : `the journal no longer holds batch ${missing} to replay from it`;
}

/**
 * The newest checkpoint whose states read back and whose replay the journal still
 * holds, with its states; else none, to replay from the start if the journal still
 * reaches it. Each one passed over is logged with why (the file and offset of a bad
 * frame); when none will do, CORRUPT_CHECKPOINT lists them all.
 */
async function chooseCheckpoint(
  args: OpenCheckpointArgs,
  folded: JournalState,
  store: SnapshotStore,
  zeroTimeMs: number,
  complete: boolean,
): Promise<{ chosen: Checkpoint | undefined; restored: Map<number, PartitionState[]> }> {
  const reasons: string[] = [];
  for (const cp of [...folded.checkpoints].reverse()) {
    const gap = replayGap(folded, cp.time, args);
    if (gap !== undefined) {
      args.logger.warn({ time: cp.time, reason: gap }, 'checkpoint cannot be replayed from: falling back to the previous one');
      reasons.push(`checkpoint ${cp.time}: ${gap}`);
      continue;
    }
    if (args.loadStates === false) return { chosen: cp, restored: new Map() };
    try {
      return { chosen: cp, restored: await loadStates(cp, args, store) };
    } catch (error) {
      if (!(error instanceof CorruptCheckpointError)) throw error;
      args.logger.warn(
        { err: error, time: cp.time, reason: error.message },
        'checkpoint unreadable: falling back to the previous one (longer replay)',
      );
      reasons.push(`checkpoint ${cp.time}: ${error.message}`);
    }
  }
  if (folded.checkpoints.length > 0) {
    const gap = complete ? replayGap(folded, zeroTimeMs, args) : 'the journal no longer goes back to the start';
    if (gap !== undefined) {
      throw new CorruptCheckpointError(`no checkpoint in ${args.dir} can be read and ${gap}: cannot recover (${reasons.join('; ')})`);
    }
    args.logger.warn({ checkpoints: folded.checkpoints.length }, 'no checkpoint can be read: replaying every batch from the start');
  }
  return { chosen: undefined, restored: new Map() };
}

async function openStores(args: OpenCheckpointArgs): Promise<{ journal: Journal; store: SnapshotStore }> {
  if (!isNatsUrl(args.dir)) return { journal: new FileJournal(args.dir, args.logger), store: new FileSnapshotStore(args.dir) };
  const target = parseNatsUrl(args.dir, args.nats);
  const nc = await connectNats(target, `tributary-${args.appName}-driver`);
  try {
    // A clustered checkpoint on a 2.9 server risks the journal (nats-io/nats-server#4196): refused up front.
    await checkNatsServerFor(nc, target.replicas);
  } catch (error) {
    await nc.close().catch(() => {});
    throw error;
  }
  const store = new JetStreamSnapshotStore(nc, args.appName, target.replicas, args.logger);
  try {
    await store.ready();
  } catch (error) {
    await nc.close().catch(() => {});
    throw error;
  }
  return { journal: new JetStreamJournal(nc, args.appName, target.replicas, args.logger), store };
}

/**
 * Opens (or creates) the checkpoint of an app.
 *
 * @example
 * const opened = await openCheckpoint({ dir, appName, batchDurationMs, nowMs, nodes, outputs, plan, keys, settings, logger });
 */
export async function openCheckpoint(args: OpenCheckpointArgs): Promise<OpenedCheckpoint> {
  const { journal, store } = await openStores(args);
  let contents: JournalContents;
  try {
    contents = await journal.open();
  } catch (error) {
    await journal.close().catch(() => {});
    throw error;
  }
  try {
    const folded = foldJournal(contents.events);
    const graph = fingerprintOf(args.nodes, args.outputs, args.keys);
    let zeroTimeMs = Math.floor(args.nowMs / args.batchDurationMs) * args.batchDurationMs;
    let chosen: Checkpoint | undefined;
    let restored = new Map<number, PartitionState[]>();
    let replayTimes: number[] = [];
    if (folded.started === undefined && contents.events.length > 0) {
      // Every segment begins with the configuration: events without it are a partial
      // journal (e.g. read from a replica still catching up), never a new app.
      throw new CorruptCheckpointError(`the journal in ${args.dir} holds ${contents.events.length} events but no context.started`);
    }
    if (folded.started !== undefined) {
      const differences = compareFingerprints(folded.started.graph, graph);
      if (folded.started.batchDurationMs !== args.batchDurationMs) {
        differences.unshift(`batchDuration: ${folded.started.batchDurationMs} ms -> ${args.batchDurationMs} ms`);
      }
      if (folded.started.appName !== args.appName) differences.unshift(`appName: ${folded.started.appName} -> ${args.appName}`);
      if (differences.length > 0) throw new IncompatibleCheckpointError(differences);
      zeroTimeMs = folded.started.zeroTimeMs;
      ({ chosen, restored } = await chooseCheckpoint(args, folded, store, zeroTimeMs, contents.complete));
      const from = chosen?.time ?? zeroTimeMs;
      replayTimes = [...folded.allocations.keys()].filter((t) => t > from).sort((a, b) => a - b);
    }
    const lastBatchMs = Math.max(zeroTimeMs, chosen?.time ?? zeroTimeMs, ...replayTimes);
    const byKey = new Map([...args.keys].map(([id, key]) => [key, id]));
    const replay: ReplayJob[] = replayTimes.map((time) => {
      const allocations = new Map<number, Allocation>();
      for (const [key, a] of Object.entries(folded.allocations.get(time) ?? {})) {
        const id = byKey.get(key);
        if (id !== undefined) allocations.set(id, a);
      }
      return { time, allocations, completed: folded.completed.has(time) };
    });
    const started = Checkpointer.startedEvent(args.appName, args.batchDurationMs, zeroTimeMs, contents.epoch, graph);
    // Older checkpoints the journal can still replay from stay a fallback until a newer independent chain exists.
    const older = folded.checkpoints.filter((cp) => cp.time < (chosen?.time ?? 0) && replayGap(folded, cp.time, args) === undefined);
    const checkpointer = new Checkpointer(journal, store, args.settings, args.logger, started, chosen, older);
    const from = chosen?.time ?? Number.NEGATIVE_INFINITY;
    // Blocks of batches after the checkpoint, and blocks no batch took yet, are still needed.
    const needed = new Set<string>();
    for (const t of replayTimes) for (const id of blockIdsOf(folded.allocations.get(t) ?? {})) needed.add(id);
    for (const node of args.plan.inputs) for (const b of pendingBlocks(folded, args.keys.get(node.id) as string)) needed.add(b.id);
    checkpointer.remember(
      replayTimes.map((time) => ({ v: 1 as const, type: 'batch.allocated' as const, time, inputs: folded.allocations.get(time) ?? {} })),
      [...folded.completed].filter((t) => t > from),
      [...folded.blocks.values()]
        .filter(({ block }) => needed.has(block.id))
        .map(({ stream, block }) => ({ v: 1 as const, type: 'receiver.block' as const, stream, block })),
    );
    await checkpointer.begin();
    if (chosen !== undefined || replay.length > 0) {
      args.logger.info({ checkpoint: chosen?.time, replay: replay.length }, 'resuming from the checkpoint');
    }
    return {
      journal,
      checkpointer,
      zeroTimeMs,
      restored,
      replay,
      inputs: folded.started ? inputRecoveries(args, folded, chosen, replayTimes) : new Map(),
      lastBatchMs,
      resumedFrom: chosen?.time,
      resumedChains: Object.fromEntries((chosen?.snapshots ?? []).map((r) => [`${r.operator}/${r.partition}`, r.chain])),
      assignment: folded.assignment,
    };
  } catch (error) {
    await journal.close().catch(() => {});
    throw error;
  }
}
