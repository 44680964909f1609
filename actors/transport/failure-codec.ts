/**
 * Errors crossing a process boundary: encoded as plain data and rebuilt on the other
 * side with their class (by name), code, operator and message, so the driver reports
 * a worker's failure as it would its own (BatchFailedError naming the operator).
 */
import {
  BatchFailedError,
  CorruptCheckpointError,
  FencedError,
  InvalidConfigError,
  InvalidStateError,
  InvalidTransformResultError,
  OperatorFailure,
  SourceFailedError,
  TributaryError,
} from '../../runtime/base/errors.ts';

/** An error as plain data. */
export interface EncodedFailure {
  readonly encoded: 'failure';
  readonly name: string;
  readonly message: string;
  readonly code?: string;
  readonly operator?: string;
  readonly batchTime?: number;
  readonly stack?: string;
  readonly cause?: EncodedFailure;
}

/**
 * Encodes any thrown value.
 *
 * @example
 * encodeFailure(new OperatorFailure('map#3', new Error('boom')))
 */
export function encodeFailure(error: unknown, depth = 0): EncodedFailure {
  if (!(error instanceof Error)) return { encoded: 'failure', name: 'Error', message: String(error) };
  const e = error as Error & { code?: unknown; operator?: unknown; batchTime?: unknown };
  return {
    encoded: 'failure',
    name: e.name,
    message: e.message,
    ...(typeof e.code === 'string' ? { code: e.code } : {}),
    ...(typeof e.operator === 'string' ? { operator: e.operator } : {}),
    ...(typeof e.batchTime === 'number' ? { batchTime: e.batchTime } : {}),
    ...(e.stack !== undefined ? { stack: e.stack } : {}),
    ...(e.cause !== undefined && depth < 4 ? { cause: encodeFailure(e.cause, depth + 1) } : {}),
  };
}

/** True for a value {@link encodeFailure} made. */
export function isEncodedFailure(value: unknown): value is EncodedFailure {
  return typeof value === 'object' && value !== null && (value as { encoded?: unknown }).encoded === 'failure';
}

/**
 * Rebuilds an error (its class when known, else an Error with the same name).
 *
 * @example
 * const error = decodeFailure(encoded); // an OperatorFailure again, cause included
 */
export function decodeFailure(f: EncodedFailure | Error): Error {
  if (f instanceof Error) return f;
  const cause = f.cause ? decodeFailure(f.cause) : undefined;
  let error: Error;
  switch (f.name) {
    case 'OperatorFailure':
      return withStack(new OperatorFailure(f.operator ?? 'unknown', cause), f);
    case 'BatchFailedError':
      return withStack(new BatchFailedError(f.operator ?? 'unknown', f.batchTime ?? 0, cause), f);
    case 'CorruptCheckpointError':
      error = new CorruptCheckpointError(f.message, { cause });
      break;
    case 'FencedError':
      error = new FencedError(f.message, { cause });
      break;
    case 'InvalidConfigError':
      error = new InvalidConfigError(f.message);
      break;
    case 'InvalidStateError':
      error = new InvalidStateError(f.message);
      break;
    case 'InvalidTransformResultError':
      error = new InvalidTransformResultError(f.message);
      break;
    case 'SourceFailedError':
      error = new SourceFailedError(f.message, { cause });
      break;
    default:
      if (f.code !== undefined) {
        error = new TributaryError(f.code as TributaryError['code'], f.message, { cause });
        error.name = f.name;
      } else {
        error = new Error(f.message, cause ? { cause } : undefined);
        error.name = f.name;
      }
  }
  return withStack(error, f);
}

function withStack(error: Error, f: EncodedFailure): Error {
  if (f.stack !== undefined) error.stack = f.stack;
  return error;
}
