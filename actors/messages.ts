/**
 * The messages actors exchange: discriminated unions on `type`, with a reply
 * address where an answer is expected. Data travels as whole batch-partitions.
 */

import type { ReceivedBlock, SetAside } from '../runtime/graph/wire.ts';
import type { ActorRef } from './system.ts';

/** A reply: a value, or the error that prevented it. */
export type Reply<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: unknown };

/** Work for an output actor. */
export type OutputMessage = {
  readonly type: 'output.run';
  readonly replyTo: ActorRef<Reply<null>>;
  readonly time: number;
  readonly records: unknown[];
};

/** Messages to a receiver actor. */
export type ReceiverMessage =
  | { readonly type: 'receiver.store'; readonly records: readonly unknown[] }
  | { readonly type: 'receiver.setAside'; readonly letter: SetAside }
  | {
      readonly type: 'receiver.cut';
      readonly replyTo: ActorRef<Reply<ReceivedBlock | null>>;
      readonly time: number;
      /** Take at most this many records (backpressure); the rest stays for the next cut. */
      readonly max: number;
    };

/** Messages to the driver. */
export type DriverMessage =
  | { readonly type: 'driver.tick'; readonly time: number }
  | { readonly type: 'driver.batch-done'; readonly time: number }
  | { readonly type: 'driver.batch-failed'; readonly time: number; readonly error: unknown }
  | { readonly type: 'driver.kick' };

/** Wraps a computation's outcome into a reply. */
export function replyOf<T>(compute: () => T): Reply<T> {
  try {
    return { ok: true, value: compute() };
  } catch (error) {
    return { ok: false, error };
  }
}

/** The value of a reply, or its error thrown. */
export function unwrap<T>(reply: Reply<T>): T {
  if (reply.ok) return reply.value;
  throw reply.error;
}
