/**
 * The test kit (`import ... from 'tributary-streams/testing'`).
 */

export { ManualClock } from '../base/manual-clock.ts';
export type { CollectedBatch } from './collect-batches.ts';
export { collectBatches } from './collect-batches.ts';
