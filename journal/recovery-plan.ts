/**
 * Reads a journal's events into what recovery needs: the last configuration, the
 * checkpoints (newest last), every batch's input allocation and completion, and
 * the receiver blocks. Segment heads repeat facts, so everything here is keyed
 * and idempotent.
 */

import { assertNever } from '../runtime/base/assert.ts';
import type { Allocation, ReceivedBlock } from '../runtime/graph/wire.ts';
import type { JournalEvent } from './events.ts';

type Started = Extract<JournalEvent, { type: 'context.started' }>;
type Checkpoint = Extract<JournalEvent, { type: 'checkpoint.completed' }>;
type AssignmentChanged = Extract<JournalEvent, { type: 'assignment.changed' }>;

/** The journal, folded. */
export interface JournalState {
  readonly started: Started | undefined;
  /** Completed checkpoints by time, oldest first. */
  readonly checkpoints: readonly Checkpoint[];
  /** Input allocations of each batch time, by input key. */
  readonly allocations: ReadonlyMap<number, Readonly<Record<string, Allocation>>>;
  readonly completed: ReadonlySet<number>;
  /** Received blocks by id, with the stream they belong to. */
  readonly blocks: ReadonlyMap<string, { readonly stream: string; readonly block: ReceivedBlock }>;
  /** True when the app stopped gracefully last time. */
  readonly stoppedCleanly: boolean;
  /** The last assignment of partitions to workers (cluster runs). */
  readonly assignment: AssignmentChanged | undefined;
}

/**
 * Folds events into a {@link JournalState}.
 *
 * @example
 * const state = foldJournal(contents.events);
 */
export function foldJournal(events: readonly JournalEvent[]): JournalState {
  let started: Started | undefined;
  const checkpoints = new Map<number, Checkpoint>();
  const allocations = new Map<number, Readonly<Record<string, Allocation>>>();
  const completed = new Set<number>();
  const blocks = new Map<string, { stream: string; block: ReceivedBlock }>();
  let stoppedCleanly = false;
  let assignment: AssignmentChanged | undefined;
  for (const e of events) {
    switch (e.type) {
      case 'context.started':
        started = e;
        stoppedCleanly = false;
        break;
      case 'batch.allocated':
        allocations.set(e.time, e.inputs);
        break;
      case 'batch.completed':
        completed.add(e.time);
        break;
      case 'checkpoint.completed':
        checkpoints.set(e.time, e);
        break;
      case 'receiver.block':
        blocks.set(e.block.id, { stream: e.stream, block: e.block });
        break;
      case 'context.stopped':
        stoppedCleanly = true;
        break;
      case 'assignment.changed':
        assignment = e;
        break;
      default:
        assertNever(e);
    }
  }
  return {
    started,
    checkpoints: [...checkpoints.values()].sort((a, b) => a.time - b.time),
    allocations,
    completed,
    blocks,
    stoppedCleanly,
    assignment,
  };
}

/** Ids of blocks no allocation refers to yet (received, not yet in a batch). */
export function pendingBlocks(state: JournalState, stream: string): ReceivedBlock[] {
  const allocated = new Set<string>();
  for (const inputs of state.allocations.values()) {
    for (const id of blockIdsOf(inputs)) allocated.add(id);
  }
  return [...state.blocks.values()].filter((b) => b.stream === stream && !allocated.has(b.block.id)).map((b) => b.block);
}

/** The ids of the received blocks an allocation uses. */
export function blockIdsOf(inputs: Readonly<Record<string, Allocation>>): string[] {
  const ids: string[] = [];
  for (const a of Object.values(inputs)) if (a.type === 'blocks') ids.push(...a.ids);
  return ids;
}

/**
 * The first batch time after `fromMs` whose allocation the journal no longer holds,
 * up to the newest one it holds; undefined when a replay from `fromMs` is complete.
 * Batches are allocated one per batch duration without gaps, so a gap means the
 * segment holding it was deleted, and a replay over it would skip that batch's input.
 *
 * @example
 * missingAllocation(state, 4000, 1000) // 5000 when batch 5 s was in a deleted segment
 */
export function missingAllocation(state: JournalState, fromMs: number, batchDurationMs: number): number | undefined {
  let newest = Number.NEGATIVE_INFINITY;
  for (const t of state.allocations.keys()) newest = Math.max(newest, t);
  for (let t = fromMs + batchDurationMs; t <= newest; t += batchDurationMs) if (!state.allocations.has(t)) return t;
  return undefined;
}
