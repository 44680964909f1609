import test from 'ava';
import type { ErrorCode } from '../../../runtime/api/index.ts';
import * as tributary from '../../../runtime/api/index.ts';

// Keyed by ErrorCode: a new code fails to compile until it is listed here.
const CODES: Record<ErrorCode, true> = {
  INVALID_DURATION: true,
  INVALID_GRAPH: true,
  INVALID_CONFIG: true,
  INVALID_STATE: true,
  INVALID_TRANSFORM_RESULT: true,
  INCOMPATIBLE_CHECKPOINT: true,
  CORRUPT_CHECKPOINT: true,
  FENCED: true,
  BATCH_FAILED: true,
  SOURCE_FAILED: true,
};

test('errors - the public entry exports a class for every error code', (t) => {
  const errors: tributary.TributaryError[] = [
    new tributary.InvalidDurationError('d'),
    new tributary.InvalidGraphError('g'),
    new tributary.InvalidConfigError('c'),
    new tributary.InvalidStateError('s'),
    new tributary.InvalidTransformResultError('t'),
    new tributary.IncompatibleCheckpointError(['a node was removed']),
    new tributary.CorruptCheckpointError('torn frame'),
    new tributary.FencedError('another driver'),
    new tributary.BatchFailedError('map#1', 1000, new Error('boom')),
    new tributary.SourceFailedError('socket closed'),
  ];
  t.deepEqual(errors.map((e) => e.code).sort(), Object.keys(CODES).sort());
  for (const e of errors) {
    t.true(e instanceof tributary.TributaryError);
    t.is(e.name, e.constructor.name);
  }
});
