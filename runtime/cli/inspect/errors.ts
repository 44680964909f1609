/**
 * Errors of `tributary inspect`: a location that is not a checkpoint it can read is
 * a usage error (exit code 2), told apart from damage found in one (exit code 1).
 */

/**
 * The location given is not an inspectable checkpoint: missing, not a directory, no
 * journal, a bad URL, an unreachable server, an ambiguous app.
 *
 * @example
 * throw new InspectUsageError(`${dir} does not exist`);
 */
export class InspectUsageError extends Error {
  readonly code = 'INSPECT_USAGE';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'InspectUsageError';
  }
}
