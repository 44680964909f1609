/**
 * Every coded error of Tributary (the API, the engine, the journal and the snapshot
 * stores), each with a stable `code` that callers may switch on. They live on the
 * bottom floor so that every other one can raise them.
 *
 * Operating errors (bad configuration, a failed batch, a corrupt checkpoint) are
 * these classes; programmer errors inside the engine are assertions (assert.ts).
 */

/** Every stable error code the runtime raises. */
export type ErrorCode =
  | 'INVALID_DURATION'
  | 'INVALID_GRAPH'
  | 'INVALID_CONFIG'
  | 'INVALID_STATE'
  | 'INVALID_TRANSFORM_RESULT'
  | 'INCOMPATIBLE_CHECKPOINT'
  | 'CORRUPT_CHECKPOINT'
  | 'FENCED'
  | 'BATCH_FAILED'
  | 'SOURCE_FAILED';

/**
 * Base class of every Tributary error.
 *
 * @example
 * try { await ssc.awaitTermination(); } catch (e) { if (e instanceof TributaryError) console.log(e.code); }
 */
export class TributaryError extends Error {
  /** The stable code of this kind of error, to switch on (messages may change). */
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TributaryError';
    this.code = code;
  }
}

/** A duration that is not a positive whole number of milliseconds, or not a multiple it must be. */
export class InvalidDurationError extends TributaryError {
  constructor(message: string) {
    super('INVALID_DURATION', message);
    this.name = 'InvalidDurationError';
  }
}

/** A DStream graph that cannot run (bad wiring, operators added after start, ...). */
export class InvalidGraphError extends TributaryError {
  constructor(message: string) {
    super('INVALID_GRAPH', message);
    this.name = 'InvalidGraphError';
  }
}

/** A configuration value out of range or inconsistent with another. */
export class InvalidConfigError extends TributaryError {
  constructor(message: string) {
    super('INVALID_CONFIG', message);
    this.name = 'InvalidConfigError';
  }
}

/** A call made in a lifecycle state that does not allow it (e.g. runBatches before start). */
export class InvalidStateError extends TributaryError {
  constructor(message: string) {
    super('INVALID_STATE', message);
    this.name = 'InvalidStateError';
  }
}

/** A user function returned something other than what its operator requires. */
export class InvalidTransformResultError extends TributaryError {
  constructor(message: string) {
    super('INVALID_TRANSFORM_RESULT', message);
    this.name = 'InvalidTransformResultError';
  }
}

/** A source (socket, directory, custom receiver) failed in a way the app must see. */
export class SourceFailedError extends TributaryError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('SOURCE_FAILED', message, options);
    this.name = 'SourceFailedError';
  }
}

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
  /** Each difference between the app's graph and the checkpoint's, one sentence each. */
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

/**
 * A batch failed: names the operator, the batch time and the cause.
 *
 * Nothing of the failed batch stays in any operator's state.
 */
export class BatchFailedError extends TributaryError {
  /** The operator whose function failed: its `.uid(name)`, else its kind and number (`map#3`). */
  readonly operator: string;
  /** The time of the batch that failed. */
  readonly batchTime: number;
  constructor(operator: string, batchTime: number, cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super('BATCH_FAILED', `batch ${batchTime} failed in ${operator}: ${reason}`, { cause });
    this.name = 'BatchFailedError';
    this.operator = operator;
    this.batchTime = batchTime;
  }
}

/**
 * @internal What a user function of a fused operator threw, with the name of that
 * operator: a fused pass runs several operators at once, and the driver must name
 * the one that failed. The driver unwraps it into a {@link BatchFailedError}.
 */
export class OperatorFailure extends Error {
  readonly operator: string;
  /** The record the operator was given when it threw (`records` holds it), for a dead letter. */
  readonly records: readonly unknown[];
  constructor(operator: string, cause: unknown, records: readonly unknown[] = []) {
    super(`${operator} failed`, { cause });
    this.name = 'OperatorFailure';
    this.operator = operator;
    this.records = records;
  }

  /** `error` tagged with `operator` (and the record it threw on), unless an operator downstream already tagged it. */
  static of(operator: string, error: unknown, records: readonly unknown[] = []): OperatorFailure {
    return error instanceof OperatorFailure ? error : new OperatorFailure(operator, error, records);
  }
}
