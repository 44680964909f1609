/**
 * The test kit (`import ... from 'tributary/testing'`).
 */

export type { CollectedBatch } from './collect-batches.ts';
export { collectBatches } from './collect-batches.ts';
export { ManualClock } from './manual-clock.ts';
