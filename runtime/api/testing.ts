/**
 * The test kit (`import ... from 'tributary-streams/testing'`).
 *
 * @module tributary-streams/testing
 */

export { ManualClock } from '../base/manual-clock.ts';
export type { CheckRecoveryOptions, RecoveryReport } from './chaos-check.ts';
export { checkRecovery } from './chaos-check.ts';
export type { Diagnosis } from './chaos-oracle.ts';
export type { CollectedBatch } from './collect-batches.ts';
export { collectBatches } from './collect-batches.ts';
