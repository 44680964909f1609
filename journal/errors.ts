/**
 * Errors of the journal and snapshot stores.
 */
import { TributaryError } from '../runtime/base/errors.ts';

/** A checkpoint (journal or snapshot) that cannot be read back as written. */
export class CorruptCheckpointError extends TributaryError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('CORRUPT_CHECKPOINT', message, options);
    this.name = 'CorruptCheckpointError';
  }
}

/** Another driver owns the journal: this one must stop writing. */
export class FencedError extends TributaryError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('FENCED', message, options);
    this.name = 'FencedError';
  }
}

/** The app's graph differs from the one its checkpoint was written by. */
export class IncompatibleCheckpointError extends TributaryError {
  readonly differences: readonly string[];
  constructor(differences: readonly string[]) {
    super(
      'INCOMPATIBLE_CHECKPOINT',
      `the checkpoint was written by a different graph:\n  - ${differences.join('\n  - ')}\n` +
        'give operators a .uid(name) to add or remove them across upgrades, or start from a new checkpoint directory',
    );
    this.name = 'IncompatibleCheckpointError';
    this.differences = differences;
  }
}
