/**
 * Assertions for programmer errors: a broken invariant of the engine crashes at
 * once, while operating errors (bad config, NATS down, a corrupt frame) are the
 * coded classes of errors.ts. Calling these, rather than a bare `throw new Error`,
 * says which of the two a check is.
 */

/**
 * Throws unless `condition` holds; narrows types like an `if` would.
 *
 * @example
 * assert(node.kind === 'shuffle', `node ${node.name} is not a shuffle`);
 */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(message);
}

/**
 * Throws unless a switch covered every case.
 *
 * @example
 * switch (msg.type) { case 'a': ...; default: return assertNever(msg); }
 */
export function assertNever(value: never): never {
  throw new Error(`unexpected value: ${JSON.stringify(value)}`);
}
