import test from 'ava';
import type { JournalEvent } from '../../journal/events.ts';
import { foldJournal, pendingBlocks } from '../../journal/recovery-plan.ts';
import type { ReceivedBlock } from '../../runtime/graph/wire.ts';

function started(epoch: number): JournalEvent {
  return { v: 1, type: 'context.started', appName: 'wc', batchDurationMs: 1000, zeroTimeMs: 0, epoch, graph: [] };
}

function allocated(time: number, blocks: ReceivedBlock[]): JournalEvent {
  return {
    v: 1,
    type: 'batch.allocated',
    time,
    inputs: {
      'queueStream-1': { type: 'queue', from: time / 1000 - 1, to: time / 1000 },
      'socket-2': { type: 'blocks', ids: blocks.map((b) => b.id) },
    },
  };
}

function completed(time: number): JournalEvent {
  return { v: 1, type: 'batch.completed', time };
}

function checkpoint(time: number): JournalEvent {
  return {
    v: 1,
    type: 'checkpoint.completed',
    time,
    snapshots: [{ operator: 'reduceByKey-1', partition: 0, time, kind: 'full', chain: [time], bytes: 10 }],
    positions: { 'queueStream-1': time / 1000 },
  };
}

function block(id: string, ...records: unknown[]): ReceivedBlock {
  return { id, records };
}

function received(stream: string, b: ReceivedBlock): JournalEvent {
  return { v: 1, type: 'receiver.block', stream, block: b };
}

const b1 = block('b1', 'a');
const b2 = block('b2', 'b');
const b3 = block('b3', 'c');
const b4 = block('b4', 'd');
const other = block('o1', 'x');

/** Two segments: the second starts with a head repeating the facts still needed. */
const SEGMENTS: JournalEvent[] = [
  started(1),
  received('socket-2', b1),
  allocated(1000, [b1]),
  completed(1000),
  received('socket-2', b2),
  allocated(2000, [b2]),
  completed(2000),
  checkpoint(2000),
  received('socket-2', b3),
  received('other-3', other),
  allocated(3000, []),
  // Head of the next segment.
  started(1),
  checkpoint(2000),
  received('socket-2', b3),
  received('other-3', other),
  allocated(3000, []),
  // After the head.
  completed(3000),
  received('socket-2', b4),
];

test('recovery plan - an empty journal folds to nothing', (t) => {
  const state = foldJournal([]);
  t.is(state.started, undefined);
  t.deepEqual(state.checkpoints, []);
  t.is(state.allocations.size, 0);
  t.is(state.completed.size, 0);
  t.is(state.blocks.size, 0);
  t.false(state.stoppedCleanly);
});

test('recovery plan - repeated heads are folded once', (t) => {
  const state = foldJournal(SEGMENTS);
  t.deepEqual(state.started, started(1));
  t.deepEqual(
    state.checkpoints.map((c) => c.time),
    [2000],
  );
  t.deepEqual([...state.allocations.keys()], [1000, 2000, 3000]);
  t.deepEqual(state.allocations.get(3000), (allocated(3000, []) as Extract<JournalEvent, { type: 'batch.allocated' }>).inputs);
  t.deepEqual([...state.completed].sort(), [1000, 2000, 3000]);
  t.deepEqual([...state.blocks.keys()], ['b1', 'b2', 'b3', 'o1', 'b4']);
  t.deepEqual(state.blocks.get('o1'), { stream: 'other-3', block: other });
});

test('recovery plan - folding a journal twice over gives the same state', (t) => {
  const once = foldJournal(SEGMENTS);
  const twice = foldJournal([...SEGMENTS, ...SEGMENTS]);
  t.deepEqual(twice, once);
});

test('recovery plan - checkpoints are ordered by time whatever the journal order', (t) => {
  const state = foldJournal([started(1), checkpoint(3000), checkpoint(1000), checkpoint(5000), checkpoint(1000), checkpoint(2000)]);
  t.deepEqual(
    state.checkpoints.map((c) => c.time),
    [1000, 2000, 3000, 5000],
  );
  t.deepEqual(state.checkpoints[state.checkpoints.length - 1], checkpoint(5000));
});

test('recovery plan - the last context.started wins and a later stop is clean', (t) => {
  const stopped: JournalEvent = { v: 1, type: 'context.stopped', time: 3000 };
  t.true(foldJournal([started(1), completed(1000), stopped]).stoppedCleanly);
  const restarted = foldJournal([started(1), stopped, started(2), completed(4000)]);
  t.false(restarted.stoppedCleanly);
  t.is(restarted.started?.type === 'context.started' ? restarted.started.epoch : undefined, 2);
  // A head repeating context.started after a stop means the app ran again.
  t.false(foldJournal([started(1), stopped, started(1)]).stoppedCleanly);
});

test('recovery plan - pending blocks are the received blocks no allocation names, per stream', (t) => {
  const state = foldJournal(SEGMENTS);
  t.deepEqual(pendingBlocks(state, 'socket-2'), [b3, b4]);
  t.deepEqual(pendingBlocks(state, 'other-3'), [other]);
  t.deepEqual(pendingBlocks(state, 'nobody'), []);
});

test('recovery plan - a block allocated later is no longer pending', (t) => {
  const state = foldJournal([...SEGMENTS, allocated(4000, [b3, b4])]);
  t.deepEqual(pendingBlocks(state, 'socket-2'), []);
  t.deepEqual(pendingBlocks(state, 'other-3'), [other]);
});

test('recovery plan - a block received again keeps its first place and is pending once', (t) => {
  const state = foldJournal([started(1), received('s', b1), received('s', b2), received('s', b1)]);
  t.deepEqual(pendingBlocks(state, 's'), [b1, b2]);
});
