/**
 * A handover (a worker joining or leaving) restores every worker from a checkpoint of
 * the last completed batch. When that checkpoint cannot be committed (the journal
 * unreachable while a NATS server restarts), the workers restore an older one: the
 * batches journaled since then must run again, or their state is lost.
 */
import test from 'ava';
import type { BatchCoordinator } from '../../actors/batch-coordinator.ts';
import { type CapturedState, Checkpointer } from '../../actors/checkpointer.ts';
import { Reassignment, type RebalancedInfo, type ReplayBatch } from '../../actors/reassignment.ts';
import type { AssignmentWire, RestoreSpec } from '../../actors/transport/transport.ts';
import type { JournalEvent } from '../../journal/events.ts';
import { FileJournal } from '../../journal/file-journal.ts';
import type { Plan } from '../../runtime/graph/plan.ts';
import { FileSnapshotStore } from '../../snapshots/file-snapshot-store.ts';
import { quiet, TempDirs } from '../helpers/checkpoint-kit.ts';

const dirs = new TempDirs();
test.after.always(() => dirs.removeAll());

const BATCH_MS = 100;
const INTERVAL_MS = 5 * BATCH_MS;

/** A file journal that refuses checkpoint commits while `refusing` (as an unreachable JetStream would). */
class CommitRefusingJournal extends FileJournal {
  refusing = false;

  override append(event: JournalEvent): Promise<void> {
    if (this.refusing && event.type === 'checkpoint.completed') return Promise.reject(new Error('journal unreachable'));
    return super.append(event);
  }
}

/** What each worker wrote for one checkpoint (on a cluster the driver only records the figures). */
const captured: CapturedState[] = [0, 1].map((partition) => ({
  operator: 'totals',
  partition,
  stored: { kind: 'full', bytes: 10, entries: 1 },
}));

/** Batches 100..700 journaled and completed, checkpoint 500 committed; then `w1` leaves. */
async function handover(
  refuseCommit: boolean,
): Promise<{ restores: (RestoreSpec | undefined)[]; queued: ReplayBatch[]; moved: RebalancedInfo }> {
  const journal = new CommitRefusingJournal(await dirs.make('handover'), quiet);
  const { epoch } = await journal.open();
  const store = new FileSnapshotStore(await dirs.make('handover-snapshots'));
  const started = Checkpointer.startedEvent('app', BATCH_MS, 0, epoch, []);
  const cp = new Checkpointer(journal, store, { intervalMs: INTERVAL_MS, fullEvery: 3, keepCheckpoints: 2 }, quiet, started, undefined);
  await cp.begin();
  for (let time = BATCH_MS; time <= 7 * BATCH_MS; time += BATCH_MS) {
    await cp.allocated(time, {});
    await cp.completed(time);
    if (cp.isCheckpointTime(time)) await cp.checkpoint(time, captured, {});
  }
  assertCommitted(cp, INTERVAL_MS);

  const restores: (RestoreSpec | undefined)[] = [];
  const queued: ReplayBatch[] = [];
  const coordinator = {
    markLost: () => {},
    restart: async (_a: AssignmentWire, _zero: number, restore: RestoreSpec | undefined) => void restores.push(restore),
  } as unknown as BatchCoordinator;
  let moved: RebalancedInfo | undefined;
  const moves = new Reassignment({
    coordinator,
    checkpointer: cp,
    plan: { stateful: [] } as unknown as Plan,
    keys: undefined,
    zeroTimeMs: 0,
    listener: { rebalanced: (info) => (moved = info), failed: (error) => assertNever(error) },
    reassign: async () => ({ epoch: 2, slots: ['w2', 'w2'], inputs: {} }),
    inFlight: async () => undefined,
    lastCompleted: () => 7 * BATCH_MS,
    checkpointNow: async (time) => {
      journal.refusing = refuseCommit;
      await cp.checkpoint(time, captured, {});
    },
    replaceQueue: (jobs) => queued.push(...jobs),
    failed: () => false,
    fail: (error) => assertNever(error),
    resume: () => {},
  });
  moves.rebalance(['w1'], []);
  await moves.active;
  await journal.close();
  if (moved === undefined) throw new Error('the handover did not report');
  return { restores, queued, moved };
}

function assertCommitted(cp: Checkpointer, time: number): void {
  if (cp.lastCheckpointTime !== time) throw new Error(`checkpoint ${time} was not committed`);
}

function assertNever(error: Error): never {
  throw error;
}

test('handover - the checkpoint of the last batch committed: every worker restores it and nothing runs again', async (t) => {
  const { restores, queued, moved } = await handover(false);
  t.deepEqual(
    restores.map((r) => r?.time),
    [7 * BATCH_MS],
  );
  t.deepEqual(queued, []);
  t.is(moved.replayed, 0);
});

test('handover - the checkpoint of the last batch not committed: the older one is restored and the batches since run again', async (t) => {
  const { restores, queued, moved } = await handover(true);
  t.deepEqual(
    restores.map((r) => r?.time),
    [INTERVAL_MS],
    'the newest committed checkpoint',
  );
  t.deepEqual(
    queued.map((j) => [j.time, j.skipOutputs, j.replayed]),
    [
      [6 * BATCH_MS, true, true],
      [7 * BATCH_MS, true, true],
    ],
    'the batches after it run again, their completed outputs skipped',
  );
  t.is(moved.replayed, 2);
});
